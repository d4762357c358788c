package charts

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pare-dev/pare/internal/cli"
)

// checkPods checks every pod the manifests would run with the sidecar.
func checkPods(t *testing.T, objs []object) {
	t.Helper()
	pods := 0
	for _, o := range objs {
		pt, ok, err := podTemplate(o)
		if err != nil {
			t.Error(err)
			continue
		}
		if !ok {
			continue
		}
		pods++
		where := fmt.Sprintf("%s %s", o["kind"], name(o))
		if v := restrictedViolations(t, pt); len(v) > 0 {
			t.Errorf("%s: the restricted Pod Security Standard forbids it:\n  %s", where, strings.Join(v, "\n  "))
		}
		checkSidecar(t, where, pt, objs)
	}
	if pods == 0 && len(ofKind(objs, "Deployment"))+len(ofKind(objs, "Job")) > 0 {
		t.Error("no pod template checked")
	}
}

func checkSidecar(t *testing.T, where string, pt corev1.PodTemplateSpec, objs []object) {
	t.Helper()
	spec := pt.Spec
	var pare *corev1.Container
	for i, c := range spec.InitContainers {
		if c.Name == "pare" {
			pare = &spec.InitContainers[i]
		}
	}
	if pare == nil {
		t.Errorf("%s: no init container named pare (the native sidecar)", where)
		return
	}
	// What the API server's validation would refuse, and what makes the
	// init container a sidecar rather than a step that must exit.
	if pare.RestartPolicy == nil || *pare.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("%s: the pare init container lacks restartPolicy: Always (it would block the app from starting)", where)
	}
	for _, c := range spec.Containers {
		if c.RestartPolicy != nil {
			t.Errorf("%s: container %s sets restartPolicy, which only init containers may", where, c.Name)
		}
		if c.Name == "pare" {
			t.Errorf("%s: pare is also a regular container", where)
		}
	}

	sc := pare.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("%s: the sidecar's securityContext is not read-only, non-root, RuntimeDefault seccomp, all capabilities dropped: %+v", where, sc)
	}

	cfg, raw := sidecarConfig(t, where, spec, objs)
	if cfg == nil {
		return
	}
	egressPort := port(t, cfg["listen"])
	metricsPort := port(t, cfg["metrics_listen"])
	if host, _, _ := net.SplitHostPort(cfg["listen"].(string)); host != "127.0.0.1" {
		t.Errorf("%s: egress listener %v is not on loopback", where, cfg["listen"])
	}
	if host, _, _ := net.SplitHostPort(cfg["admin"].(string)); host != "127.0.0.1" {
		t.Errorf("%s: admin listener %v is not on loopback", where, cfg["admin"])
	}

	// Probes and the PodMonitor reach the metrics listener by port name.
	ports := map[string]int32{}
	for _, p := range pare.Ports {
		ports[p.Name] = p.ContainerPort
		if p.ContainerPort != int32(metricsPort) {
			t.Errorf("%s: the sidecar exposes port %d, which is not the metrics listener's %d", where, p.ContainerPort, metricsPort)
		}
	}
	for kind, p := range map[string]*corev1.Probe{"startup": pare.StartupProbe, "readiness": pare.ReadinessProbe, "liveness": pare.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s probe", where, kind)
			continue
		}
		if ports[p.HTTPGet.Port.String()] != int32(metricsPort) {
			t.Errorf("%s: %s probe on port %s, not the metrics listener", where, kind, p.HTTPGet.Port.String())
		}
	}

	env := map[string]corev1.EnvVar{}
	for _, e := range pare.Env {
		env[e.Name] = e
	}
	if lim, ok := pare.Resources.Limits[corev1.ResourceMemory]; ok {
		want := lim.Value() * 9 / 10
		if got := env["GOMEMLIMIT"].Value; got != strconv.FormatInt(want, 10) {
			t.Errorf("%s: GOMEMLIMIT %q, want %d (90%% of %s)", where, got, want, lim.String())
		}
	}

	// Every app container goes through the sidecar, HTTPS included, except
	// for the cluster-internal names.
	wantProxy := "http://127.0.0.1:" + strconv.Itoa(egressPort)
	for _, c := range spec.Containers {
		got := map[string]string{}
		for _, e := range c.Env {
			got[e.Name] = e.Value
		}
		for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"} {
			if got[k] != wantProxy {
				t.Errorf("%s: container %s: %s=%q, want %q", where, c.Name, k, got[k], wantProxy)
			}
		}
		if !strings.Contains(got["NO_PROXY"], ".svc") || got["NO_PROXY"] != got["no_proxy"] {
			t.Errorf("%s: container %s: NO_PROXY %q / no_proxy %q: want the cluster-internal names", where, c.Name, got["NO_PROXY"], got["no_proxy"])
		}
	}

	// The PodMonitor and the NetworkPolicy select this pod.
	podLabels := labels.Set(pt.Labels)
	for _, pm := range ofKind(objs, "PodMonitor") {
		if !selects(t, pm, []string{"spec", "selector", "matchLabels"}, podLabels) {
			t.Errorf("%s: PodMonitor %s does not select this pod (labels %v)", where, name(pm), podLabels)
		}
		eps, _ := dig(map[string]any(pm), "spec", "podMetricsEndpoints").([]any)
		for _, ep := range eps {
			if p, _ := ep.(map[string]any)["port"].(string); ports[p] == 0 {
				t.Errorf("%s: PodMonitor scrapes port %q, which the sidecar does not name", where, p)
			}
		}
	}
	for _, np := range ofKind(objs, "NetworkPolicy") {
		if !selects(t, np, []string{"spec", "podSelector", "matchLabels"}, podLabels) {
			t.Errorf("%s: NetworkPolicy %s does not select this pod (labels %v)", where, name(np), podLabels)
		}
	}

	checkConfigInPod(t, where, spec, *pare, raw)
}

func dig(o map[string]any, path ...string) any {
	var v any = o
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func selects(t *testing.T, o object, path []string, podLabels labels.Set) bool {
	t.Helper()
	ml, _ := dig(map[string]any(o), path...).(map[string]any)
	if len(ml) == 0 {
		return false // an empty selector would select every pod
	}
	sel := labels.Set{}
	for k, v := range ml {
		sel[k] = fmt.Sprint(v)
	}
	return labels.SelectorFromSet(sel).Matches(podLabels)
}

func port(t *testing.T, addr any) int {
	t.Helper()
	s, _ := addr.(string)
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		t.Fatalf("address %v: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %v: %v", addr, err)
	}
	return n
}

// sidecarConfig finds the ConfigMap the pare-config volume mounts and
// returns its config.yaml, decoded and raw.
func sidecarConfig(t *testing.T, where string, spec corev1.PodSpec, objs []object) (map[string]any, string) {
	t.Helper()
	var cmName string
	for _, v := range spec.Volumes {
		if v.Name == "pare-config" && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	for _, cm := range ofKind(objs, "ConfigMap") {
		if name(cm) != cmName {
			continue
		}
		raw, _ := dig(map[string]any(cm), "data", "config.yaml").(string)
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(raw), &cfg); err != nil {
			t.Fatalf("%s: config.yaml: %v", where, err)
		}
		return cfg, raw
	}
	t.Errorf("%s: the pare-config volume mounts ConfigMap %q, which the chart does not render", where, cmName)
	return nil, ""
}

// pathKeys are the config keys that name files or directories.
var pathKeys = map[string]bool{"policies": true, "ledger": true, "hmac_key_file": true, "consents": true, "upstream_ca": true,
	"state_dir": true, "ledger_key": true, "ledger_checkpoint": true, "bundle_dir": true, "ca_cert": true, "ca_key": true,
	"bundle_key": true, "bundle_ca": true, "bundle_token_file": true}

// writableKeys name what serve creates or appends to: they must be on a
// writable volume.
var writableKeys = map[string]bool{"ledger": true, "state_dir": true, "ledger_checkpoint": true, "bundle_dir": true}

// checkConfigInPod builds the filesystem the sidecar would see, from its
// volume mounts, under a temporary root, and runs `proxy check --config` on
// the rendered config with its paths moved under that root. So the config is
// not only valid: every file it names is mounted where it says, the ledger
// on a writable volume, and the policies it loads compile and pass their
// tests.
func checkConfigInPod(t *testing.T, where string, spec corev1.PodSpec, pare corev1.Container, raw string) {
	t.Helper()
	root := t.TempDir()
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	writable := map[string]bool{} // mount path -> writable
	for _, m := range pare.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: the sidecar mounts volume %s, which the pod does not have", where, m.Name)
			continue
		}
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writable[m.MountPath] = !m.ReadOnly
		if err := populate(dir, v, raw); err != nil {
			t.Errorf("%s: volume %s: %v", where, m.Name, err)
		}
	}
	mountOf := func(p string) (string, bool) {
		best := ""
		for mp := range writable {
			if (p == mp || strings.HasPrefix(p, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
				best = mp
			}
		}
		return best, best != ""
	}

	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		key, val := m.Content[i].Value, m.Content[i+1]
		if !pathKeys[key] {
			continue
		}
		vals := []*yaml.Node{val}
		if val.Kind == yaml.SequenceNode {
			vals = val.Content
		}
		for _, v := range vals {
			mp, ok := mountOf(v.Value)
			if !ok {
				t.Errorf("%s: config %s: %s is on no volume the sidecar mounts (the root filesystem is read-only)", where, key, v.Value)
				continue
			}
			if writableKeys[key] && !writable[mp] {
				t.Errorf("%s: config %s: %s is on read-only mount %s", where, key, v.Value, mp)
			}
			v.Value = filepath.Join(root, v.Value)
		}
	}
	// The container's --ledger flag overrides the config's file name: it
	// must stay in a writable mount too.
	for i, a := range pare.Args {
		if a == "--ledger" && i+1 < len(pare.Args) {
			if mp, ok := mountOf(pare.Args[i+1]); !ok || !writable[mp] {
				t.Errorf("%s: --ledger %s is not on a writable volume", where, pare.Args[i+1])
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, out, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cli.Main([]string{"check", "--config", f}, nil, &stdout, &stderr); code != 0 {
		t.Errorf("%s: proxy check --config refuses the sidecar's config in its mounted filesystem (exit %d):\n%s\nconfig:\n%s",
			where, code, stderr.String(), out)
	}
}

// populate fills a mounted volume as the kubelet would: the chart's own
// ConfigMap with the rendered config, the operator's ConfigMaps and Secrets
// with this repository's fixtures for what the chart says they hold.
func populate(dir string, v corev1.Volume, config string) error {
	write := func(name, content string) error {
		return os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	copyGlob := func(pattern string) error {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			return fmt.Errorf("fixture %s: %v", pattern, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			if err := write(filepath.Base(f), string(b)); err != nil {
				return err
			}
		}
		return nil
	}
	switch {
	case v.Name == "pare-config":
		return write("config.yaml", config)
	case v.Name == "pare-policies":
		return copyGlob("../policies/*.rego")
	case v.Name == "pare-contracts":
		return copyGlob("../policies/contracts/*.yaml")
	case v.Name == "pare-consents":
		return copyGlob("../internal/cli/demodata/consents.yaml")
	case v.Name == "pare-hmac" && v.Secret != nil:
		return write("hmac.key", "a-test-key-of-32-bytes-for-hmac!")
	case v.EmptyDir != nil || v.PersistentVolumeClaim != nil:
		return nil // empty and writable
	}
	return fmt.Errorf("no fixture for volume %s", v.Name)
}
