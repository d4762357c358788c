package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		bi   debug.BuildInfo
		want Info
	}{
		{"tagged release", debug.BuildInfo{GoVersion: "go1.26.8", Path: "github.com/pare-dev/pare/cmd/proxy",
			Main: debug.Module{Version: "v0.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
				{Key: "vcs.modified", Value: "false"}}},
			Info{"v0.2.0", "abc123", "2026-12-01T10:00:00Z", "go1.26.8", "github.com/pare-dev/pare/cmd/proxy"}},
		{"modified tree", debug.BuildInfo{GoVersion: "go1.26.8", Path: "p", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}},
			Info{"(devel)", "abc123-dirty", "unknown", "go1.26.8", "p"}},
		{"no VCS stamp (go test, -buildvcs=false)", debug.BuildInfo{GoVersion: "go1.26.8", Path: "p"},
			Info{"unknown", "unknown", "unknown", "go1.26.8", "p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(&tt.bi); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	in := Info{"v0.2.0", "abc123", "2026-12-01T10:00:00Z", "go1.26.8", "p"}
	if got, want := in.String(), "pare v0.2.0 (revision abc123, 2026-12-01T10:00:00Z, go1.26.8)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	in.Time = "unknown"
	if got := in.String(); strings.Contains(got, "unknown,") {
		t.Errorf("an unknown time is left out: %q", got)
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(Info{"v0.2.0", "abc123", "t", "go1.26.8", "p"}.Collector())
	want := `# HELP pare_build_info Which build of Pare is running (value 1).
# TYPE pare_build_info gauge
pare_build_info{goversion="go1.26.8",revision="abc123",version="v0.2.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "pare_build_info"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

// TestGet: the test binary has build information; whatever is missing reads
// "unknown", never "".
func TestGet(t *testing.T) {
	in := Get()
	for name, v := range map[string]string{"version": in.Version, "revision": in.Revision, "time": in.Time, "go": in.GoVersion, "path": in.Path} {
		if v == "" {
			t.Errorf("%s is empty", name)
		}
	}
	if !strings.HasPrefix(in.GoVersion, "go1.") {
		t.Errorf("go version %q", in.GoVersion)
	}
}
