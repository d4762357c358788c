package cli

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
)

// reloads keeps the policy's load history in the metrics and the log. After
// a failed load the ERROR line is the last word an operator sees, so the
// first success after failures says in the log that Pare recovered, and
// pare_policy_last_reload_successful goes back to 1 (the alert that fired on
// 0 resolves).
type reloads struct {
	metrics  *pipeline.Metrics
	ok       prometheus.Gauge
	log      *slog.Logger
	failures int // consecutive failed loads; only the watcher goroutine or serve's start touch it
}

func newReloads(reg prometheus.Registerer, m *pipeline.Metrics, log *slog.Logger) *reloads {
	ok := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "pare", Subsystem: "policy", Name: "last_reload_successful",
		Help: "Whether the last policy load succeeded (1) or failed (0, the last good policy, if any, still in force).",
	})
	reg.MustRegister(ok)
	return &reloads{metrics: m, ok: ok, log: log}
}

func (r *reloads) failed(err error, initial bool) {
	r.failures++
	r.ok.Set(0)
	r.metrics.Reloads.WithLabelValues("failure").Inc()
	if initial {
		r.log.Error("policy not loaded: every request is refused until it is fixed", "err", err)
		return
	}
	r.log.Error("policy reload failed: keeping the last good policy", "err", err, "consecutive_failures", r.failures)
}

func (r *reloads) loaded(p *engine.Policy, initial bool) {
	r.ok.Set(1)
	r.metrics.Reloads.WithLabelValues("success").Inc()
	r.metrics.Revision.Reset()
	r.metrics.Revision.WithLabelValues(p.Revision).Set(1)
	r.metrics.LastReload.SetToCurrentTime()
	switch {
	case r.failures > 0:
		r.log.Info("policy reload recovered: a valid policy is in force again", "revision", p.Revision[:12],
			"files", len(p.Files), "failed_attempts", r.failures)
	case initial:
		r.log.Info("policy loaded", "revision", p.Revision[:12], "files", len(p.Files), "vendors", len(p.Vendors))
	default:
		r.log.Info("policy reloaded", "revision", p.Revision[:12], "files", len(p.Files))
	}
	r.failures = 0
}
