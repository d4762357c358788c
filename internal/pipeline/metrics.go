package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's Prometheus collectors, namespace "pare". Label
// values are bounded: vendors and purposes come from the loaded contracts
// (anything else is "unknown"/"other"), outcomes from the closed set of
// refusal codes plus "forwarded" — never a raw path, subject or field name.
type Metrics struct {
	requests        *prometheus.CounterVec
	fieldsRemoved   *prometheus.CounterVec
	decisionSeconds prometheus.Histogram
	upstreamSeconds *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	consentErrors   prometheus.Counter
	ledgerErrors    prometheus.Counter
	legal           *prometheus.CounterVec
	bodyRegrown     prometheus.Counter
	Reloads         *prometheus.CounterVec
	Revision        *prometheus.GaugeVec
	LastReload      prometheus.Gauge
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests and tools that do not export metrics).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "egress", Name: "requests_total",
			Help: "Outbound requests by vendor, declared purpose and outcome (forwarded or a refusal code).",
		}, []string{"vendor", "purpose", "outcome"}),
		fieldsRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "egress", Name: "fields_removed_total",
			Help: "Body fields, query parameters and headers removed before sending, by vendor.",
		}, []string{"vendor"}),
		decisionSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "pare", Subsystem: "policy", Name: "decision_duration_seconds",
			Help:    "Time to decide one request (policy evaluation or cache hit).",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1},
		}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "pare", Subsystem: "upstream", Name: "duration_seconds",
			Help:    "Time from sending to a vendor until its response headers arrived.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"vendor"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "pare", Subsystem: "egress", Name: "requests_in_flight",
			Help: "Requests being handled now.",
		}),
		consentErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "consent", Name: "lookup_errors_total",
			Help: "Consent source lookups that failed (consent-gated requests were refused).",
		}),
		ledgerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "ledger", Name: "write_errors_total",
			Help: "Ledger records that could not be written (the request was refused).",
		}),
		legal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "egress", Name: "legal_disclosures_total",
			Help: "Disclosures for purpose legal (each with a legal basis and a second approver in the ledger), by vendor.",
		}, []string{"vendor"}),
		bodyRegrown: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "egress", Name: "filter_regrowths_total",
			Help: "Bodies filtered again in a larger buffer, charged to the body memory first, because transforms made the filtered body outgrow the memory charged with it.",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pare", Subsystem: "policy", Name: "reloads_total",
			Help: "Policy loads by result (success or failure).",
		}, []string{"result"}),
		Revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "pare", Subsystem: "policy", Name: "info",
			Help: "The active policy's revision (value 1; one series at a time): the SHA-256 of its files, the same for a directory and the bundle built from it.",
		}, []string{"revision"}),
		LastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "pare", Subsystem: "policy", Name: "last_reload_success_timestamp_seconds",
			Help: "When the current policy was loaded.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.fieldsRemoved, m.decisionSeconds, m.upstreamSeconds,
			m.inFlight, m.consentErrors, m.ledgerErrors, m.legal, m.bodyRegrown, m.Reloads, m.Revision, m.LastReload)
	}
	return m
}

func (x *Exchange) vendorLabel() string {
	if x.decision == nil || x.decision.Vendor == "" {
		return "none"
	}
	if x.policy != nil {
		if _, ok := x.policy.Vendors[x.decision.Vendor]; ok {
			return x.decision.Vendor
		}
	}
	return "unknown"
}

func (x *Exchange) purposeLabel() string {
	if x.in == nil || x.in.Purpose == "" {
		return "none"
	}
	if x.policy != nil && x.policy.Purposes[x.in.Purpose] {
		return x.in.Purpose
	}
	return "other"
}
