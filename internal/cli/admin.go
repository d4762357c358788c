package cli

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/proxy"
)

// adminHandler is the admin listener's handler: proxy.AdminHandler, plus
// the profiler when asked for. Profiles show what the process holds and
// cost CPU to take, so they are off unless the operator turns them on.
func adminHandler(e *engine.Engine, g prometheus.Gatherer, withPprof bool) http.Handler {
	admin := proxy.AdminHandler(e, g)
	if !withPprof {
		return admin
	}
	mux := http.NewServeMux()
	mux.Handle("/", admin)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// metricsHandler serves the listener that leaves the pod's loopback: the
// metrics for Prometheus and the probes for the kubelet, which both reach the
// pod's IP, and nothing else. The loaded policy (/debug/policy) and the
// profiler stay on the admin listener, reachable from inside the pod or
// through `kubectl port-forward`. Exact patterns: no subtree is exposed.
func metricsHandler(e *engine.Engine, g prometheus.Gatherer) http.Handler {
	admin := proxy.AdminHandler(e, g)
	mux := http.NewServeMux()
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle("GET "+path, admin)
	}
	return mux
}
