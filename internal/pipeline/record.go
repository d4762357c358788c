package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/ledger"
)

// record builds the ledger record of tx. It holds paths, never values.
//
// An outcome record (what became of a disclosure) carries only what every
// record carries: its decision id links it to the disclosure, which says
// what left, where and under which transforms, so host, method, path, legal
// basis and transforms are not repeated and every proxied request encodes
// one full record, not two. Subject, purpose, vendor, service and revision
// stay: a search of the raw ledger for a person (or `ledger query`, whose
// every line names its subject) finds the outcome too, and a line read on
// its own still says where it belongs.
func (x *Exchange) record(kind, outcome string, status int) *ledger.Record {
	rec := &ledger.Record{
		Kind:       kind,
		DecisionID: x.id,
		Outcome:    outcome,
		Status:     status,
		BytesIn:    x.bytesIn,
		BytesOut:   x.bytesOut,
		DryRun:     x.dryRun,
		Service:    x.p.cfg.Service,
	}
	if in := x.in; in != nil {
		rec.Purpose, rec.Subject = in.Purpose, in.Subject
	}
	if x.policy != nil {
		rec.Revision = x.policy.Revision
	}
	d := x.decision
	if d != nil {
		rec.Vendor = d.Vendor
	}
	if kind == ledger.KindOutcome {
		return rec
	}
	if x.in == nil && checkHost(x.req.Host) == nil {
		// Refused before the input was built (a malformed path, say): the
		// host is checked and bounded, the rest is not recorded.
		rec.Host = x.req.Host
	}
	v := x.p.vocab.of(x.policy)
	if in := x.in; in != nil {
		rec.Host, rec.Method = in.Host, in.Method
		rec.Path, rec.PathHash = x.recordedPath(v), PathHash(x.p.pathKey, in.Path)
		rec.LegalBasis, rec.Requester, rec.Approver = in.LegalBasis, in.Requester, in.Approver
	}
	if d != nil {
		if x.policy != nil && kind == ledger.KindDisclosure {
			if c := x.policy.Contracts[d.Vendor]; c != nil && c.Name != "" {
				rec.Recipient = c.Name
				if c.Reference != "" {
					rec.Recipient += " (contract " + c.Reference + ")"
				}
			}
		}
		if len(d.Transforms) > 0 {
			rec.Transforms = d.Transforms
		}
	}
	if kind == ledger.KindDisclosure {
		// Each list in the contracts' words, each name once (names.go).
		budget := maxListedBytes
		sent, removed := names{v: v, seen: map[string]bool{}, budget: &budget}, names{v: v, seen: map[string]bool{}, budget: &budget}
		tr, cards := names{v: v, seen: map[string]bool{}, budget: &budget}, names{v: v, seen: map[string]bool{}, budget: &budget}
		for i, rep := range x.reports {
			if rep == nil {
				continue
			}
			prefix := reportPrefix[i]
			rec.FieldsSent = sent.add(rec.FieldsSent, prefix, rep.Kept)
			rec.FieldsRemoved = removed.add(rec.FieldsRemoved, prefix, rep.Removed)
			rec.FieldsRemovedCount += rep.RemovedCount
			rec.Transformed = tr.add(rec.Transformed, prefix, rep.Transformed)
			rec.CardsRedacted = cards.add(rec.CardsRedacted, prefix, rep.Cards)
			rec.Truncated = rec.Truncated || rep.Truncated
		}
		rec.Truncated = rec.Truncated || sent.truncated || removed.truncated || tr.truncated || cards.truncated
	}
	return rec
}

// recordedPath is the request path as the ledger and the logs name it:
// the matched route's pattern ("/3.0/lists/*/members/*"), else the path
// with the segments no contract names replaced (names.go) — never an id,
// an email address or a card number the app put in it. x.in must be set.
func (x *Exchange) recordedPath(v *vocabulary) string {
	if d := x.decision; d != nil && d.Route != "" {
		return d.Route
	}
	return v.urlPath(x.in.Path)
}

// loggedCause is what a log line says of an exchange's error. A card
// refusal's error names where the card number was, as a path of the
// payload's own keys (an email address used as a key, the card number
// itself as one): logged, it would put a payload value in the logs, so
// only its kind is.
func loggedCause(err error) string {
	if errors.Is(err, filters.ErrCardNumber) {
		return filters.ErrCardNumber.Error()
	}
	return err.Error()
}

// reportPrefix names where a report's paths are: body paths stand alone,
// query and header names are marked so the ledger tells them apart.
var reportPrefix = [...]string{"", "query:", "header:"}

// recordRefusal records that nothing left. It waits for durability: the
// app's refusal and the record agree.
func (x *Exchange) recordRefusal(outcome string, status int) {
	if err := x.p.cfg.Ledger.Append(context.Background(), x.record(ledger.KindRefusal, outcome, status)); err != nil {
		x.p.m.ledgerErrors.Inc()
		x.p.log.Error("ledger: record not written", "kind", ledger.KindRefusal, "decision_id", x.id, "err", err)
	}
}

func (x *Exchange) submitOutcome(outcome string, status int) {
	if x.p.cfg.Ledger == nil {
		return
	}
	if err := x.p.cfg.Ledger.Submit(x.record(ledger.KindOutcome, outcome, status)); err != nil {
		x.p.m.ledgerErrors.Inc()
		x.p.log.Error("ledger: outcome not recorded", "decision_id", x.id, "err", err)
	}
}

// finish counts and logs the end of the exchange. Logs name the request,
// never a payload value, credential or query string.
func (x *Exchange) finish(outcome string, status int, metricOutcome string, cause error) {
	p := x.p
	if x.decision != nil && x.reports[0] != nil {
		removed := 0
		for _, rep := range x.reports {
			if rep != nil {
				removed += rep.RemovedCount
			}
		}
		p.m.fieldsRemoved.WithLabelValues(x.vendorLabel()).Add(float64(removed))
	}
	p.m.requests.WithLabelValues(x.vendorLabel(), x.purposeLabel(), metricOutcome).Inc()
	if metricOutcome == "forwarded" && x.in != nil && x.in.Purpose == "legal" {
		p.m.legal.WithLabelValues(x.vendorLabel()).Inc()
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return // building the attributes costs a dozen allocations per request
	}
	attrs := []any{
		"decision_id", x.id, "via", x.req.Via, "method", x.req.Method, "outcome", outcome, "status", status,
		"duration_ms", float64(time.Since(x.start).Microseconds()) / 1000,
	}
	if x.in != nil {
		attrs = append(attrs, "host", x.in.Host, "path", x.recordedPath(p.vocab.of(x.policy)),
			"path_hash", PathHash(p.pathKey, x.in.Path), "purpose", x.in.Purpose)
	} else {
		attrs = append(attrs, "host", x.req.Host)
	}
	if x.decision != nil {
		attrs = append(attrs, "vendor", x.decision.Vendor, "revision", shortRev(x.decision.Revision))
	}
	if x.dryRun {
		attrs = append(attrs, "dry_run", true)
	}
	if cause != nil {
		attrs = append(attrs, "err", loggedCause(cause))
	}
	p.log.Log(ctx, level, "egress", attrs...)
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}
