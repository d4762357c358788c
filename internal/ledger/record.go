package ledger

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record kinds.
const (
	// KindDisclosure is written before the request goes to the vendor; it
	// lists what is about to leave.
	KindDisclosure = "disclosure"
	// KindOutcome is written after the vendor answered (or the send failed);
	// it is linked to its disclosure by DecisionID.
	KindOutcome = "outcome"
	// KindRefusal is written when the policy refused the request: nothing
	// left.
	KindRefusal = "refusal"
)

// Record is one line of the ledger. It names the fields that were sent,
// removed or transformed, never their values (see the package doc).
type Record struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	DecisionID string    `json:"decision_id"`

	Vendor string `json:"vendor"`
	// Recipient names the vendor for people: its name and contract
	// reference ("Stripe (contract PSP-2024-03)"), the identity of the
	// recipient a disclosure report must give.
	Recipient string `json:"recipient,omitempty"`
	Host      string `json:"host"`
	Method    string `json:"method"`
	// Path is the matched route's pattern when there is one
	// ("/api/v2/tickets/*"), else the path with every segment no contract
	// names replaced by "(segment)": never a concrete id or value. PathHash
	// is a keyed hash of the path as sent, so that a given request can
	// still be found (proxy ledger path-hash). Never the query string.
	Path     string `json:"path"`
	PathHash string `json:"path_hash,omitempty"`

	Purpose string `json:"purpose"`
	Subject string `json:"subject"`
	Service string `json:"service"`

	LegalBasis string `json:"legal_basis,omitempty"`
	Requester  string `json:"requester,omitempty"`
	Approver   string `json:"approver,omitempty"`

	Revision string `json:"revision"` // policy revision that decided

	// The field lists name paths with the contracts' own words: a key no
	// contract names is recorded as "(key)", an array index as "*", each
	// distinct path once, at most MaxListed of them (then Truncated).
	// FieldsRemovedCount counts every removed field, header and parameter.
	FieldsSent         []string `json:"fields_sent"`
	FieldsRemoved      []string `json:"fields_removed"`
	FieldsRemovedCount int      `json:"fields_removed_count,omitempty"`
	Transformed        []string `json:"transformed"`
	// CardsRedacted lists where the card guard replaced a card number
	// before the payload left (paths only).
	CardsRedacted []string          `json:"cards_redacted,omitempty"`
	Transforms    map[string]string `json:"transforms,omitempty"` // path -> transform name

	// Outcome is the vendor's status code as a string ("200") on outcome
	// records, or the refusal code ("denied", "consent_required", ...).
	Outcome  string `json:"outcome"`
	Status   int    `json:"status"` // HTTP status returned to the app
	BytesIn  int64  `json:"bytes_in"`
	BytesOut int64  `json:"bytes_out"`
	DryRun   bool   `json:"dry_run"`
	// Truncated says a field list was cut at MaxListed entries.
	Truncated bool `json:"truncated,omitempty"`

	// Prev is the hex SHA-256 of the previous record's line without its
	// newline; "" for the first record of a ledger.
	Prev string `json:"prev"`
}

// MaxListed bounds each field list of a record: with it, a record of any
// request stays far below maxLine.
const MaxListed = 256

// maxLine bounds one line. Records hold names, not payloads, so a real one is
// a few KiB; the bound keeps Open, Verify and Query in bounded memory and lets
// Open tell a torn line (short) from a file that is not a ledger.
const maxLine = 1 << 20

// hashLine is the chain hash of one line (without its newline).
func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// prepare copies r into the form the writer stores: slices copied so the
// caller may reuse its own after Append returns (or gives up waiting), nil
// slices as [] so readers always see arrays, the query cut from Path.
func prepare(r *Record) (Record, error) {
	if r == nil {
		return Record{}, errors.New("ledger: nil record")
	}
	switch r.Kind {
	case KindDisclosure, KindOutcome, KindRefusal:
	default:
		return Record{}, fmt.Errorf("ledger: unknown record kind %q", r.Kind)
	}
	// encoding/json refuses times outside years 0..9999; catch that here so
	// the writer never meets a record it cannot encode.
	if !r.Time.IsZero() {
		if y := r.Time.Year(); y < 0 || y > 9999 {
			return Record{}, fmt.Errorf("ledger: record time %d out of range", y)
		}
	}
	c := *r
	c.Seq, c.Prev = 0, ""
	if i := strings.IndexByte(c.Path, '?'); i >= 0 {
		c.Path = c.Path[:i]
	}
	// The caller's slices and map are not copied: the record is encoded
	// (encodeMid) before Append, Write or Submit hand it to the writer, which
	// only splices seq and prev into those bytes. Lists are written as []
	// rather than null, so every line has the same shape.
	c.FieldsSent = nonNil(r.FieldsSent)
	c.FieldsRemoved = nonNil(r.FieldsRemoved)
	c.Transformed = nonNil(r.Transformed)
	if !c.Time.IsZero() {
		c.Time = c.Time.UTC()
	}
	return c, nil
}

var noStrings = []string{}

func nonNil(s []string) []string {
	if s == nil {
		return noStrings
	}
	return s
}

// lineReader reads newline-terminated lines with bounded memory: a line
// longer than max is reported as too long and its content is not kept.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
	max int
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 256<<10), max: maxLine}
}

// next returns the next line without its newline. complete is false for a
// last line that has no newline (a torn write). It returns io.EOF when there
// is nothing left. The returned slice is valid until the next call.
func (r *lineReader) next() (line []byte, complete, tooLong bool, err error) {
	r.buf = r.buf[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		if !tooLong {
			if len(r.buf)+len(frag) > r.max+1 {
				tooLong = true
				r.buf = r.buf[:0]
			} else {
				r.buf = append(r.buf, frag...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, true, true, nil
			}
			return r.buf[:len(r.buf)-1], true, false, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.buf) == 0 && !tooLong {
				return nil, false, false, io.EOF
			}
			return r.buf, false, tooLong, nil
		default:
			return nil, false, false, err
		}
	}
}

// The writer goroutine is the one place records are serialised, since each
// line holds the hash of the one before. Encoding JSON there made it the
// bottleneck under load, so each appender encodes its own record up front
// and the writer only splices in seq and prev: a line is
// {"seq":N,<mid>"prev":"HASH"}, byte for byte what encoding/json writes for
// the whole record (Seq is the first field and Prev the last; a test holds
// it to that).
const (
	midPrefix = `{"seq":0,`
	midSuffix = `"prev":""}`
)

func encodeMid(r *Record) ([]byte, error) {
	mid := appendMid(getMid(), r)
	if n := lineLen(mid, math.MaxUint64); n > maxLine {
		putMid(mid)
		return nil, fmt.Errorf("ledger: record of %d bytes is longer than the %d allowed", n, maxLine)
	}
	return mid, nil
}

// midPool recycles encoded records once the writer has copied them into its
// batch: two records per proxied request made these buffers (and their
// regrowth past a first guess) the ledger's largest allocation.
var midPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func getMid() []byte { return (*midPool.Get().(*[]byte))[:0] }

func putMid(b []byte) {
	if cap(b) > 64<<10 {
		return // a rare huge record does not pin its buffer
	}
	midPool.Put(&b)
}

// encodeMidReflect is encodeMid through encoding/json: the reference the
// hand-written encoder is tested against.
func encodeMidReflect(r *Record) ([]byte, error) {
	c := *r
	c.Seq, c.Prev = 0, ""
	line, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	if !bytes.HasPrefix(line, []byte(midPrefix)) || !bytes.HasSuffix(line, []byte(midSuffix)) {
		return nil, errors.New("ledger: record encoding changed shape (seq must come first and prev last)")
	}
	return line[len(midPrefix) : len(line)-len(midSuffix)], nil
}

// appendLine appends the record's line (without newline) to dst.
func appendLine(dst, mid []byte, seq uint64, prev string) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, ',')
	dst = append(dst, mid...)
	dst = append(dst, `"prev":"`...)
	dst = append(dst, prev...)
	return append(dst, `"}`...)
}

// lineLen is the length of the line appendLine writes, with a full hash.
func lineLen(mid []byte, seq uint64) int {
	n := len(`{"seq":,"prev":""}`) + len(mid) + 64
	for ; seq >= 10; seq /= 10 {
		n++
	}
	return n + 1
}
