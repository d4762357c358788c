package ledgerdb

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RegisterMetrics registers the shipper's metrics (namespace pare,
// subsystem ledger_ship) with reg. They are read from Stats at scrape
// time: the shipper keeps no metric state of its own.
func RegisterMetrics(reg prometheus.Registerer, s *Shipper) error {
	const ns, sub = "pare", "ledger_ship"
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_total",
			Help: "Ledger records this process shipped to the ledger database."},
			func() float64 { return float64(s.Stats().Records) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "checkpoints_total",
			Help: "Signed ledger checkpoints this process shipped to the ledger database."},
			func() float64 { return float64(s.Stats().Checkpoints) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Failed shipping attempts (database unreachable or refusing, or shipping stopped); each is retried."},
			func() float64 { return float64(s.Stats().Errors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "files_deleted_total",
			Help: "Rotated ledger files deleted by retention once shipped."},
			func() float64 { return float64(s.Stats().FilesDeleted) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "lag_records",
			Help: "Durable ledger records not yet in the ledger database."},
			func() float64 {
				st := s.Stats()
				if st.Durable < st.Shipped {
					return 0
				}
				return float64(st.Durable - st.Shipped)
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "lag_seconds",
			Help: "Age of the oldest durable ledger record not yet in the ledger database (0 when caught up)."},
			func() float64 { return s.Stats().LagSeconds }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "last_contact_timestamp_seconds",
			Help: "When the ledger database last confirmed a shipment or answered the heartbeat (Unix time; 0: never)."},
			func() float64 {
				if t := s.Stats().LastContact; !t.IsZero() {
					return float64(t.UnixNano()) / 1e9
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "stopped",
			Help: "1 while shipping waits for a person: the database holds another history for this ledger, or its files do not chain."},
			func() float64 {
				if s.Stats().Stopped != "" {
					return 1
				}
				return 0
			}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
