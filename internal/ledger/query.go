package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Filter selects records for Query. Zero fields do not filter.
type Filter struct {
	Subject string    // exact data subject ID
	Vendor  string    // exact vendor name
	Since   time.Time // records at or after Since
	Until   time.Time // records before Until
}

// Match reports whether f selects r: the one definition of a match, for
// every reader of records (the files here, the fleet's database in
// internal/ledgerdb).
func (f Filter) Match(r *Record) bool { return f.match(r) }

func (f Filter) match(r *Record) bool {
	return (f.Subject == "" || r.Subject == f.Subject) &&
		(f.Vendor == "" || r.Vendor == f.Vendor) &&
		(f.Since.IsZero() || !r.Time.Before(f.Since)) &&
		(f.Until.IsZero() || r.Time.Before(f.Until))
}

// Query returns the records of files (in chain order) that match f, in ledger
// order. An outcome record is also returned when the disclosure it belongs to
// (same DecisionID, earlier in the ledger) matched, so the report can tell
// what the vendor answered even if the outcome record does not repeat the
// subject. A torn last line is skipped (it was never acknowledged, and the
// live file can end in one while a write is in flight); any other line that
// does not parse is an error naming the file and line. Query does not check
// the chain: run Verify for that.
func Query(files []string, f Filter) ([]Record, error) {
	w := &walker{files: files}
	defer w.close()
	var out []Record
	matched := map[string]bool{} // decision IDs of matching disclosures
	for {
		p, line, complete, tooLong, err := w.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if !complete {
			continue
		}
		if tooLong {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", p.file, p.line, maxLine)
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", p.file, p.line, err)
		}
		switch {
		case f.match(&r):
			if r.Kind == KindDisclosure && r.DecisionID != "" {
				matched[r.DecisionID] = true
			}
		case r.Kind == KindOutcome && matched[r.DecisionID]:
		default:
			continue
		}
		out = append(out, r)
	}
}
