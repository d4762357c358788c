package ledgerdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pare-dev/pare/internal/ledger"
)

// ErrRowMismatch: a row returned by a query does not say what its line
// says; the database was changed (run Verify).
var ErrRowMismatch = fmt.Errorf("a row's columns do not match its line")

// Query returns the records of every instance that f selects, exactly as
// ledger.Query returns them from each instance's files — the records f
// matches, and the outcome records of the disclosures it matched — one
// instance after the other (by origin), each in seq order: a report built
// from it is the report built from the union of the sidecars' ledgers.
//
// It is an index lookup (subject or vendor, and time), not a scan: its
// cost grows with what it returns, not with the database. Every row it
// returns is checked against its line (the columns it was found by say
// what the line says); that the database holds every record, unchanged,
// is what Verify shows.
func Query(ctx context.Context, conn *pgx.Conn, f ledger.Filter) ([]ledger.Record, error) {
	if err := CheckSchema(ctx, conn); err != nil {
		return nil, err
	}
	// Conditions only for what f sets, so the planner sees a plain index
	// condition. The columns hold at most maxColumn bytes of a value:
	// rows are selected on that, and f is applied exactly to the lines.
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Subject != "" {
		conds = append(conds, "subject = "+arg(column(f.Subject)))
	}
	if f.Vendor != "" {
		conds = append(conds, "vendor = "+arg(column(f.Vendor)))
	}
	if !f.Since.IsZero() {
		conds = append(conds, "time >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		conds = append(conds, "time < "+arg(f.Until))
	}
	where := "true"
	if len(conds) > 0 {
		where = strings.Join(conds, " AND ")
	}
	sql := `WITH m AS (
		SELECT origin, seq, time, kind, decision_id, subject, vendor, purpose, service, prev, line
		FROM pare_ledger_records WHERE ` + where + `)
	SELECT origin, seq, time, kind, decision_id, subject, vendor, purpose, service, prev, line FROM m
	UNION
	SELECT o.origin, o.seq, o.time, o.kind, o.decision_id, o.subject, o.vendor, o.purpose, o.service, o.prev, o.line
	FROM m JOIN pare_ledger_records o ON o.decision_id = m.decision_id AND o.origin = m.origin AND o.seq > m.seq
	WHERE m.kind = 'disclosure' AND m.decision_id <> '' AND o.kind = 'outcome'
	ORDER BY origin, seq`
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	var out []ledger.Record
	origin := ""
	var matched map[string]bool
	for rows.Next() {
		var o string
		var seq int64
		var col record
		if err := rows.Scan(&o, &seq, &col.time, &col.kind, &col.decisionID, &col.subject, &col.vendor, &col.purpose,
			&col.service, &col.prev, &col.line); err != nil {
			return nil, fmt.Errorf("query: %w", err)
		}
		col.seq = uint64(seq)
		fields, err := parseRecord(col.line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s seq %d: %v", ErrRowMismatch, o, seq, err)
		}
		if d := columnsDiffer(&col, &fields); d != "" {
			return nil, fmt.Errorf("%w: %s seq %d: its %s", ErrRowMismatch, o, seq, d)
		}
		var r ledger.Record
		if err := json.Unmarshal(col.line, &r); err != nil {
			return nil, fmt.Errorf("%w: %s seq %d: %v", ErrRowMismatch, o, seq, err)
		}
		// ledger.Query, per instance, over the candidates.
		if o != origin {
			origin, matched = o, map[string]bool{}
		}
		switch {
		case f.Match(&r):
			if r.Kind == ledger.KindDisclosure && r.DecisionID != "" {
				matched[r.DecisionID] = true
			}
		case r.Kind == ledger.KindOutcome && matched[r.DecisionID]:
		default:
			continue
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	return out, nil
}

// Start is the time of the fleet's first shipped record: where its
// records, and a report over them, begin. Zero when there is none.
func Start(ctx context.Context, conn *pgx.Conn) (time.Time, error) {
	var t *time.Time
	if err := conn.QueryRow(ctx, `SELECT min(first_time) FROM pare_ledger_instances`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("start: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}
