// Package buildinfo says which build of Pare is running: the module version,
// the VCS revision and the Go toolchain, as the Go linker recorded them
// (runtime/debug.ReadBuildInfo). `proxy version`, the pare_build_info metric
// and the image's labels all read it here, so they cannot disagree.
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Info describes one build. Unknown values are "unknown", never empty, so a
// metric label or a log line always says something.
type Info struct {
	Version   string // module version: a tag, a pseudo-version, or "(devel)"
	Revision  string // VCS commit, with "-dirty" when the tree was modified
	Time      string // VCS commit time (RFC 3339)
	GoVersion string
	Path      string // main package path
}

// Get reads the running binary's build information.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		// Only binaries built without module support lack it.
		return Info{Version: "unknown", Revision: "unknown", Time: "unknown", GoVersion: "unknown", Path: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion, Path: bi.Path}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if in.Revision != "" && modified {
		in.Revision += "-dirty"
	}
	for _, p := range []*string{&in.Version, &in.Revision, &in.Time, &in.GoVersion, &in.Path} {
		if *p == "" {
			*p = "unknown"
		}
	}
	return in
}

// String is the line `proxy version` prints.
func (in Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pare %s (revision %s", in.Version, in.Revision)
	if in.Time != "unknown" {
		fmt.Fprintf(&b, ", %s", in.Time)
	}
	fmt.Fprintf(&b, ", %s)", in.GoVersion)
	return b.String()
}

// Collector is the pare_build_info gauge: value 1, the build in its labels,
// the usual way to join a version onto any other series in PromQL.
func (in Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "pare", Name: "build_info",
		Help:        "Which build of Pare is running (value 1).",
		ConstLabels: prometheus.Labels{"version": in.Version, "revision": in.Revision, "goversion": in.GoVersion},
	})
	g.Set(1)
	return g
}
