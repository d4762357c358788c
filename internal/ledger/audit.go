package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Problems found by holding the files to checkpoints (see Audit).
const (
	// ProblemMissingStart: the files do not begin at seq 1 — the oldest
	// file(s) were deleted.
	ProblemMissingStart Problem = "missing_start"
	// ProblemTruncated: a checkpoint covers records that are in no file.
	ProblemTruncated Problem = "truncated"
	// ProblemRewritten: the records do not hash to a checkpoint's root — a
	// record was changed and the chain recomputed after it.
	ProblemRewritten Problem = "rewritten"
	// ProblemCheckpoint: a checkpoint is not signed by a given key, does
	// not parse, names another ledger, or contradicts another one.
	ProblemCheckpoint Problem = "checkpoint"
)

// AuditOptions says what Audit holds the files to.
type AuditOptions struct {
	// Verifiers check the checkpoints' signatures: every checkpoint must
	// be signed by one of their keys. Empty: signatures are not checked,
	// and the result says so (Signed false).
	Verifiers []note.Verifier
	// Log is the checkpoint log beside the ledger (CheckpointLogName); ""
	// or a missing file: none.
	Log string
	// Witness is a signed checkpoint kept outside the ledger directory
	// (the witness file, /debug/ledger/checkpoint, a central store). The
	// log alone cannot show a truncation done together with the log's
	// own: a witness can.
	Witness []byte
	// Shipped is the signed marker beside the ledger (ShippedName), when
	// there is one: files that begin after seq 1 are complete if they
	// begin right after the records it says were shipped.
	Shipped []byte
}

// Evidence is what Audit found beyond the chain.
type Evidence struct {
	OK      bool   `json:"ok"`
	Origin  string `json:"origin,omitempty"`
	Signed  bool   `json:"signed"`  // every checkpoint's signature verified
	Checked int    `json:"checked"` // checkpoints whose root was recomputed from the records and matched
	// Latest is the newest checkpoint the records matched.
	Latest *Checkpoint `json:"latest,omitempty"`
	// Witness is the outside checkpoint, when one was given (and parsed).
	Witness *Checkpoint `json:"witness,omitempty"`
	// After counts the records after the newest checkpoint: durable,
	// chained, not yet signed.
	After uint64 `json:"after"`
	// Shipped is the marker that accounts for the files before the first
	// one left, when it did: records 1..Shipped.Seq are in Shipped.Sink,
	// not here.
	Shipped *Shipped `json:"shipped,omitempty"`
	Problem Problem  `json:"problem,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// Audit verifies the chain of files (as Verify does) and then holds them
// to the signed checkpoints of the log and the witness: every checkpoint's
// root is recomputed from the records and compared. It detects what the
// chain alone cannot: newest records cut off (truncated), oldest files
// deleted (missing_start), and a record rewritten with every later prev
// recomputed (rewritten). Memory is bounded by the longest line and the
// number of checkpoints. The error is for files it cannot read; what is
// wrong with the ledger is in the result (res.OK false, or res.Evidence.OK
// false).
func Audit(files []string, opt AuditOptions) (*VerifyResult, *Evidence, error) {
	ev := &Evidence{Signed: len(opt.Verifiers) > 0}
	problem := func(p Problem, format string, args ...any) *Evidence {
		ev.OK, ev.Problem, ev.Detail = false, p, fmt.Sprintf(format, args...)
		return ev
	}
	cps, entries, perr := loadCheckpoints(opt, ev)
	if perr != nil {
		res, err := Verify(files...)
		return res, problem(ProblemCheckpoint, "%v", perr), err
	}

	// The tree before the first record, when the files do not start at
	// seq 1: the log entry at that size (every rotation writes one).
	var tc treeCheck
	tc.cps = cps
	tc.entries = entries
	res, err := verify(files, tc.add)
	if err != nil || !res.OK {
		return res, nil, err
	}
	if res.Records == 0 && len(files) == 0 {
		return res, problem(ProblemMissingStart, "no ledger file"), nil
	}
	// The end of the records: the last in the files, or the last shipped
	// when every file that held records was deleted once shipped.
	end := res.LastSeq
	if opt.Shipped != nil && (res.Records == 0 || res.FirstSeq != 1) {
		sh, err := shippedPrefix(opt, ev, res, &tc, cps)
		if err != nil {
			return res, problem(ProblemCheckpoint, "%v", err), nil
		}
		if sh != nil {
			ev.Shipped = sh
			if res.Records == 0 {
				end = sh.Seq
			}
		}
	}
	if res.Records > 0 && res.FirstSeq != 1 && ev.Shipped == nil {
		detail := fmt.Sprintf("the files begin at seq %d: records 1..%d are in no file (the oldest file was deleted)",
			res.FirstSeq, res.FirstSeq-1)
		if tc.noStart {
			detail += "; no checkpoint holds the tree before it, so the rest cannot be held to the checkpoints"
		} else if tc.bad == "" {
			detail += fmt.Sprintf("; the %d records that remain match %d checkpoint(s)", res.Records, tc.checked)
		}
		if opt.Shipped != nil {
			if sh, err := OpenShipped(opt.Shipped); err == nil {
				detail += fmt.Sprintf("; the shipped marker accounts for records 1..%d only", sh.Seq)
			}
		}
		return res, problem(ProblemMissingStart, "%s", detail), nil
	}
	if !tc.started {
		tc.compare() // no record: a checkpoint of an empty ledger still holds
	}
	if tc.bad != "" {
		return res, problem(ProblemRewritten, "%s", tc.bad), nil
	}
	ev.Checked = tc.checked
	ev.Latest = tc.latest
	var top *Checkpoint
	if len(cps) > 0 {
		top = cps[len(cps)-1]
	}
	if top != nil && uint64(top.Size) > end {
		return res, problem(ProblemTruncated, "the checkpoint of size %d (%s) covers seq 1..%d, but the files end at seq %d: records %d..%d are missing",
			top.Size, describeSource(top, opt.Witness), top.Size, end, end+1, top.Size), nil
	}
	if top == nil {
		if ev.Signed {
			return res, problem(ProblemCheckpoint, "no checkpoint to hold the files to (no checkpoint log, no witness)"), nil
		}
	} else {
		ev.After = end - uint64(top.Size)
	}
	ev.OK = true
	return res, ev, nil
}

func describeSource(c *Checkpoint, witness []byte) string {
	if witness != nil && string(c.Note) == string(witness) {
		return "the witness"
	}
	return "the checkpoint log"
}

// loadCheckpoints reads, checks and orders the checkpoints of the log and
// the witness. Checkpoints of equal size must agree.
func loadCheckpoints(opt AuditOptions, ev *Evidence) ([]*Checkpoint, []LogEntry, error) {
	open := func(msg []byte) (*Checkpoint, error) {
		if len(opt.Verifiers) == 0 {
			return ParseCheckpoint(msg)
		}
		var last error
		for _, v := range opt.Verifiers {
			c, err := OpenCheckpoint(msg, v)
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
	var entries []LogEntry
	if opt.Log != "" {
		es, err := ReadCheckpointLog(opt.Log)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, nil, err
		}
		entries = es
	}
	bySize := map[int64]*Checkpoint{}
	var out []*Checkpoint
	addCp := func(c *Checkpoint, where string) error {
		if ev.Origin == "" {
			ev.Origin = c.Origin
		} else if c.Origin != ev.Origin {
			return fmt.Errorf("%s names ledger %q, the others %q", where, c.Origin, ev.Origin)
		}
		if o, ok := bySize[c.Size]; ok {
			if o.Root != c.Root {
				return fmt.Errorf("%s and another checkpoint both cover %d records with different roots: two histories were signed", where, c.Size)
			}
			return nil
		}
		bySize[c.Size] = c
		out = append(out, c)
		return nil
	}
	if opt.Witness != nil {
		c, err := open(opt.Witness)
		if err != nil {
			return nil, nil, fmt.Errorf("witness: %w", err)
		}
		ev.Witness = c
		if err := addCp(c, "the witness"); err != nil {
			return nil, nil, err
		}
	}
	for i, e := range entries {
		where := fmt.Sprintf("%s:%d", opt.Log, i+1)
		c, err := open([]byte(e.Checkpoint))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		if c.Size != e.Size {
			return nil, nil, fmt.Errorf("%s: entry size %d, checkpoint size %d", where, e.Size, c.Size)
		}
		if err := addCp(c, where); err != nil {
			return nil, nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Size < out[j].Size })
	return out, entries, nil
}

// treeCheck rebuilds the tree as verify accepts records and compares its
// root with each checkpoint's as it reaches that size.
type treeCheck struct {
	cps     []*Checkpoint // ascending size
	entries []LogEntry
	next    int
	t       frontier
	started bool
	noStart bool // the tree before the first record is unknown
	checked int
	latest  *Checkpoint
	bad     string
}

func (c *treeCheck) add(seq uint64, prev string, line []byte) {
	if c.noStart || c.bad != "" {
		return
	}
	if !c.started {
		c.started = true
		if seq != 1 {
			t, ok := boundaryFrontier(c.entries, seq, prev)
			if !ok {
				c.noStart = true
				return
			}
			c.t = t
		}
		for c.next < len(c.cps) && c.cps[c.next].Size < c.t.n {
			c.next++ // before the files: nothing to check them with
		}
		c.compare()
	}
	c.t.add(leafHash(line), nil)
	c.compare()
}

func (c *treeCheck) compare() {
	if c.next >= len(c.cps) || c.cps[c.next].Size != c.t.n {
		return
	}
	cp := c.cps[c.next]
	c.next++
	if c.t.root() != cp.Root {
		from := int64(1)
		if c.latest != nil {
			from = c.latest.Size + 1
		}
		c.bad = fmt.Sprintf("the records do not hash to the root signed for %d records: a record in seq %d..%d was changed (and the chain recomputed after it)",
			cp.Size, from, cp.Size)
		return
	}
	c.checked++
	c.latest = cp
}

// shippedPrefix reads the shipped marker and says whether it accounts for
// the records before the files: it must be signed (when keys are given)
// for this ledger, end exactly where the files begin, chained to their
// first record, and agree with the signed checkpoint of its size, from
// which the remaining records were held to the later checkpoints. nil
// without an error: the marker does not account for them (missing_start
// says so). An error: the marker itself is bad.
func shippedPrefix(opt AuditOptions, ev *Evidence, res *VerifyResult, tc *treeCheck, cps []*Checkpoint) (*Shipped, error) {
	sh, err := OpenShipped(opt.Shipped, opt.Verifiers...)
	if err != nil {
		return nil, err
	}
	if ev.Origin != "" && sh.Origin != ev.Origin {
		return nil, fmt.Errorf("the shipped marker names ledger %q, the checkpoints %q", sh.Origin, ev.Origin)
	}
	var cp *Checkpoint
	for _, c := range cps {
		if uint64(c.Size) == sh.Seq {
			cp = c
		}
	}
	if cp == nil {
		return nil, nil // no signed tree to hold it to
	}
	if cp.Root != sh.Root {
		return nil, fmt.Errorf("the shipped marker's root for %d records is not the checkpoint's", sh.Seq)
	}
	if res.Records == 0 {
		return sh, nil
	}
	if res.FirstSeq != sh.Seq+1 || res.StartPrev != sh.Last || tc.noStart {
		return nil, nil
	}
	return sh, nil
}

// boundaryFrontier finds the tree of the seq-1 records before a file that
// begins at seq: the checkpoint log entry of that size.
func boundaryFrontier(entries []LogEntry, seq uint64, prev string) (frontier, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if uint64(e.Size) != seq-1 || e.Last != prev {
			continue
		}
		t, err := newFrontier(e.Size, e.Frontier)
		if err != nil {
			continue
		}
		// A lying frontier cannot pass: its root is compared with the
		// checkpoint of that size (compare, at the start).
		return t, true
	}
	return frontier{}, false
}

// ---------------------------------------------------------------------------
// Inclusion proofs.

// Proof shows that one record is in the tree a checkpoint signs: anyone
// holding the ledger's public key can check it (CheckProof, or by hand:
// see the README) without the ledger.
type Proof struct {
	Seq uint64 `json:"seq"`
	// Record is the record's line, without its newline: the leaf is
	// SHA-256(0x00 || Record).
	Record string `json:"record"`
	// TreeSize and Hashes are an RFC 6962/9162 inclusion proof of leaf
	// Seq-1 in the tree of TreeSize leaves (tlog.RecordProof).
	TreeSize int64       `json:"tree_size"`
	Hashes   []tlog.Hash `json:"proof"`
	// Checkpoint is the signed note whose root the proof leads to.
	Checkpoint string `json:"checkpoint"`
}

// Prove builds the inclusion proof of record seq in the tree cp signs,
// from the records of files (and, when the files do not begin at seq 1,
// the tree before them from the checkpoint log entries). It checks the
// proof before returning it: files that do not match cp give an error.
func Prove(files []string, entries []LogEntry, seq uint64, cp *Checkpoint) (*Proof, error) {
	if seq == 0 || int64(seq) > cp.Size {
		return nil, fmt.Errorf("seq %d is not in the checkpoint, which covers seq 1..%d", seq, cp.Size)
	}
	var record []byte
	want := map[node]bool{}
	got := map[node]tlog.Hash{}
	var walkErr error
	reader := tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		for _, ix := range indexes {
			level, n := tlog.SplitStoredHashIndex(ix)
			want[node{level, n}] = true
		}
		record, walkErr = proveWalk(files, entries, seq, cp.Size, want, got)
		if walkErr != nil {
			return nil, walkErr
		}
		out := make([]tlog.Hash, len(indexes))
		for i, ix := range indexes {
			level, n := tlog.SplitStoredHashIndex(ix)
			h, ok := got[node{level, n}]
			if !ok {
				return nil, fmt.Errorf("the records of subtree %d/%d are in no file", level, n)
			}
			out[i] = h
		}
		return out, nil
	})
	p, err := tlog.ProveRecord(cp.Size, int64(seq-1), reader)
	if err != nil {
		return nil, err
	}
	if record == nil {
		// A one-record tree needs no hashes, so the reader never ran.
		if record, walkErr = proveWalk(files, entries, seq, cp.Size, want, got); walkErr != nil {
			return nil, walkErr
		}
	}
	proof := &Proof{Seq: seq, Record: string(record), TreeSize: cp.Size, Hashes: p, Checkpoint: string(cp.Note)}
	if err := tlog.CheckRecord(p, cp.Size, cp.Root, int64(seq-1), leafHash(record)); err != nil {
		return nil, fmt.Errorf("the files do not match the checkpoint (%d records): %w", cp.Size, err)
	}
	return proof, nil
}

// proveWalk streams records up to size into a tree, collecting the
// subtree hashes wanted and the line of record seq.
func proveWalk(files []string, entries []LogEntry, seq uint64, size int64, want map[node]bool, got map[node]tlog.Hash) ([]byte, error) {
	var record []byte
	var t frontier
	started := false
	visit := func(n node, h tlog.Hash) {
		if want[n] {
			got[n] = h
		}
	}
	w := &walker{files: files}
	defer w.close()
	for t.n < size {
		p, line, complete, tooLong, err := w.next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("the files end at seq %d, before the checkpoint's %d records", t.n, size)
		}
		if err != nil {
			return nil, err
		}
		if !complete || tooLong {
			return nil, fmt.Errorf("%s:%d: not a complete record", p.file, p.line)
		}
		s, prev, err := parseChain(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", p.file, p.line, err)
		}
		if !started {
			started = true
			if s != 1 {
				b, ok := boundaryFrontier(entries, s, prev)
				if !ok {
					return nil, fmt.Errorf("the files begin at seq %d and no checkpoint holds the tree before it", s)
				}
				t = b
				// The subtrees before the boundary are its frontier's.
				for _, fn := range frontierNodes(t) {
					visit(fn.n, fn.h)
				}
			}
		}
		if s != uint64(t.n)+1 {
			return nil, fmt.Errorf("%s:%d: seq %d where %d was expected", p.file, p.line, s, t.n+1)
		}
		if s == seq {
			record = append([]byte(nil), line...)
		}
		t.add(leafHash(line), visit)
	}
	if record == nil {
		return nil, fmt.Errorf("record %d is in no file", seq)
	}
	return record, nil
}

type frontierNode struct {
	n node
	h tlog.Hash
}

// frontierNodes names the complete subtrees a frontier holds.
func frontierNodes(t frontier) []frontierNode {
	out := make([]frontierNode, 0, len(t.h))
	start := int64(0)
	i := 0
	for level := 62; level >= 0; level-- {
		if t.n>>uint(level)&1 == 0 {
			continue
		}
		out = append(out, frontierNode{node{level, start >> uint(level)}, t.h[i]})
		start += 1 << uint(level)
		i++
	}
	return out
}

// CheckProof checks a proof: its checkpoint is signed by one of the
// verifiers' keys, and the record's leaf leads to the checkpoint's root.
// It returns the checkpoint.
func CheckProof(p *Proof, verifiers ...note.Verifier) (*Checkpoint, error) {
	var cp *Checkpoint
	var err error
	for _, v := range verifiers {
		if cp, err = OpenCheckpoint([]byte(p.Checkpoint), v); err == nil {
			break
		}
	}
	if cp == nil {
		if err == nil {
			err = errors.New("no key to check the checkpoint with")
		}
		return nil, err
	}
	if p.TreeSize != cp.Size {
		return nil, fmt.Errorf("the proof is for %d records, its checkpoint covers %d", p.TreeSize, cp.Size)
	}
	if p.Seq == 0 || int64(p.Seq) > cp.Size {
		return nil, fmt.Errorf("seq %d is not in the checkpoint, which covers seq 1..%d", p.Seq, cp.Size)
	}
	seq, _, err := parseChain([]byte(p.Record))
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if seq != p.Seq {
		return nil, fmt.Errorf("the record is seq %d, the proof says %d", seq, p.Seq)
	}
	if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Root, int64(p.Seq-1), leafHash([]byte(p.Record))); err != nil {
		return nil, fmt.Errorf("record %d is not in the tree the checkpoint signs: %w", p.Seq, err)
	}
	return cp, nil
}

// ReadProof parses a proof written by Prove (JSON).
func ReadProof(b []byte) (*Proof, error) {
	var p Proof
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("proof: %w", err)
	}
	return &p, nil
}
