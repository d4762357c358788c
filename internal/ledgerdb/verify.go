package ledgerdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
)

// Kinds of problem Verify reports.
const (
	// ProblemGap: records are missing between two that are there.
	ProblemGap = "gap"
	// ProblemMissingStart: an instance's records do not begin at seq 1.
	ProblemMissingStart = "missing_start"
	// ProblemDuplicate: one (origin, seq) has two rows with the same line.
	ProblemDuplicate = "duplicate"
	// ProblemFork: one (origin, seq) has two rows with different lines.
	ProblemFork = "fork"
	// ProblemChanged: a line does not hash to the next record's prev.
	ProblemChanged = "changed"
	// ProblemColumns: a row's columns do not say what its line says (a
	// changed subject, say, hides the record from the person's report).
	ProblemColumns = "columns"
	// ProblemUnparseable: a row's line is not a record.
	ProblemUnparseable = "unparseable"
	// ProblemRewritten: the records do not hash to a signed checkpoint's
	// root (a record changed and every later prev recomputed).
	ProblemRewritten = "rewritten"
	// ProblemCheckpoint: a checkpoint does not parse, is not signed by a
	// given key, or names another instance.
	ProblemCheckpoint = "checkpoint"
	// ProblemNoCheckpoint: an instance has records and no checkpoint, or
	// a checkpoint its shipper shipped is gone.
	ProblemNoCheckpoint = "no_checkpoint"
	// ProblemTruncated: a checkpoint covers records that are not there.
	ProblemTruncated = "truncated"
	// ProblemHead: the head the shipper recorded is not the last record.
	ProblemHead = "head"
	// ProblemUnregistered: rows of an instance no shipper registered.
	ProblemUnregistered = "unregistered"
)

// maxProblems bounds what is reported per instance: the first problems
// locate the damage; a thousand more say nothing new.
const maxProblems = 10

// Problem is one thing wrong in the database.
type Problem struct {
	Origin string `json:"origin"`
	Seq    uint64 `json:"seq,omitempty"`
	Kind   string `json:"problem"`
	Detail string `json:"detail"`
}

func (p Problem) String() string {
	if p.Seq > 0 {
		return fmt.Sprintf("%s: seq %d %s: %s", p.Origin, p.Seq, p.Kind, p.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", p.Origin, p.Kind, p.Detail)
}

// Instance is what Verify found for one ledger instance.
type Instance struct {
	Origin   string `json:"origin"`
	Records  uint64 `json:"records"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Checked counts the checkpoints whose root was recomputed and
	// matched; Latest is the largest of them, After the records beyond it.
	Checked  int       `json:"checked"`
	Latest   int64     `json:"latest"`
	After    uint64    `json:"after"`
	Problems []Problem `json:"problems,omitempty"`
}

// Result is the outcome of Verify.
type Result struct {
	Instances   []Instance `json:"instances"`
	Records     uint64     `json:"records"`
	Checkpoints int        `json:"checkpoints"`
	// Signed: every checkpoint's signature was checked against the keys
	// given. False: none was (no key given), and the result says so.
	Signed   bool      `json:"signed"`
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports whether nothing is wrong.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// VerifyOptions say what to hold the database to.
type VerifyOptions struct {
	// Verifiers: every checkpoint must be signed by one of these keys (a
	// fleet whose sidecars have keys of their own lists each). Empty:
	// signatures are not checked, and Result.Signed says so.
	Verifiers []note.Verifier
	// Origin limits the check to one instance.
	Origin string
}

// Verify checks every instance in the database: its rows from seq 1 in
// order — one row per seq (duplicates and forks), no gap, each line
// hashing to the next record's prev, each row's columns agreeing with its
// line — the Merkle root of every shipped checkpoint recomputed from the
// lines, and the head its shipper recorded. It streams rows and
// checkpoints on two connections, so memory stays bounded by a line and
// maxProblems. The error is for a database it cannot read; what is wrong
// with the records is in the result.
func Verify(ctx context.Context, cfg *pgx.ConnConfig, opt VerifyOptions) (*Result, error) {
	rowsConn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer rowsConn.Close(context.Background())
	if err := CheckSchema(ctx, rowsConn); err != nil {
		return nil, err
	}
	cpConn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer cpConn.Close(context.Background())

	origins, err := allOrigins(ctx, rowsConn)
	if err != nil {
		return nil, err
	}
	res := &Result{Signed: len(opt.Verifiers) > 0, Instances: []Instance{}}
	for _, o := range origins {
		if opt.Origin != "" && o != opt.Origin {
			continue
		}
		in, ncp, err := verifyInstance(ctx, rowsConn, cpConn, o, opt.Verifiers)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", o, err)
		}
		res.Instances = append(res.Instances, *in)
		res.Records += in.Records
		res.Checkpoints += ncp
		res.Problems = append(res.Problems, in.Problems...)
	}
	if opt.Origin != "" && len(res.Instances) == 0 {
		return nil, fmt.Errorf("no instance %q in the database", opt.Origin)
	}
	return res, nil
}

// allOrigins lists every origin named by an instance, a record or a
// checkpoint: rows under an origin no shipper registered are found too.
// The records' and checkpoints' origins are read with a loose index scan
// (one index probe per origin), not a scan of every row.
func allOrigins(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	set := map[string]bool{}
	for _, q := range []string{
		`SELECT origin FROM pare_ledger_instances`,
		`WITH RECURSIVE o AS (
			(SELECT origin FROM pare_ledger_records ORDER BY origin LIMIT 1)
			UNION ALL
			SELECT (SELECT r.origin FROM pare_ledger_records r WHERE r.origin > o.origin ORDER BY r.origin LIMIT 1)
			FROM o WHERE o.origin IS NOT NULL)
		SELECT origin FROM o WHERE origin IS NOT NULL`,
		`WITH RECURSIVE o AS (
			(SELECT origin FROM pare_ledger_checkpoints ORDER BY origin LIMIT 1)
			UNION ALL
			SELECT (SELECT c.origin FROM pare_ledger_checkpoints c WHERE c.origin > o.origin ORDER BY c.origin LIMIT 1)
			FROM o WHERE o.origin IS NOT NULL)
		SELECT origin FROM o WHERE origin IS NOT NULL`,
	} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("origins: %w", err)
		}
		for rows.Next() {
			var o string
			if err := rows.Scan(&o); err != nil {
				rows.Close()
				return nil, fmt.Errorf("origins: %w", err)
			}
			set[o] = true
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("origins: %w", err)
		}
	}
	out := make([]string, 0, len(set))
	for o := range set {
		out = append(out, o)
	}
	sort.Strings(out)
	return out, nil
}

// instanceCheck holds one instance's verification state.
type instanceCheck struct {
	in        *Instance
	verifiers []note.Verifier
	cps       pgx.Rows // checkpoints, ascending size
	next      *checkpointRow
	cpCount   int
	cpMax     int64
	tree      *ledger.Tree // nil: the tree cannot be followed (a gap, an unknown start)
	last      *record      // the last row accepted in the chain
}

type checkpointRow struct {
	size  int64
	entry ledger.LogEntry
	cp    *ledger.Checkpoint
}

func (c *instanceCheck) problem(seq uint64, kind, format string, args ...any) {
	if len(c.in.Problems) < maxProblems {
		c.in.Problems = append(c.in.Problems, Problem{Origin: c.in.Origin, Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
}

// nextCheckpoint reads the next checkpoint row, reporting those that do
// not parse, are not signed by a given key or name another instance.
func (c *instanceCheck) nextCheckpoint() error {
	c.next = nil
	for c.cps.Next() {
		var size int64
		var line []byte
		if err := c.cps.Scan(&size, &line); err != nil {
			return err
		}
		c.cpCount++
		c.cpMax = max(c.cpMax, size)
		var e ledger.LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			c.problem(0, ProblemCheckpoint, "the checkpoint row of size %d is not a checkpoint log entry: %v", size, err)
			continue
		}
		cp, err := openCheckpoint([]byte(e.Checkpoint), c.verifiers)
		if err != nil {
			c.problem(0, ProblemCheckpoint, "checkpoint of size %d: %v", size, err)
			continue
		}
		if cp.Origin != c.in.Origin || cp.Size != size || e.Size != size {
			c.problem(0, ProblemCheckpoint, "the checkpoint row of size %d holds a checkpoint of %d records of %s", size, cp.Size, cp.Origin)
			continue
		}
		c.next = &checkpointRow{size: size, entry: e, cp: cp}
		return nil
	}
	return c.cps.Err()
}

func openCheckpoint(msg []byte, vs []note.Verifier) (*ledger.Checkpoint, error) {
	if len(vs) == 0 {
		return ledger.ParseCheckpoint(msg)
	}
	var last error
	for _, v := range vs {
		cp, err := ledger.OpenCheckpoint(msg, v)
		if err == nil {
			return cp, nil
		}
		last = err
	}
	return nil, last
}

// compare holds the tree to the checkpoints of its size, skipping those
// below it (before the records, or passed over after a gap).
func (c *instanceCheck) compare() error {
	for c.next != nil && (c.tree == nil || c.next.size < c.tree.Size()) {
		if err := c.nextCheckpoint(); err != nil {
			return err
		}
	}
	if c.next == nil || c.tree == nil || c.next.size != c.tree.Size() {
		return nil
	}
	if c.tree.Root() != c.next.cp.Root {
		c.problem(uint64(c.next.size), ProblemRewritten,
			"the records do not hash to the root signed for %d records: a record up to seq %d was changed (and the chain recomputed after it)",
			c.next.size, c.next.size)
		c.tree = nil // the rest cannot be held to this history
	} else {
		c.in.Checked++
		c.in.Latest = c.next.size
	}
	return c.nextCheckpoint()
}

func verifyInstance(ctx context.Context, rowsConn, cpConn *pgx.Conn, origin string, vs []note.Verifier) (*Instance, int, error) {
	in := &Instance{Origin: origin, Latest: -1}
	c := &instanceCheck{in: in, verifiers: vs, cpMax: -1}

	var headSeq, cpShipped int64
	var headHash string
	registered := true
	err := rowsConn.QueryRow(ctx, `SELECT shipped_seq, shipped_hash, checkpoint_size FROM pare_ledger_instances WHERE origin = $1`,
		origin).Scan(&headSeq, &headHash, &cpShipped)
	if errors.Is(err, pgx.ErrNoRows) {
		registered = false
		c.problem(0, ProblemUnregistered, "rows under an origin no shipper registered")
	} else if err != nil {
		return nil, 0, err
	}

	cps, err := cpConn.Query(ctx, `SELECT size, entry FROM pare_ledger_checkpoints WHERE origin = $1 ORDER BY size`, origin)
	if err != nil {
		return nil, 0, err
	}
	defer cps.Close()
	c.cps = cps
	if err := c.nextCheckpoint(); err != nil {
		return nil, 0, err
	}

	rows, err := rowsConn.Query(ctx, `SELECT seq, time, kind, decision_id, subject, vendor, purpose, service, prev, line
		FROM pare_ledger_records WHERE origin = $1 ORDER BY seq, time`, origin)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var dupOf *record
	for rows.Next() {
		var col record
		var seq int64
		var t time.Time
		if err := rows.Scan(&seq, &t, &col.kind, &col.decisionID, &col.subject, &col.vendor, &col.purpose, &col.service, &col.prev, &col.line); err != nil {
			return nil, 0, err
		}
		col.seq, col.time = uint64(seq), t
		if err := c.row(&col, &dupOf); err != nil {
			return nil, 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	// Checkpoints beyond the last record: what they sign is gone. The
	// largest says how much.
	end := uint64(0)
	if c.last != nil {
		end = c.last.seq
	}
	beyond := int64(0)
	for c.next != nil {
		if uint64(c.next.size) > end {
			beyond = c.next.size
		}
		if err := c.nextCheckpoint(); err != nil {
			return nil, 0, err
		}
	}
	if beyond > 0 {
		c.problem(end+1, ProblemTruncated, "the checkpoint of %d records covers seq 1..%d, but the records end at seq %d: records %d..%d are missing",
			beyond, beyond, end, end+1, beyond)
	}
	if c.last != nil {
		in.LastSeq = c.last.seq
	}
	if registered {
		switch {
		case uint64(headSeq) != in.LastSeq:
			c.problem(in.LastSeq, ProblemHead, "its shipper recorded records 1..%d as shipped; the records end at seq %d", headSeq, in.LastSeq)
		case c.last != nil && headHash != c.last.hash:
			c.problem(in.LastSeq, ProblemHead, "the last record does not hash to the head its shipper recorded: it was changed")
		}
		if cpShipped > c.cpMax {
			c.problem(0, ProblemNoCheckpoint, "its shipper shipped a checkpoint of %d records; the largest here is of %d", cpShipped, c.cpMax)
		}
	}
	if in.Records > 0 && c.cpCount == 0 {
		c.problem(0, ProblemNoCheckpoint, "%d records and no checkpoint: nothing signed holds them", in.Records)
	}
	if in.Latest >= 0 && in.LastSeq >= uint64(in.Latest) {
		in.After = in.LastSeq - uint64(in.Latest)
	}
	return in, c.cpCount, nil
}

// row checks one row, in (seq, time) order.
func (c *instanceCheck) row(col *record, dupOf **record) error {
	in := c.in
	if c.last != nil && col.seq == c.last.seq {
		kind, what := ProblemFork, "two different records"
		if string(col.line) == string(c.last.line) {
			kind, what = ProblemDuplicate, "the same record twice"
		}
		if *dupOf != c.last {
			c.problem(col.seq, kind, "%s under one seq", what)
			*dupOf = c.last
		}
		return nil
	}
	f, err := parseRecord(col.line)
	if err != nil {
		// Kept in the chain and the tree as the bytes it is: the next
		// record's prev and the signed roots say whether it was changed.
		c.problem(col.seq, ProblemUnparseable, "the line is not a record: %v", err)
		f = record{seq: col.seq, prev: col.prev, hash: hashLine(col.line), line: col.line}
	} else if d := columnsDiffer(col, &f); d != "" {
		c.problem(col.seq, ProblemColumns, "the row's %s does not say what its line says", d)
	}
	switch {
	case c.last == nil:
		in.FirstSeq = f.seq
		if f.seq != 1 {
			c.problem(f.seq, ProblemMissingStart, "the records begin at seq %d: records 1..%d are not here", f.seq, f.seq-1)
			c.tree, err = c.boundary(f.seq, f.prev)
			if err != nil {
				return err
			}
		} else {
			c.tree = &ledger.Tree{}
			if f.prev != "" {
				c.problem(f.seq, ProblemChanged, "the first record of a ledger must have an empty prev")
			}
		}
	case f.seq != c.last.seq+1:
		c.problem(c.last.seq+1, ProblemGap, "records %d..%d are missing (%d records)", c.last.seq+1, f.seq-1, f.seq-1-c.last.seq)
		c.tree = nil
	case f.prev != c.last.hash:
		c.problem(c.last.seq, ProblemChanged, "its line does not hash to the prev of seq %d: one of the two was changed", f.seq)
	}
	in.Records++
	last := f
	c.last = &last
	if c.tree != nil {
		c.tree.Add(f.line)
	}
	return c.compare()
}

// boundary is the tree before an instance's first record when it is not
// seq 1: the checkpoint log entry of that size, whose frontier (an
// unsigned hint) must hash to its signed root. nil: no such entry.
func (c *instanceCheck) boundary(first uint64, prev string) (*ledger.Tree, error) {
	for c.next != nil && uint64(c.next.size) < first-1 {
		if err := c.nextCheckpoint(); err != nil {
			return nil, err
		}
	}
	if c.next == nil || uint64(c.next.size) != first-1 || c.next.entry.Last != prev {
		return nil, nil
	}
	t, err := ledger.NewTree(c.next.size, c.next.entry.Frontier)
	if err != nil || t.Root() != c.next.cp.Root {
		return nil, nil
	}
	return t, nil
}

// columnsDiffer names the first column of a row that disagrees with its
// line ("" when all agree).
func columnsDiffer(col, f *record) string {
	switch {
	case col.seq != f.seq:
		return "seq"
	case !col.time.Equal(f.time):
		return "time"
	case col.prev != column(f.prev):
		return "prev"
	case col.kind != column(f.kind):
		return "kind"
	case col.decisionID != column(f.decisionID):
		return "decision_id"
	case col.subject != column(f.subject):
		return "subject"
	case col.vendor != column(f.vendor):
		return "vendor"
	case col.purpose != column(f.purpose):
		return "purpose"
	case col.service != column(f.service):
		return "service"
	}
	return ""
}
