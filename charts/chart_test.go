// Package charts holds the Helm chart of the Pare sidecar; this test renders
// it with Helm itself and checks what a platform engineer relies on.
package charts

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pare-dev/pare/internal/cli"
)

// helm is pinned: `go run` of a fixed version builds the same Helm on every
// machine, with nothing installed by hand.
var helm = []string{"run", "helm.sh/helm/v3/cmd/helm@v3.22.0"}

func runHelm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", append(append([]string(nil), helm...), args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return out.String()
}

type object map[string]any

func docs(t *testing.T, rendered string) map[string]object {
	t.Helper()
	out := map[string]object{}
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	for {
		var o object
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, rendered)
		}
		if o != nil {
			out[o["kind"].(string)] = o
		}
	}
	return out
}

func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(object)
			if !ok {
				if mm, ok2 := v.(map[string]any); ok2 {
					m, ok = object(mm), true
				}
			}
			if !ok {
				t.Fatalf("%v: not an object at %q", path, k)
			}
			v = m[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

func TestChart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Helm")
	}
	runHelm(t, "lint", "pare", "--strict")
	rendered := runHelm(t, "template", "demo", "pare",
		"--set", "example.enabled=true", "--set", "service=billing",
		"--set", "hmacKeySecret=pare-hmac", "--set", "consent.url=http://consent.default.svc/v1/consents",
		"--set", "podMonitor.enabled=true", "--set", "ledger.existingClaim=pare-ledger")
	d := docs(t, rendered)
	for _, kind := range []string{"ConfigMap", "Deployment", "PodMonitor"} {
		if d[kind] == nil {
			t.Fatalf("no %s rendered:\n%s", kind, rendered)
		}
	}

	// The rendered sidecar config is one `proxy serve` accepts: strict keys,
	// valid values.
	cfg := get(t, d["ConfigMap"], "data", "config.yaml").(string)
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cli.Main([]string{"check", "--config", f}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("proxy check --config rejects the chart's config (exit %d): %s\n%s", code, stderr.String(), cfg)
	}
	for _, want := range []string{"listen: 127.0.0.1:15001", "admin: 0.0.0.0:15000", `service: "billing"`,
		"hmac_key_file: /etc/pare/hmac/hmac.key", "consent_url:"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}

	containers := get(t, d["Deployment"], "spec", "template", "spec", "containers").([]any)
	if len(containers) != 2 {
		t.Fatalf("%d containers, want the app and the sidecar", len(containers))
	}
	app, pare := containers[0], containers[1]
	if get(t, pare, "name") != "pare" {
		t.Fatalf("second container is %v, want pare", get(t, pare, "name"))
	}
	env := get(t, app, "env").([]any)
	if get(t, env[0], "name") != "HTTP_PROXY" || get(t, env[0], "value") != "http://127.0.0.1:15001" {
		t.Errorf("app env %v: want HTTP_PROXY at the sidecar", env)
	}
	if get(t, pare, "readinessProbe", "httpGet", "path") != "/readyz" || get(t, pare, "livenessProbe", "httpGet", "path") != "/healthz" {
		t.Error("the sidecar's probes are not /readyz and /healthz")
	}
	if get(t, pare, "securityContext", "readOnlyRootFilesystem") != true || get(t, pare, "securityContext", "runAsNonRoot") != true {
		t.Error("the sidecar does not run as non-root on a read-only root filesystem")
	}
	vols := map[string]bool{}
	for _, v := range get(t, d["Deployment"], "spec", "template", "spec", "volumes").([]any) {
		vols[get(t, v, "name").(string)] = true
	}
	for _, want := range []string{"pare-config", "pare-ledger", "pare-hmac"} {
		if !vols[want] {
			t.Errorf("volume %s missing (have %v)", want, vols)
		}
	}
	if get(t, d["PodMonitor"], "spec", "podMetricsEndpoints", 0, "port") != "pare-admin" {
		t.Error("the PodMonitor does not scrape the admin port")
	}

	// Custom policies from ConfigMaps are mounted where the config says.
	rendered = runHelm(t, "template", "demo", "pare", "--set", "example.enabled=true",
		"--set", "policies.configMap=my-policies", "--set", "policies.contractsConfigMap=my-contracts")
	d = docs(t, rendered)
	if cfg := get(t, d["ConfigMap"], "data", "config.yaml").(string); !strings.Contains(cfg, "policies: /etc/pare/policies") {
		t.Errorf("config does not point at the mounted policies:\n%s", cfg)
	}
	if !strings.Contains(rendered, "mountPath: /etc/pare/policies/contracts") {
		t.Error("contracts ConfigMap not mounted under the policies directory")
	}
}
