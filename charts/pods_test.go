package charts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/cli"
	"github.com/pare-dev/pare/internal/ledger"
)

// pareUID is the UID every Pare container runs as: the transparent mode's
// redirect lets its connections out, so no app container may use it.
const pareUID = 65532

// The init containers of the transparent mode's iptables redirect: they
// need NET_ADMIN and NET_RAW as root, which is why such a pod leaves the
// "restricted" Pod Security Standard.
var redirectContainers = []string{"pare-iptables", "pare-ip6tables"}

// checkPods checks every pod the manifests would run with the sidecar.
// leavesRestricted says the values ask for the iptables redirect: the pod
// must then break the restricted standard through those init containers
// alone.
func checkPods(t *testing.T, objs []object, leavesRestricted bool) {
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
		v := restrictedViolations(t, pt)
		if leavesRestricted {
			if len(v) == 0 {
				t.Errorf("%s: the iptables redirect is on, yet the pod meets the restricted Pod Security Standard: the redirect cannot work", where)
			}
			// Without the redirect's init containers the pod is restricted again.
			rest := *pt.DeepCopy()
			rest.Spec.InitContainers = slices.DeleteFunc(rest.Spec.InitContainers, func(c corev1.Container) bool {
				return slices.Contains(redirectContainers, c.Name)
			})
			v = restrictedViolations(t, rest)
		}
		if len(v) > 0 {
			t.Errorf("%s: the restricted Pod Security Standard forbids it:\n  %s", where, strings.Join(v, "\n  "))
		}
		checkSidecar(t, where, pt, objs)
	}
	if pods == 0 && len(ofKind(objs, "Deployment"))+len(ofKind(objs, "Job")) > 0 {
		t.Error("no pod template checked")
	}
}

func initContainer(spec corev1.PodSpec, name string) (*corev1.Container, int) {
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			return &spec.InitContainers[i], i
		}
	}
	return nil, -1
}

func checkSidecar(t *testing.T, where string, pt corev1.PodTemplateSpec, objs []object) {
	t.Helper()
	spec := pt.Spec
	pare, pareAt := initContainer(spec, "pare")
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
		if strings.HasPrefix(c.Name, "pare") || c.Name == "envoy" {
			t.Errorf("%s: %s is a regular container, not a sidecar", where, c.Name)
		}
	}

	sc := pare.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.RunAsUser == nil || *sc.RunAsUser != pareUID ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("%s: the sidecar's securityContext is not read-only, UID %d, RuntimeDefault seccomp, all capabilities dropped: %+v", where, pareUID, sc)
	}

	cfg, data := sidecarConfig(t, where, spec, objs)
	if cfg == nil {
		return
	}
	raw := data["config.yaml"]
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
	checkGoMemLimit(t, where, pare)

	pod := buildPodFS(t, where, spec, data)

	// The egress the app is pointed at: Pare's listener, or in mode envoy
	// Envoy's, which proxy xds configures.
	egress := cfg["listen"].(string)
	xdsC, _ := initContainer(spec, "pare-xds")
	envoyC, _ := initContainer(spec, "envoy")
	if subcommand(pare.Args) == "extproc" || xdsC != nil || envoyC != nil {
		egress = checkEnvoy(t, where, spec, pod, cfg, data)
	} else if subcommand(pare.Args) != "serve" {
		t.Errorf("%s: the pare container runs %q, want serve (or extproc in mode envoy)", where, subcommand(pare.Args))
	}

	// Every app container goes through the sidecar, HTTPS included, except
	// for the cluster-internal names.
	wantProxy := "http://" + egress
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
		// Of Pare's volumes an app sees only the CA certificate it must
		// trust, read-only: never the ledger, its keys or credentials.
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(m.Name, "pare-") && (!slices.Contains([]string{"pare-ca", "pare-ca-cert", "pare-trust"}, m.Name) || !m.ReadOnly) {
				t.Errorf("%s: container %s mounts %s (read-only %v): only Pare's CA certificate is the app's business", where, c.Name, m.Name, m.ReadOnly)
			}
		}
	}

	// Variables that name files (PGPASSFILE, PGSSLROOTCERT) name mounted ones.
	for _, e := range pare.Env {
		if strings.HasPrefix(e.Value, "/") {
			if _, err := os.Stat(pod.host("pare", e.Value)); err != nil {
				t.Errorf("%s: the sidecar's %s=%s is not in its mounted files: %v", where, e.Name, e.Value, err)
			}
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

	eff := checkConfigInPod(t, where, pod, *pare, raw)
	if eff["drop_in"] == true {
		checkAppTrust(t, where, spec, pod, eff)
	}
	if eff["transparent"] != nil {
		checkTransparent(t, where, spec, pod, pareAt, eff, data)
	} else if len(data["iptables.rules"]) > 0 {
		t.Errorf("%s: iptables rules rendered without the transparent listener", where)
	}
}

func checkGoMemLimit(t *testing.T, where string, c *corev1.Container) {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		want := lim.Value() * 9 / 10
		if got := env["GOMEMLIMIT"]; got != strconv.FormatInt(want, 10) {
			t.Errorf("%s: %s: GOMEMLIMIT %q, want %d (90%% of %s)", where, c.Name, got, want, lim.String())
		}
	}
}

func subcommand(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// flagValues reads "--name value" pairs after the subcommand.
func flagValues(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i := 1; i < len(args); i += 2 {
		if !strings.HasPrefix(args[i], "--") || i+1 == len(args) {
			t.Fatalf("arguments %q: want --flag value pairs after the subcommand", args)
		}
		out[strings.TrimPrefix(args[i], "--")] = args[i+1]
	}
	return out
}

// checkEnvoy checks the Envoy mode's three sidecars against each other and
// returns the address of Envoy's egress listener. proxy xds's flags are
// checked by its own flag parser, the bootstrap against what `proxy
// envoy-bootstrap` prints for the same addresses.
func checkEnvoy(t *testing.T, where string, spec corev1.PodSpec, pod *podFS, cfg map[string]any, data map[string]string) string {
	t.Helper()
	pare, pareAt := initContainer(spec, "pare")
	xdsC, xdsAt := initContainer(spec, "pare-xds")
	envoyC, envoyAt := initContainer(spec, "envoy")
	if xdsC == nil || envoyC == nil || subcommand(pare.Args) != "extproc" {
		t.Errorf("%s: mode envoy wants the sidecars pare (proxy extproc), pare-xds and envoy", where)
		return ""
	}
	// Started in this order, stopped in the reverse: Envoy goes before the
	// ext_proc server it cannot work without.
	if !(pareAt < xdsAt && xdsAt < envoyAt) {
		t.Errorf("%s: sidecars in the order pare %d, pare-xds %d, envoy %d; want pare, pare-xds, envoy", where, pareAt, xdsAt, envoyAt)
	}
	for _, c := range []*corev1.Container{xdsC, envoyC} {
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("%s: %s is not a native sidecar (restartPolicy: Always)", where, c.Name)
		}
	}
	if cfg["drop_in"] != false {
		t.Errorf("%s: extproc's config has drop_in %v: Envoy terminates no tunnels, and check must judge the config as extproc runs it", where, cfg["drop_in"])
	}
	checkGoMemLimit(t, where, xdsC)
	if xdsC.Image != pare.Image {
		t.Errorf("%s: proxy xds runs %s, proxy extproc %s: one build must make both configs", where, xdsC.Image, pare.Image)
	}

	var stderr bytes.Buffer
	if code := cli.Main(append(slices.Clone(xdsC.Args), "-h"), nil, io.Discard, &stderr); subcommand(xdsC.Args) != "xds" || code != 0 {
		t.Errorf("%s: proxy %s does not take its arguments %q (exit %d):\n%s", where, subcommand(xdsC.Args), xdsC.Args, code, stderr.String())
	}
	xf := flagValues(t, xdsC.Args)
	if xf["extproc"] != cfg["listen"] {
		t.Errorf("%s: proxy xds sends Envoy's ext_proc calls to %s, proxy extproc listens on %v", where, xf["extproc"], cfg["listen"])
	}
	if xf["max-body"] != fmt.Sprint(cfg["max_body"]) {
		t.Errorf("%s: Envoy buffers %s, extproc accepts %v: the two must agree", where, xf["max-body"], cfg["max_body"])
	}
	if host, _, err := net.SplitHostPort(xf["egress"]); err != nil || host != "127.0.0.1" {
		t.Errorf("%s: Envoy's egress listener %q is not on loopback", where, xf["egress"])
	}
	// Both read the same policies: the same mounts at the same paths.
	if p, _ := cfg["policies"].(string); p != xf["policies"] {
		t.Errorf("%s: proxy extproc reads policies %q, proxy xds %q", where, p, xf["policies"])
	}
	for _, m := range pare.VolumeMounts {
		if m.Name == "pare-policies" || m.Name == "pare-contracts" {
			if !slices.ContainsFunc(xdsC.VolumeMounts, func(x corev1.VolumeMount) bool { return x.Name == m.Name && x.MountPath == m.MountPath }) {
				t.Errorf("%s: proxy xds does not mount %s at %s as extproc does", where, m.Name, m.MountPath)
			}
		}
	}

	ef := map[string]string{}
	for i := 0; i+1 < len(envoyC.Args); i++ {
		if strings.HasPrefix(envoyC.Args[i], "-") {
			ef[envoyC.Args[i]] = envoyC.Args[i+1]
		}
	}
	if ef["--service-node"] != "$(POD_NAME)" || !slices.ContainsFunc(envoyC.Env, func(e corev1.EnvVar) bool {
		return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}) {
		t.Errorf("%s: Envoy's node id is not the pod's name (--service-node $(POD_NAME)): %q", where, envoyC.Args)
	}
	b, err := os.ReadFile(pod.host("envoy", ef["-c"]))
	if err != nil {
		t.Errorf("%s: Envoy's bootstrap -c %q is not in its mounted files: %v", where, ef["-c"], err)
		return xf["egress"]
	}
	var bs struct {
		Node  struct{ ID, Cluster string }
		Admin struct {
			Address struct {
				SocketAddress struct {
					Address   string
					PortValue int `yaml:"port_value"`
				} `yaml:"socket_address"`
			}
		}
	}
	if err := yaml.Unmarshal(b, &bs); err != nil {
		t.Fatalf("%s: envoy.yaml: %v", where, err)
	}
	admin := bs.Admin.Address.SocketAddress
	if admin.Address != "127.0.0.1" {
		t.Errorf("%s: Envoy's admin interface on %s: it must stay on loopback", where, admin.Address)
	}
	var want bytes.Buffer
	stderr.Reset()
	if code := cli.Main([]string{"envoy-bootstrap", "--node", bs.Node.ID, "--cluster", bs.Node.Cluster, "--xds", xf["listen"],
		"--admin", net.JoinHostPort(admin.Address, strconv.Itoa(admin.PortValue))}, nil, &want, &stderr); code != 0 {
		t.Fatalf("%s: proxy envoy-bootstrap: exit %d: %s", where, code, stderr.String())
	}
	var got, exp any
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(want.Bytes(), &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("%s: the chart's envoy.yaml is not what `proxy envoy-bootstrap` prints for proxy xds at %s:\nchart:\n%s\nproxy envoy-bootstrap:\n%s",
			where, xf["listen"], b, want.String())
	}
	return xf["egress"]
}

// checkAppTrust: every trust variable pare.appEnv sets names, in the app
// container's own mounted files, a certificate that verifies what Pare
// serves for a vendor; and an app never sees a supplied CA's key.
func checkAppTrust(t *testing.T, where string, spec corev1.PodSpec, pod *podFS, cfg map[string]any) {
	t.Helper()
	var opt ca.Options
	var keyPEM []byte
	if cert, _ := cfg["ca_cert"].(string); cert != "" {
		opt = ca.Options{CertFile: pod.host("pare", cert), KeyFile: pod.host("pare", cfg["ca_key"].(string))}
		keyPEM, _ = os.ReadFile(opt.KeyFile)
	} else {
		// What serve does on its first start: a CA in state_dir,
		// constrained to the contract hosts.
		opt = ca.Options{StateDir: pod.host("pare", cfg["state_dir"].(string)), Hosts: []string{"api.stripe.com"}}
	}
	c, err := ca.Open(opt)
	if err != nil {
		t.Errorf("%s: the drop-in CA does not open in the sidecar's files: %v", where, err)
		return
	}
	leaf, err := c.Leaf("api.stripe.com")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(leaf.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range spec.Containers {
		for _, e := range app.Env {
			if e.Name != "SSL_CERT_FILE" && e.Name != "REQUESTS_CA_BUNDLE" && e.Name != "NODE_EXTRA_CA_CERTS" {
				continue
			}
			b, err := os.ReadFile(pod.host(app.Name, e.Value))
			if err != nil {
				t.Errorf("%s: container %s: %s=%s is not in its mounted files: %v", where, app.Name, e.Name, e.Value, err)
				continue
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(b)
			if _, err := cert.Verify(x509.VerifyOptions{DNSName: "api.stripe.com", Roots: roots}); err != nil {
				t.Errorf("%s: container %s: %s=%s does not verify Pare's certificate for a vendor: %v", where, app.Name, e.Name, e.Value, err)
			}
		}
		if keyPEM == nil {
			continue // a CA generated in the pod: no one else trusts it
		}
		for _, m := range app.VolumeMounts {
			dir := pod.host(app.Name, m.MountPath)
			_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if b, _ := os.ReadFile(p); bytes.Contains(b, bytes.TrimSpace(keyPEM)) {
						t.Errorf("%s: container %s can read the drop-in CA's key at %s", where, app.Name, strings.TrimPrefix(p, dir))
					}
				}
				return nil
			})
		}
	}
}

// checkTransparent: the redirect sends the app's traffic to the listener
// Pare opens, lets Pare's own UID out, and no app runs as that UID.
func checkTransparent(t *testing.T, where string, spec corev1.PodSpec, pod *podFS, pareAt int, cfg map[string]any, data map[string]string) {
	t.Helper()
	_, tport, _ := net.SplitHostPort(cfg["transparent"].(string))
	rules := data["iptables.rules"]
	if rules == "" {
		return // the CNI plugin or mesh redirects: nothing in the pod to check
	}
	// In the nat table, Pare's own connections return before any redirect
	// (or Pare would be sent to itself), and every redirect goes to the
	// transparent listener.
	nat, _, _ := strings.Cut(rules, "COMMIT")
	exempt, redirects := -1, 0
	for i, line := range strings.Split(nat, "\n") {
		switch {
		case strings.Contains(line, fmt.Sprintf("-m owner --uid-owner %d -j RETURN", pareUID)) && exempt < 0:
			exempt = i
		case strings.Contains(line, "-j REDIRECT"):
			redirects++
			if exempt < 0 || !strings.HasSuffix(line, "--to-ports "+tport) {
				t.Errorf("%s: iptables.rules: %q comes before UID %d's exemption or does not go to the transparent listener's port %s", where, line, pareUID, tport)
			}
		}
	}
	if !strings.HasPrefix(nat, "*nat") || redirects == 0 {
		t.Errorf("%s: iptables.rules redirects nothing in its nat table:\n%s", where, rules)
	}
	for _, n := range redirectContainers {
		c, at := initContainer(spec, n)
		if c == nil {
			if n == "pare-iptables" || data["ip6tables.rules"] != "" {
				t.Errorf("%s: no init container %s", where, n)
			}
			continue
		}
		if at > pareAt || c.RestartPolicy != nil {
			t.Errorf("%s: %s must run to completion before pare starts", where, n)
		}
		// Root, said explicitly: a pod-wide runAsNonRoot would otherwise
		// make the kubelet refuse to start it.
		if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot {
			t.Errorf("%s: %s must run as root with runAsNonRoot: false: %+v", where, n, sc)
		}
		if len(c.Command) != 3 {
			t.Errorf("%s: %s: command %q", where, n, c.Command)
			continue
		}
		if _, err := os.Stat(pod.host(n, c.Command[2])); err != nil {
			t.Errorf("%s: %s restores %s, which is not in its mounted files", where, n, c.Command[2])
		}
	}
	for _, app := range spec.Containers {
		uid := spec.SecurityContext.RunAsUser
		if app.SecurityContext != nil && app.SecurityContext.RunAsUser != nil {
			uid = app.SecurityContext.RunAsUser
		}
		if uid == nil || *uid == pareUID {
			t.Errorf("%s: container %s runs as UID %v: the redirect lets UID %d out, so the app must set another", where, app.Name, uid, pareUID)
		}
	}
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
// returns its config.yaml, decoded, and all its data.
func sidecarConfig(t *testing.T, where string, spec corev1.PodSpec, objs []object) (map[string]any, map[string]string) {
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
		data := map[string]string{}
		m, _ := dig(map[string]any(cm), "data").(map[string]any)
		for k, v := range m {
			data[k], _ = v.(string)
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(data["config.yaml"]), &cfg); err != nil {
			t.Fatalf("%s: config.yaml: %v", where, err)
		}
		return cfg, data
	}
	t.Errorf("%s: the pare-config volume mounts ConfigMap %q, which the chart does not render", where, cmName)
	return nil, nil
}

// pathKeys are the config keys that name files or directories.
var pathKeys = map[string]bool{"policies": true, "ledger": true, "hmac_key_file": true, "consents": true, "upstream_ca": true,
	"state_dir": true, "ledger_key": true, "ledger_checkpoint": true, "bundle_dir": true, "ca_cert": true, "ca_key": true,
	"bundle_key": true, "bundle_ca": true, "bundle_token_file": true}

// writableKeys name what serve creates or appends to: they must be on a
// writable volume.
var writableKeys = map[string]bool{"ledger": true, "state_dir": true, "ledger_checkpoint": true, "bundle_dir": true}

// podFS is the files a pod's containers would see, laid out under a
// temporary root: ctr/NAME/ is container NAME's view. An emptyDir or PVC is
// one directory (vol/NAME) every container mounting it reaches through a
// symbolic link, so what the sidecar writes the app reads; a ConfigMap or
// Secret is populated, per mount, with fixtures for what the chart says it
// holds, the items it selects and the modes the kubelet gives them.
type podFS struct {
	root   string
	mounts map[string]map[string]bool // container -> mount path -> writable
}

// host is where path, as container sees it, lies in the test's filesystem.
func (p *podFS) host(container, path string) string {
	return filepath.Join(p.root, "ctr", container, path)
}

// mountOf is the mount of container that holds path.
func (p *podFS) mountOf(container, path string) (string, bool) {
	best := ""
	for mp := range p.mounts[container] {
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	return best, best != ""
}

func buildPodFS(t *testing.T, where string, spec corev1.PodSpec, data map[string]string) *podFS {
	t.Helper()
	p := &podFS{root: t.TempDir(), mounts: map[string]map[string]bool{}}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		p.mounts[c.Name] = map[string]bool{}
		ms := slices.Clone(c.VolumeMounts)
		sort.Slice(ms, func(i, j int) bool { return len(ms[i].MountPath) < len(ms[j].MountPath) }) // parents first
		for _, m := range ms {
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("%s: container %s mounts volume %s, which the pod does not have", where, c.Name, m.Name)
				continue
			}
			p.mounts[c.Name][m.MountPath] = !m.ReadOnly
			at := p.host(c.Name, m.MountPath)
			if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
				t.Fatal(err)
			}
			if v.EmptyDir != nil || v.PersistentVolumeClaim != nil {
				shared := filepath.Join(p.root, "vol", v.Name)
				if err := os.MkdirAll(shared, 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(shared, at); err != nil {
					t.Fatalf("%s: container %s: %s: a mount inside a shared volume is not simulated: %v", where, c.Name, m.MountPath, err)
				}
				continue
			}
			if err := os.MkdirAll(at, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := populate(at, v, data, spec.SecurityContext); err != nil {
				t.Errorf("%s: container %s: volume %s: %v", where, c.Name, m.Name, err)
			}
		}
	}
	return p
}

// effectiveConfig is the config the pare container runs with: the rendered
// file with its arguments applied over it (flags win, as in serve; $(VAR)
// expanded as the kubelet does), as a YAML document.
func effectiveConfig(t *testing.T, where, raw string, args []string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	m := doc.Content[0]
	for flag, val := range flagValues(t, args) {
		if flag == "config" {
			continue
		}
		key := strings.ReplaceAll(flag, "-", "_")
		val = strings.ReplaceAll(val, "$(POD_NAME)", "shop-7d9f")
		if strings.Contains(val, "$(") {
			t.Errorf("%s: argument --%s %s: the test knows only $(POD_NAME)", where, flag, val)
		}
		set := false
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				m.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Value: val}
				set = true
			}
		}
		if !set {
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, &yaml.Node{Kind: yaml.ScalarNode, Value: val})
		}
	}
	return &doc
}

// checkConfigInPod runs `proxy check --config` on the sidecar's effective
// config with its paths moved into the sidecar's view of the pod's files.
// So the config is not only valid: every file it names is mounted where it
// says, what serve writes is on a writable volume, the witness on another
// volume than the ledger, and the policies it loads compile and pass their
// tests. It returns the effective config with the paths as in the pod.
func checkConfigInPod(t *testing.T, where string, pod *podFS, pare corev1.Container, raw string) map[string]any {
	t.Helper()
	doc := effectiveConfig(t, where, raw, pare.Args)
	var eff map[string]any
	if err := doc.Decode(&eff); err != nil {
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
			if v.Value == "" {
				continue // off (state_dir when there is nothing to generate)
			}
			mp, ok := pod.mountOf("pare", v.Value)
			if !ok {
				t.Errorf("%s: config %s: %s is on no volume the sidecar mounts (the root filesystem is read-only)", where, key, v.Value)
				continue
			}
			if writableKeys[key] && !pod.mounts["pare"][mp] {
				t.Errorf("%s: config %s: %s is on read-only mount %s", where, key, v.Value, mp)
			}
			v.Value = pod.host("pare", v.Value)
		}
	}
	// The witness is on another volume than the ledger, in the file and as
	// the container's arguments make it.
	var file map[string]any
	if err := yaml.Unmarshal([]byte(raw), &file); err != nil {
		t.Fatal(err)
	}
	for _, c := range []map[string]any{file, eff} {
		if w, _ := c["ledger_checkpoint"].(string); w != "" {
			wm, _ := pod.mountOf("pare", w)
			lm, _ := pod.mountOf("pare", c["ledger"].(string))
			if wm == lm {
				t.Errorf("%s: the witness %s is on the ledger's volume %s: it would prove nothing", where, w, lm)
			}
		}
	}
	out, err := yaml.Marshal(doc)
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
	return eff
}

// fixtures are what the operator's ConfigMaps and Secrets hold, made once.
var fixtures = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "pare-chart-ca-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := ca.Generate(dir, nil, time.Now()); err != nil {
		return nil, err
	}
	caCert, err := os.ReadFile(filepath.Join(dir, ca.CertFile))
	if err != nil {
		return nil, err
	}
	caKey, err := os.ReadFile(filepath.Join(dir, ca.KeyFile))
	if err != nil {
		return nil, err
	}
	skey, _, err := ledger.GenerateKey()
	if err != nil {
		return nil, err
	}
	// A trust bundle as trust-manager makes one: the system's roots (when
	// this machine has them) and the company's CA.
	system, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	return map[string]string{
		"ca.crt":      string(caCert),
		"ca.key":      string(caKey),
		"ledger.key":  skey + "\n",
		"token":       "a-bearer-token\n",
		"pgpass":      "ledger-db.db.svc:5432:pare:pare_shipper:secret\n",
		"trustBundle": string(system) + string(caCert),
	}, nil
})

// bundleKey is a PEM public key per file name: each key of a bundle-keys
// ConfigMap a different key, as in a rotation.
var bundleKey = func() func(string) (string, error) {
	var mu sync.Mutex
	keys := map[string]string{}
	return func(name string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		if k, ok := keys[name]; ok {
			return k, nil
		}
		bk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", err
		}
		der, err := x509.MarshalPKIXPublicKey(&bk.PublicKey)
		if err != nil {
			return "", err
		}
		keys[name] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		return keys[name], nil
	}
}()

// populate fills a mounted ConfigMap or Secret volume as the kubelet would:
// the chart's own ConfigMap with its rendered data, the operator's with
// fixtures for what the chart says they hold, only the items it selects,
// each with the mode the kubelet gives it (defaultMode, or the item's, and
// with the pod's fsGroup group-readable, owner root). A file UID 65532
// could not read in the pod is an error.
func populate(dir string, v corev1.Volume, data map[string]string, psc *corev1.PodSecurityContext) error {
	fx, err := fixtures()
	if err != nil {
		return err
	}
	var items []corev1.KeyToPath
	var defaultMode *int32
	switch {
	case v.ConfigMap != nil:
		items, defaultMode = v.ConfigMap.Items, v.ConfigMap.DefaultMode
	case v.Secret != nil:
		items, defaultMode = v.Secret.Items, v.Secret.DefaultMode
	default:
		return fmt.Errorf("no fixture for volume %s", v.Name)
	}
	var fsGroup *int64
	if psc != nil {
		fsGroup = psc.FSGroup
	}
	write := func(path, content string, mode *int32) error {
		perm := fs.FileMode(0o644)
		if mode != nil {
			perm = fs.FileMode(*mode)
		} else if defaultMode != nil {
			perm = fs.FileMode(*defaultMode)
		}
		if fsGroup != nil {
			perm |= 0o440
		}
		if perm&0o004 == 0 && (fsGroup == nil || *fsGroup != pareUID || perm&0o040 == 0) {
			return fmt.Errorf("%s would be mode %v, owner root, group %v: UID %d cannot read it (the pod needs fsGroup: %d)",
				path, perm, fsGroup, pareUID, pareUID)
		}
		if os.Getuid() != 0 {
			perm &= 0o700 // the file is the test user's, not root's: only the owner's bits mean the same
		}
		f := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(content), perm); err != nil {
			return err
		}
		return os.Chmod(f, perm)
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
			if err := write(filepath.Base(f), string(b), nil); err != nil {
				return err
			}
		}
		return nil
	}
	// Volumes whose files the chart names by item path.
	byPath := map[string]map[string]string{
		"pare-ca-key":       {"ca.crt": fx["ca.crt"], "ca.key": fx["ca.key"]},
		"pare-ca-cert":      {"ca.crt": fx["ca.crt"]},
		"pare-trust":        {"ca-certificates.crt": fx["trustBundle"]},
		"pare-ledger-key":   {"ledger.key": fx["ledger.key"]},
		"pare-bundle-token": {"token": fx["token"]},
		"pare-bundle-ca":    {"ca.crt": fx["ca.crt"]},
		"pare-pgpass":       {"pgpass": fx["pgpass"]},
		"pare-pg-ca":        {"ca.crt": fx["ca.crt"]},
	}
	switch {
	case v.Name == "pare-config":
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if len(items) > 0 && !slices.ContainsFunc(items, func(i corev1.KeyToPath) bool { return i.Key == k }) {
				continue
			}
			if err := write(k, data[k], nil); err != nil {
				return err
			}
		}
		return nil
	case v.Name == "pare-bundle-keys":
		for _, it := range items {
			k, err := bundleKey(it.Path)
			if err != nil {
				return err
			}
			if err := write(it.Path, k, it.Mode); err != nil {
				return err
			}
		}
		return nil
	case byPath[v.Name] != nil:
		if len(items) == 0 {
			return fmt.Errorf("volume %s selects no items: what it holds is unknown", v.Name)
		}
		for _, it := range items {
			content, ok := byPath[v.Name][it.Path]
			if !ok {
				return fmt.Errorf("no fixture for %s in volume %s", it.Path, v.Name)
			}
			if err := write(it.Path, content, it.Mode); err != nil {
				return err
			}
		}
		return nil
	case v.Name == "pare-policies":
		return copyGlob("../policies/*.rego")
	case v.Name == "pare-contracts":
		return copyGlob("../policies/contracts/*.yaml")
	case v.Name == "pare-consents":
		return copyGlob("../internal/cli/demodata/consents.yaml")
	case v.Name == "pare-hmac" && v.Secret != nil:
		return write("hmac.key", "a-test-key-of-32-bytes-for-hmac!", nil)
	}
	return fmt.Errorf("no fixture for volume %s", v.Name)
}
