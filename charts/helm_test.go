package charts

import (
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
)

// helm runs `helm lint` or `helm template` with the Helm pinned in go.mod,
// through the packages the helm command itself runs them with (chart
// loader, dependency processing, values schema, template engine, linter),
// in this process. Building the helm command instead would compile some 950
// packages (kubectl, client-go's typed clients, storage drivers, OCI
// registry) that neither subcommand uses, which was most of a cold
// `go test ./...`; `go tool helm` stays pinned for people and for .ci/run.
//
// It takes the subset of the command line these tests use:
//
//	lint [--strict] CHART [-f FILE]...
//	template NAME CHART [--namespace NS] [-f FILE]... [--set K=V]...
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	if len(args) == 0 {
		t.Fatal("helm: no subcommand")
	}
	var pos, files, sets []string
	strict, namespace := false, "default"
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "--strict":
			strict = true
		case "-f", "--namespace", "--set":
			if i+1 == len(args) {
				t.Fatalf("helm: %s needs a value", a)
			}
			i++
			switch a {
			case "-f":
				files = append(files, args[i])
			case "--namespace":
				namespace = args[i]
			case "--set":
				sets = append(sets, args[i])
			}
		default:
			if strings.HasPrefix(a, "-") {
				t.Fatalf("helm: flag %s is not supported here", a)
			}
			pos = append(pos, a)
		}
	}
	vals, err := userValues(files, sets)
	if err != nil {
		return "Error: " + err.Error(), err
	}
	switch {
	case args[0] == "lint" && len(pos) == 1:
		return helmLint(pos[0], vals, namespace, strict)
	case args[0] == "template" && len(pos) == 2:
		return helmTemplate(pos[0], pos[1], namespace, vals)
	}
	t.Fatalf("helm: unsupported command line %q", args)
	return "", nil
}

// userValues merges -f files, then --set values over them, as helm does.
func userValues(files, sets []string) (map[string]any, error) {
	base := map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		v, err := common.ReadValues(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		base = loader.MergeMaps(base, v)
	}
	for _, s := range sets {
		if err := strvals.ParseInto(s, base); err != nil {
			return nil, fmt.Errorf("--set %s: %w", s, err)
		}
	}
	return base, nil
}

// helmLint is `helm lint [--strict]`: an error for any message of severity
// error, or of severity warning with --strict.
func helmLint(dir string, vals map[string]any, namespace string, strict bool) (string, error) {
	res := lint.RunAll(dir, vals, namespace)
	limit := support.ErrorSev
	if strict {
		limit = support.WarningSev
	}
	var out strings.Builder
	failed := false
	for _, m := range res.Messages {
		out.WriteString(m.Error() + "\n")
		if m.Severity >= limit {
			failed = true
		}
	}
	if failed {
		return out.String(), fmt.Errorf("lint %s: failed", dir)
	}
	return out.String(), nil
}

// helmTemplate is `helm template NAME CHART`: values coalesced with the
// chart's and its dependencies', checked against values.schema.json,
// rendered, and printed as the helm command prints them (NOTES.txt and
// empty templates left out), in the order of the template paths.
func helmTemplate(release, dir, namespace string, vals map[string]any) (string, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return "Error: " + err.Error(), err
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return "Error: " + err.Error(), err
	}
	opts := common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, common.DefaultCapabilities, false)
	if err != nil {
		return "Error: " + err.Error(), err
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		return "Error: " + err.Error(), err
	}
	names := make([]string, 0, len(files))
	for name, content := range files {
		if path.Base(name) == "NOTES.txt" || strings.TrimSpace(content) == "" {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var out strings.Builder
	for _, name := range names {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, files[name])
	}
	return out.String(), nil
}
