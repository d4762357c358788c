package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/ledgerdb"
)

// ledgerSink is serve's shipper to the fleet's ledger database
// (--ledger-sink). A nil *ledgerSink is no sink: its methods do nothing.
type ledgerSink struct {
	s   *ledgerdb.Shipper
	log *slog.Logger
}

func newLedgerSink(c Config, led *ledger.Ledger, signer note.Signer, reg prometheus.Registerer, log *slog.Logger) (*ledgerSink, error) {
	if c.LedgerSink == "" {
		return nil, nil
	}
	host, _ := os.Hostname() // for people reading the instances table; "" is fine
	s, err := ledgerdb.New(ledgerdb.Options{
		Path: c.Ledger, DSN: c.LedgerSink, Origin: led.Origin(), Head: led.Head, Signer: signer,
		Retain: c.LedgerRetain, Service: c.Service, Host: host, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if err := ledgerdb.RegisterMetrics(reg, s); err != nil {
		return nil, fmt.Errorf("ledger sink metrics: %w", err)
	}
	return &ledgerSink{s: s, log: log}, nil
}

// start ships in the background until ctx is done: never in the request
// path, and a database that is down only makes it retry.
func (k *ledgerSink) start(ctx context.Context, wg *sync.WaitGroup) {
	if k == nil {
		return
	}
	wg.Add(1)
	go func() { defer wg.Done(); k.s.Run(ctx) }()
}

// drain ships what the ledger holds at shutdown, its final checkpoint
// included, within a bounded time: a pod deleted with its volume keeps
// nothing that could not be shipped, so try; what is not shipped stays in
// the local files for the next start.
func (k *ledgerSink) drain(timeout time.Duration) {
	if k == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 10*time.Second))
	defer cancel()
	if err := k.s.Drain(ctx); err != nil {
		k.log.Warn("ledger not fully shipped at shutdown: the rest stays in the local files", "err", err)
		return
	}
	st := k.s.Stats()
	k.log.Info("ledger shipped at shutdown", "through_seq", st.Shipped)
}
