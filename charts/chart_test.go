// Package charts holds the Helm chart of the Pare sidecar (charts/pare). Its
// tests render the chart with the pinned Helm (the packages behind `helm
// lint` and `helm template`, see helm_test.go) for several
// values files and for an application chart that depends on it, and check
// what a platform engineer relies on: golden manifests, `helm lint`, the
// values schema, the real Kubernetes schemas, the "restricted" Pod Security
// Standard, and that the rendered sidecar config is one `proxy serve`
// accepts in the filesystem the pod mounts for it.
package charts

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the rendered manifests")

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

type object map[string]any

// docs splits a rendered manifest into its objects, in order.
func docs(t *testing.T, rendered string) []object {
	t.Helper()
	var out []object
	dec := yaml.NewDecoder(strings.NewReader(rendered))
	for {
		var o map[string]any // nested maps decode as map[string]any too
		err := dec.Decode(&o)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, rendered)
		}
		if o != nil {
			out = append(out, object(o))
		}
	}
	return out
}

func ofKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o["kind"] == kind {
			out = append(out, o)
		}
	}
	return out
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the chart and downloads the Kubernetes schemas")
	}
}

// parentChart lays out the application chart of testdata/parent with this
// repository's pare chart as its dependency, as `helm dependency build`
// would, and returns its directory. alias, when set, names the dependency
// differently and passes its context to the named templates explicitly.
func parentChart(t *testing.T, alias string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shop")
	if err := os.CopyFS(dir, os.DirFS("testdata/parent")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "charts", "pare"), os.DirFS("pare")); err != nil {
		t.Fatal(err)
	}
	if alias == "" {
		return dir
	}
	edit := func(path string, from, to string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(from)) {
			t.Fatalf("%s has no %q", path, from)
		}
		if err := os.WriteFile(path, bytes.ReplaceAll(b, []byte(from), []byte(to)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit(filepath.Join(dir, "Chart.yaml"), "repository: file://../../pare", "repository: file://../../pare\n    alias: "+alias)
	edit(filepath.Join(dir, "values.yaml"), "\npare:\n", "\n"+alias+":\n")
	for _, f := range []string{"deployment.yaml", "job.yaml"} {
		edit(filepath.Join(dir, "templates", f), `" . |`, `" .Subcharts.`+alias+` |`)
	}
	return dir
}

// renderCase is one way to install the chart.
type renderCase struct {
	name   string
	parent bool     // render testdata/parent, which depends on pare
	values []string // files under testdata/values
	// leavesRestricted: the values ask for the transparent mode's iptables
	// redirect, whose init containers the restricted Pod Security Standard
	// forbids (and only they may break it).
	leavesRestricted bool
}

var renderCases = []renderCase{
	{name: "default"},
	{name: "example", values: []string{"example.yaml"}},
	{name: "networkpolicy", values: []string{"networkpolicy.yaml"}},
	{name: "custom-policies", values: []string{"custom-policies.yaml"}},
	{name: "parent", parent: true},
	{name: "dropin", values: []string{"dropin.yaml"}},
	{name: "envoy", values: []string{"envoy.yaml"}},
	{name: "fleet", values: []string{"fleet.yaml"}},
	{name: "transparent", values: []string{"transparent.yaml"}, leavesRestricted: true},
}

func (rc renderCase) args(t *testing.T) (chart string, values []string) {
	chart = "pare"
	if rc.parent {
		chart = parentChart(t, "")
	}
	for _, v := range rc.values {
		values = append(values, "-f", filepath.Join("testdata", "values", v))
	}
	return chart, values
}

// TestChart renders every case, compares it with its golden manifest and
// runs every check on it; `helm lint --strict` must pass for each.
func TestChart(t *testing.T) {
	skipShort(t)
	ks := loadKubeSchemas(t)
	for _, rc := range renderCases {
		t.Run(rc.name, func(t *testing.T) {
			chart, values := rc.args(t)
			mustHelm(t, append([]string{"lint", "--strict", chart}, values...)...)
			rendered := mustHelm(t, append([]string{"template", "demo", chart, "--namespace", "shop"}, values...)...)
			golden(t, filepath.Join("testdata", "golden", rc.name+".yaml"), rendered)
			objs := docs(t, rendered)
			if len(ofKind(objs, "ConfigMap")) != 1 {
				t.Fatalf("want exactly one ConfigMap (the sidecar's config), got:\n%s", rendered)
			}
			for _, o := range objs {
				if err := ks.validate(o); err != nil {
					t.Errorf("Kubernetes schema: %v", err)
				}
			}
			checkPods(t, objs, rc.leavesRestricted)
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./charts/ -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("rendered manifest differs from %s (go test ./charts/ -update rewrites it after review):\n%s",
			path, lineDiff(string(want), got))
	}
}

// lineDiff shows the first lines that differ, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n- " + wl + "\n+ " + gl
		}
	}
	return "(equal lines; trailing difference)"
}

// TestChartAlias: a chart that renames the dependency passes its context
// (.Subcharts.ALIAS) to the named templates.
func TestChartAlias(t *testing.T) {
	skipShort(t)
	rendered := mustHelm(t, "template", "demo", parentChart(t, "egress"))
	objs := docs(t, rendered)
	if len(ofKind(objs, "Deployment")) != 1 || len(ofKind(objs, "Job")) != 1 {
		t.Fatalf("want the app's Deployment and Job:\n%s", rendered)
	}
	checkPods(t, objs, false)
}

// TestNamedTemplatesWithoutPare: including a named template from a chart
// that does not depend on pare fails with a sentence saying what to do, not
// a nil-pointer error or an empty port (the bugs of the first chart).
func TestNamedTemplatesWithoutPare(t *testing.T) {
	skipShort(t)
	dir := filepath.Join(t.TempDir(), "lonely")
	if err := os.MkdirAll(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The named templates are available (copied in), the values are not.
	helpers, err := os.ReadFile(filepath.Join("pare", "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Chart.yaml":              "apiVersion: v2\nname: lonely\nversion: 1.0.0\n",
		"templates/_pare.tpl":     string(helpers),
		"templates/pod.yaml":      "env: {{- include \"pare.appEnv\" . | nindent 2 }}\n",
		"templates/container.yml": "c: {{- include \"pare.sidecarContainer\" . | nindent 2 }}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := helm(t, "template", "demo", dir)
	if err == nil {
		t.Fatalf("rendered without pare's values:\n%s", out)
	}
	if !strings.Contains(out, "add the pare chart as a dependency") || strings.Contains(out, "nil pointer") {
		t.Errorf("unhelpful error:\n%s", out)
	}
}

// TestValuesSchema: values.schema.json and the templates' own checks refuse
// what would otherwise be ignored or rendered wrong.
func TestValuesSchema(t *testing.T) {
	skipShort(t)
	tests := []struct {
		set  []string
		want string // in helm's error
	}{
		{[]string{"imagee.tag=x"}, "additional properties 'imagee' not allowed"},
		{[]string{"podMonitor.enable=true"}, "additional properties 'enable' not allowed"},
		{[]string{"egressPort=abc"}, "/egressPort"},
		{[]string{"metricsPort=70000"}, "/metricsPort"},
		{[]string{"logLevel=verbose"}, "/logLevel"},
		{[]string{"logFormat=xml"}, "/logFormat"},
		{[]string{"mode=envoi"}, "/mode"},
		{[]string{"resources.limits.memory=lots"}, "/resources/limits/memory"},
		{[]string{"networkPolicy.enabled=yes"}, "/networkPolicy/enabled"},
		{[]string{"maxBody=10 megs"}, "/maxBody"},
		{[]string{"upstreamTimeout=30"}, "/upstreamTimeout"},
		{[]string{"image.digest=sha256:xyz"}, "/image/digest"},
		{[]string{"hmacKeySecret=Not_A_Name"}, "/hmacKeySecret"},
		{[]string{"noProxy={a,b c}"}, "/noProxy"},
		{[]string{"adminPort=15090"}, "must differ"},
		{[]string{"consent.url=http://c.svc", "consent.configMap=c"}, "exclusive"},
		{[]string{"consent.url=http://c.svc", "consent.dsn=postgres://pare@db/c"}, "exclusive"},

		// Drop-in and transparent modes.
		{[]string{"dropIn.enabled=yes"}, "/dropIn/enabled"},
		{[]string{"dropIn.caSecret.name=Pare_CA"}, "/dropIn/caSecret/name"},
		{[]string{"dropIn.trustEnv={SSL_CERT_DIR}"}, "/dropIn/trustEnv"},
		{[]string{"dropIn.passthrough={https://status.example}"}, "/dropIn/passthrough"},
		{[]string{"dropIn.transparent.redirect=cni"}, "/dropIn/transparent/redirect"},
		{[]string{"dropIn.transparent.iptables.excludeCIDRs={fc00::/7}"}, "/dropIn/transparent/iptables/excludeCIDRs"},
		{[]string{"dropIn.trustBundle.configMap=bundle"}, "needs dropIn.caSecret"},
		{[]string{"dropIn.enabled=false", "dropIn.caSecret.name=ca"}, "need dropIn.enabled"},
		{[]string{"dropIn.transparent.enabled=true", "dropIn.transparent.redirect=iptables"}, "needs dropIn.transparent.iptables.image"},
		{[]string{"dropIn.transparent.enabled=true", "dropIn.transparent.port=15001"}, "must differ"},

		// Bundles.
		{[]string{"policies.bundle.url=ftp://bundles/b.tar.gz"}, "/policies/bundle/url"},
		{[]string{"policies.bundle.url=https://bundles/b.tar.gz"}, "needs policies.bundle.keys"},
		{[]string{"policies.bundle.url=https://bundles/b.tar.gz", "policies.bundle.keys.configMap=k", "policies.bundle.keys.secret=k"}, "exclusive"},
		{[]string{"policies.bundle.url=https://bundles/b.tar.gz", "policies.bundle.keys.configMap=k", "policies.configMap=p"}, "exclusive"},
		{[]string{"policies.bundle.keys.configMap=k"}, "policies.bundle.url is empty"},
		{[]string{"policies.bundle.keys.files={}"}, "/policies/bundle/keys/files"},
		{[]string{"policies.bundle.longPoll=1 minute"}, "/policies/bundle/longPoll"},

		// PostgreSQL and the ledger as evidence.
		{[]string{"ledger.sink.dsn=postgres://pare:secret@db/pare"}, "carries a password"},
		{[]string{"ledger.sink.dsn=host=db user=pare"}, "/ledger/sink/dsn"},
		{[]string{"ledger.sink.dsn=postgres://pare@db/pare?sslmode=verify-full&password=secret"}, "carries a password"},
		{[]string{"consent.dsn=mysql://pare@db/c"}, "/consent/dsn"},
		{[]string{"ledger.sink.retain=forever"}, "/ledger/sink/retain"},
		{[]string{"postgres.passwordSecret.name=db"}, "neither ledger.sink.dsn nor consent.dsn"},
		{[]string{"ledger.sink.dsn=postgres://pare@db/pare", "postgres.passwordSecret.name=db", "postgres.passfileSecret.name=db"}, "exclusive"},
		{[]string{"ledger.existingClaim=ledger", "ledger.witness.existingClaim=ledger"}, "proves nothing"},
		{[]string{"ledger.keySecret.key=ledger key"}, "/ledger/keySecret/key"},

		// Envoy mode.
		{[]string{"mode=envoy"}, "needs envoy.image.repository"},
		{[]string{"mode=envoy", "envoy.image.repository=envoy", "envoy.image.tag=v1.37.0", "dropIn.caSecret.name=ca"}, "for mode proxy"},
		{[]string{"mode=envoy", "envoy.image.repository=envoy", "envoy.image.tag=v1.37.0",
			"policies.bundle.url=https://bundles/b.tar.gz", "policies.bundle.keys.configMap=k"}, "takes no policies.bundle"},
		{[]string{"mode=envoy", "envoy.image.repository=envoy", "envoy.image.tag=v1.37.0", "envoy.xdsPort=15000"}, "must differ"},
		{[]string{"mode=envoy", "envoy.image.repository=envoy", "envoy.image.tag=v1.37.0", "envoy.runAsUser=65532"}, "Pare's UID"},
		{[]string{"envoy.runAsUser=0"}, "/envoy/runAsUser"},
		{[]string{"envoy.logLevel=loud"}, "/envoy/logLevel"},
		{[]string{"envoy.caFile=ca.pem"}, "/envoy/caFile"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.set, ","), func(t *testing.T) {
			args := []string{"template", "demo", "pare"}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil {
				t.Fatalf("accepted:\n%s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("error does not say %q:\n%s", tt.want, out)
			}
		})
	}
}

// TestExampleInReadme: the copy-paste example of the chart's README is the
// parent chart's template that the tests render, verbatim.
func TestExampleInReadme(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("pare", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"templates/deployment.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", "parent", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, b) {
			t.Errorf("charts/pare/README.md does not contain testdata/parent/%s verbatim", f)
		}
	}
}
