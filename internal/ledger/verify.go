package ledger

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Problem says what is wrong with a record found by Verify.
type Problem string

// Problems Verify reports.
const (
	// ProblemChanged: a record's bytes differ from what the next record's
	// prev was computed over.
	ProblemChanged Problem = "changed"
	// ProblemDropped: seq jumps and the missing records are nowhere later.
	ProblemDropped Problem = "dropped"
	// ProblemReordered: seq goes out of order (moved or repeated records).
	ProblemReordered Problem = "reordered"
	// ProblemUnparseable: the line is not a record.
	ProblemUnparseable Problem = "unparseable"
	// ProblemTorn: the last line of a file has no newline — an interrupted
	// write, which Open removes from the current file.
	ProblemTorn Problem = "torn"
)

// BadRecord locates the first record that breaks the chain.
type BadRecord struct {
	File    string  `json:"file"`
	Line    int     `json:"line"` // 1-based line number within File
	Seq     uint64  `json:"seq"`  // 0 when the line does not parse
	Problem Problem `json:"problem"`
	Detail  string  `json:"detail"`
}

func (b *BadRecord) String() string {
	return fmt.Sprintf("%s:%d: seq %d %s: %s", b.File, b.Line, b.Seq, b.Problem, b.Detail)
}

// VerifyResult is the outcome of Verify. The chain cannot show that records
// were cut off its end, or that older files were removed before the first
// given one: compare LastSeq/Head with a head exported elsewhere
// ([Ledger.Head]) and StartPrev with the Head of the previous archive.
type VerifyResult struct {
	OK        bool       `json:"ok"`
	Files     int        `json:"files"`
	Records   uint64     `json:"records"` // records checked before the first bad one
	FirstSeq  uint64     `json:"first_seq"`
	LastSeq   uint64     `json:"last_seq"`   // of the last good record
	StartPrev string     `json:"start_prev"` // prev of the first record; "" at a ledger's start
	Head      string     `json:"head"`       // hash of the last good record's line
	Bad       *BadRecord `json:"bad,omitempty"`
}

// Verify checks the chain across files, given in chain order (see Files):
// every line parses, seq rises by one, and prev is the SHA-256 of the line
// before, also across file boundaries. It stops at the first bad record. The
// error is only for files it cannot read; a broken chain is a result.
// Memory is bounded by the longest line, not by the size of the files.
func Verify(files ...string) (*VerifyResult, error) {
	return verify(files, nil)
}

// verify is Verify, calling accept (when set) with every record it found
// good, in order, before it reads the next.
func verify(files []string, accept func(seq uint64, prev string, line []byte)) (*VerifyResult, error) {
	w := &walker{files: files}
	defer w.close()
	res := &VerifyResult{Files: len(files)}

	type seen struct {
		pos  position
		seq  uint64
		hash string
	}
	var prev *seen
	// suspect is a record whose prev does not match the line before it. One
	// more line tells which of the two was changed.
	var suspect *seen
	var suspectBefore seen

	bad := func(p position, seq uint64, pr Problem, format string, args ...any) (*VerifyResult, error) {
		res.Bad = &BadRecord{File: p.file, Line: p.line, Seq: seq, Problem: pr, Detail: fmt.Sprintf(format, args...)}
		return res, nil
	}
	changedBefore := func() (*VerifyResult, error) {
		return bad(suspectBefore.pos, suspectBefore.seq, ProblemChanged,
			"its line does not hash to the prev of seq %d", suspect.seq)
	}

	for {
		p, line, complete, tooLong, err := w.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if suspect != nil && (!complete || tooLong) {
			return changedBefore()
		}
		if !complete {
			return bad(p, 0, ProblemTorn, "last line of the file has no newline: an interrupted write")
		}
		if tooLong {
			return bad(p, 0, ProblemUnparseable, "line longer than %d bytes", maxLine)
		}
		seq, prevHash, err := parseChain(line)
		if err != nil {
			if suspect != nil {
				return changedBefore()
			}
			return bad(p, 0, ProblemUnparseable, "%v", err)
		}
		h := hashLine(line)
		if suspect != nil {
			if seq == suspect.seq+1 && prevHash == suspect.hash {
				// The suspect is intact relative to its successor, so the
				// line before it is the one that changed.
				return changedBefore()
			}
			return bad(suspect.pos, suspect.seq, ProblemChanged,
				"its prev does not match seq %d and its line does not hash to the prev of the next record", suspectBefore.seq)
		}
		if prev == nil {
			res.FirstSeq, res.StartPrev = seq, prevHash
			if seq == 1 && prevHash != "" {
				return bad(p, seq, ProblemChanged, "the first record of a ledger must have an empty prev")
			}
		} else {
			want := prev.seq + 1
			switch {
			case seq > want:
				found, err := w.seqLater(want, seq-1)
				if err != nil {
					return nil, err
				}
				if found {
					return bad(p, seq, ProblemReordered, "seq %d expected here; it appears later", want)
				}
				return bad(p, seq, ProblemDropped, "seq %d..%d missing (%d records)", want, seq-1, seq-want)
			case seq < want:
				return bad(p, seq, ProblemReordered, "seq %d after seq %d: moved or repeated", seq, prev.seq)
			case prevHash != prev.hash:
				suspect = &seen{p, seq, h}
				suspectBefore = *prev
				continue
			}
		}
		prev = &seen{p, seq, h}
		if accept != nil {
			accept(seq, prevHash, line)
		}
		res.Records++
		res.LastSeq, res.Head = seq, h
	}
	if suspect != nil {
		return bad(suspectBefore.pos, suspectBefore.seq, ProblemChanged,
			"its line does not hash to the prev of seq %d, the last record (either may have been changed)", suspect.seq)
	}
	res.OK = true
	return res, nil
}

type position struct {
	file string
	line int
}

// walker reads the lines of several files in order.
type walker struct {
	files  []string
	offset int64 // where to start reading the first file
	i      int
	f      *os.File
	lr     *lineReader
	line   int
}

func (w *walker) next() (p position, line []byte, complete, tooLong bool, err error) {
	for {
		if w.f == nil {
			if w.i >= len(w.files) {
				return position{}, nil, false, false, io.EOF
			}
			f, err := os.Open(w.files[w.i])
			if err != nil {
				return position{}, nil, false, false, err
			}
			fi, err := f.Stat()
			if err != nil {
				_ = f.Close()
				return position{}, nil, false, false, err
			}
			off := int64(0)
			if w.i == 0 && w.offset > 0 {
				off = w.offset
				if _, err := f.Seek(off, io.SeekStart); err != nil {
					_ = f.Close()
					return position{}, nil, false, false, err
				}
			}
			// Up to the size at open: a file that grows while it is read
			// (the live ledger) is read as of then, and a device that never
			// ends (a ledger symlinked to /dev/full) reads as empty.
			w.f, w.lr, w.line = f, newLineReader(io.LimitReader(f, max(fi.Size()-off, 0))), 0
		}
		line, complete, tooLong, err = w.lr.next()
		if errors.Is(err, io.EOF) {
			w.close()
			w.i++
			continue
		}
		if err != nil {
			return position{}, nil, false, false, fmt.Errorf("%s: %w", w.files[w.i], err)
		}
		w.line++
		return position{w.files[w.i], w.line}, line, complete, tooLong, nil
	}
}

// seqLater reports whether any later record has a seq in [lo, hi]: it tells
// records that were moved from records that were dropped.
func (w *walker) seqLater(lo, hi uint64) (bool, error) {
	for {
		_, line, complete, tooLong, err := w.next()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !complete || tooLong {
			continue
		}
		if seq, _, err := parseChain(line); err == nil && seq >= lo && seq <= hi {
			return true, nil
		}
	}
}

func (w *walker) close() {
	if w.f != nil {
		_ = w.f.Close()
		w.f = nil
	}
}
