package charts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// The rendered manifests are validated offline against the schemas the API
// server itself publishes: the OpenAPI v3 documents shipped in the
// k8s.io/kubernetes module (api/openapi-spec/v3), at the release of the
// k8s.io modules in go.mod, and the Prometheus Operator's CRDs from its own
// module. Both come from the Go module proxy like any module; neither is a
// dependency of the build. This does what kubeconform -strict does with
// schemas generated the same way: every object must match its kind's schema
// and carry no field the API does not know.

// promOperatorVersion is the Prometheus Operator release whose CRDs
// (example/prometheus-operator-crd) the PodMonitor is checked against.
const promOperatorVersion = "v0.85.0"

// moduleDir downloads module@version into the module cache (verified
// against the checksum database) and returns its directory. It runs outside
// this module so that go.sum is left alone.
func moduleDir(t *testing.T, module, version string) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GO111MODULE=on", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if err == nil {
		err = json.Unmarshal(out, &info)
	}
	if err != nil || info.Error != "" || info.Dir == "" {
		t.Fatalf("go mod download %s@%s: %v %s %s", module, version, err, info.Error, stderr.String())
	}
	return info.Dir
}

// kubernetesVersion is the Kubernetes release matching the k8s.io modules
// this repository builds with (k8s.io/api v0.37.2 is Kubernetes v1.37.2).
func kubernetesVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "k8s.io/api").Output()
	if err != nil {
		t.Fatalf("go list -m k8s.io/api: %v", err)
	}
	v := strings.TrimSpace(string(out))
	if !strings.HasPrefix(v, "v0.") {
		t.Fatalf("k8s.io/api %s: want v0.MINOR.PATCH", v)
	}
	return "v1." + strings.TrimPrefix(v, "v0.")
}

type gvk struct{ apiVersion, kind string }

// kubeSchemas maps each kind the chart may render to its compiled schema.
type kubeSchemas map[gvk]*jsonschema.Schema

var (
	schemasOnce sync.Once
	schemas     kubeSchemas
	schemasErr  error
)

func loadKubeSchemas(t *testing.T) kubeSchemas {
	t.Helper()
	schemasOnce.Do(func() {
		k8s := filepath.Join(moduleDir(t, "k8s.io/kubernetes", kubernetesVersion(t)), "api", "openapi-spec", "v3")
		prom := filepath.Join(moduleDir(t, "github.com/prometheus-operator/prometheus-operator", promOperatorVersion),
			"example", "prometheus-operator-crd")
		schemas, schemasErr = buildKubeSchemas(k8s, prom)
	})
	if schemasErr != nil {
		t.Fatal(schemasErr)
	}
	return schemas
}

func buildKubeSchemas(openAPIDir, crdDir string) (kubeSchemas, error) {
	out := kubeSchemas{}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	for _, doc := range []struct {
		file  string
		kinds []gvk
	}{
		{"api__v1_openapi.json", []gvk{{"v1", "ConfigMap"}, {"v1", "Pod"}}},
		{"apis__apps__v1_openapi.json", []gvk{{"apps/v1", "Deployment"}, {"apps/v1", "StatefulSet"}, {"apps/v1", "DaemonSet"}}},
		{"apis__batch__v1_openapi.json", []gvk{{"batch/v1", "Job"}, {"batch/v1", "CronJob"}}},
		{"apis__networking.k8s.io__v1_openapi.json", []gvk{{"networking.k8s.io/v1", "NetworkPolicy"}}},
	} {
		b, err := os.ReadFile(filepath.Join(openAPIDir, doc.file))
		if err != nil {
			return nil, err
		}
		var spec struct {
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			return nil, fmt.Errorf("%s: %w", doc.file, err)
		}
		defs := map[string]any{}
		byKind := map[gvk]string{}
		for name, s := range spec.Components.Schemas {
			defs[name] = strictSchema(s)
			for _, k := range gvksOf(s) {
				byKind[k] = name
			}
		}
		for _, k := range doc.kinds {
			name, ok := byKind[k]
			if !ok {
				return nil, fmt.Errorf("%s: no schema for %s %s", doc.file, k.apiVersion, k.kind)
			}
			url := "k8s://" + doc.file + "/" + k.apiVersion + "/" + k.kind
			root, err := toJSONValue(map[string]any{"$defs": defs, "$ref": "#/$defs/" + name})
			if err != nil {
				return nil, err
			}
			if err := c.AddResource(url, root); err != nil {
				return nil, err
			}
			if out[k], err = c.Compile(url); err != nil {
				return nil, fmt.Errorf("%s %s: %w", k.apiVersion, k.kind, err)
			}
		}
	}
	for _, crd := range []string{"monitoring.coreos.com_podmonitors.yaml", "monitoring.coreos.com_servicemonitors.yaml"} {
		b, err := os.ReadFile(filepath.Join(crdDir, crd))
		if err != nil {
			return nil, err
		}
		var doc struct {
			Spec struct {
				Group    string
				Names    struct{ Kind string }
				Versions []struct {
					Name   string
					Schema struct {
						OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", crd, err)
		}
		for _, v := range doc.Spec.Versions {
			k := gvk{doc.Spec.Group + "/" + v.Name, doc.Spec.Names.Kind}
			url := "crd://" + crd + "/" + v.Name
			root, err := toJSONValue(strictSchema(v.Schema.OpenAPIV3Schema))
			if err != nil {
				return nil, err
			}
			if err := c.AddResource(url, root); err != nil {
				return nil, err
			}
			if out[k], err = c.Compile(url); err != nil {
				return nil, fmt.Errorf("%s: %w", crd, err)
			}
		}
	}
	return out, nil
}

// gvksOf reads x-kubernetes-group-version-kind.
func gvksOf(s any) []gvk {
	m, _ := s.(map[string]any)
	list, _ := m["x-kubernetes-group-version-kind"].([]any)
	var out []gvk
	for _, e := range list {
		g, _ := e.(map[string]any)
		group, _ := g["group"].(string)
		version, _ := g["version"].(string)
		kind, _ := g["kind"].(string)
		av := version
		if group != "" {
			av = group + "/" + version
		}
		out = append(out, gvk{av, kind})
	}
	return out
}

// strictSchema turns an OpenAPI v3 schema of Kubernetes into JSON Schema
// 2020-12, as kubeconform's openapi2jsonschema does with -strict: refs point
// into $defs, an object with declared properties admits no other property
// (a misspelled field is an error, as the API server's strict field
// validation makes it), int-or-string fields take both.
func strictSchema(s any) any {
	switch v := s.(type) {
	case map[string]any:
		out := make(map[string]any, len(v)+1)
		for k, e := range v {
			out[k] = strictSchema(e)
		}
		if ref, ok := v["$ref"].(string); ok {
			out["$ref"] = strings.Replace(ref, "#/components/schemas/", "#/$defs/", 1)
		}
		if v["x-kubernetes-int-or-string"] == true {
			delete(out, "type")
			out["anyOf"] = []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}
		}
		if _, has := v["properties"]; has && v["additionalProperties"] == nil && v["x-kubernetes-preserve-unknown-fields"] != true {
			out["additionalProperties"] = false
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = strictSchema(e)
		}
		return out
	}
	return s
}

// toJSONValue round-trips v through encoding/json into the value types the
// validator expects (json.Number, map[string]any, []any).
func toJSONValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// validate checks one rendered object against its kind's schema.
func (ks kubeSchemas) validate(o object) error {
	av, _ := o["apiVersion"].(string)
	kind, _ := o["kind"].(string)
	s, ok := ks[gvk{av, kind}]
	if !ok {
		return fmt.Errorf("no schema for %s %s: add it to buildKubeSchemas", av, kind)
	}
	v, err := toJSONValue(o)
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("%s %s: %#v", kind, name(o), ve) // every failing field, by path
		}
		return fmt.Errorf("%s %s: %v", kind, name(o), err)
	}
	return nil
}

func name(o object) string {
	m, _ := o["metadata"].(map[string]any)
	n, _ := m["name"].(string)
	return n
}

// podTemplate returns the pod template of a workload; ok is false for an
// object that has none.
func podTemplate(o object) (pt corev1.PodTemplateSpec, ok bool, err error) {
	var spec map[string]any
	switch o["kind"] {
	case "Deployment", "StatefulSet", "DaemonSet", "Job":
		spec, _ = o["spec"].(map[string]any)
	case "CronJob":
		s, _ := o["spec"].(map[string]any)
		jt, _ := s["jobTemplate"].(map[string]any)
		spec, _ = jt["spec"].(map[string]any)
	default:
		return pt, false, nil
	}
	b, err := json.Marshal(spec["template"])
	if err != nil {
		return pt, true, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pt); err != nil {
		return pt, true, fmt.Errorf("%s %s: pod template: %w", o["kind"], name(o), err)
	}
	return pt, true, nil
}

// restrictedViolations evaluates a pod against the "restricted" Pod
// Security Standard at the latest version, with the same checks the
// PodSecurity admission controller runs.
func restrictedViolations(t *testing.T, pt corev1.PodTemplateSpec) []string {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psapi.LevelVersion{Level: psapi.LevelRestricted, Version: psapi.LatestVersion()}
	meta := metav1.ObjectMeta{Labels: pt.Labels, Annotations: pt.Annotations}
	var out []string
	for _, r := range ev.EvaluatePod(lv, &meta, &pt.Spec) {
		if !r.Allowed {
			out = append(out, r.ForbiddenReason+": "+r.ForbiddenDetail)
		}
	}
	return out
}
