package proxy

import (
	"context"
	"net/http"
	"slices"

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
func (p *Proxy) record(tx *txn, kind, outcome string, status int) *ledger.Record {
	rec := &ledger.Record{
		Kind:       kind,
		DecisionID: tx.id,
		Outcome:    outcome,
		Status:     status,
		BytesIn:    tx.bytesIn,
		BytesOut:   tx.bytesOut,
		DryRun:     tx.dryRun,
		Service:    p.cfg.Service,
	}
	if in := tx.in; in != nil {
		rec.Purpose, rec.Subject = in.Purpose, in.Subject
	}
	if tx.policy != nil {
		rec.Revision = tx.policy.Revision
	}
	d := tx.decision
	if d != nil {
		rec.Vendor = d.Vendor
	}
	if kind == ledger.KindOutcome {
		return rec
	}
	if in := tx.in; in != nil {
		rec.Host, rec.Method, rec.Path = in.Host, in.Method, in.Path
		rec.LegalBasis, rec.Requester, rec.Approver = in.LegalBasis, in.Requester, in.Approver
	}
	if d != nil {
		if tx.policy != nil && kind == ledger.KindDisclosure {
			if c := tx.policy.Contracts[d.Vendor]; c != nil && c.Name != "" {
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
		for i, rep := range tx.reports {
			if rep == nil {
				continue
			}
			prefix := reportPrefix[i]
			rec.FieldsSent = appendPrefixed(rec.FieldsSent, prefix, rep.Kept)
			rec.FieldsRemoved = appendPrefixed(rec.FieldsRemoved, prefix, rep.Removed)
			rec.Transformed = appendPrefixed(rec.Transformed, prefix, rep.Transformed)
			rec.CardsRedacted = appendPrefixed(rec.CardsRedacted, prefix, rep.Cards)
		}
	}
	return rec
}

// reportPrefix names where a report's paths are: body paths stand alone,
// query and header names are marked so the ledger tells them apart.
var reportPrefix = [...]string{"", "query:", "header:"}

func appendPrefixed(dst []string, prefix string, paths []string) []string {
	if prefix == "" && len(dst) == 0 {
		// The report's own slice, clipped so a later append never writes
		// into its backing array.
		return slices.Clip(paths)
	}
	dst = slices.Grow(dst, len(paths))
	for _, p := range paths {
		dst = append(dst, prefix+p)
	}
	return dst
}

func (p *Proxy) recordEnd(r *http.Request, tx *txn, kind, outcome string, status int) {
	if err := p.cfg.Ledger.Append(context.WithoutCancel(r.Context()), p.record(tx, kind, outcome, status)); err != nil {
		p.m.ledgerErrors.Inc()
		p.log.Error("ledger: record not written", "kind", kind, "decision_id", tx.id, "err", err)
	}
}

func (p *Proxy) submitOutcome(tx *txn, outcome string, status int) {
	if err := p.cfg.Ledger.Submit(p.record(tx, ledger.KindOutcome, outcome, status)); err != nil {
		p.m.ledgerErrors.Inc()
		p.log.Error("ledger: outcome not recorded", "decision_id", tx.id, "err", err)
	}
}
