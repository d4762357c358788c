package proxy

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pare-dev/pare/internal/engine"
)

// AdminHandler serves the admin listener: metrics, health, readiness and the
// loaded policy (the caller may add the profiler). It is never mounted on the
// egress listener, so an app cannot read the policy or profile the sidecar
// through its proxy port.
func AdminHandler(e *engine.Engine, g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if e.Policy() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("no valid policy loaded\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /debug/policy", func(w http.ResponseWriter, _ *http.Request) {
		p := e.Policy()
		w.Header().Set("Content-Type", "application/json")
		if p == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"no_policy","reason":"no valid policy is loaded"}` + "\n"))
			return
		}
		type vendor struct {
			ID    string   `json:"id"`
			Hosts []string `json:"hosts"`
		}
		out := struct {
			Revision  string    `json:"revision"`
			LoadedAt  time.Time `json:"loaded_at"`
			Files     []string  `json:"files"`
			Vendors   []vendor  `json:"vendors"`
			NeedsBody bool      `json:"needs_body"`
		}{Revision: p.Revision, LoadedAt: p.LoadedAt, Files: p.Files, NeedsBody: p.NeedsBody()}
		for id, hosts := range p.Vendors {
			out.Vendors = append(out.Vendors, vendor{ID: id, Hosts: hosts})
		}
		sort.Slice(out.Vendors, func(i, j int) bool { return out.Vendors[i].ID < out.Vendors[j].ID })
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	return mux
}
