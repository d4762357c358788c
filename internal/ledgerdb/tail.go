package ledgerdb

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
)

// maxLine bounds a line read from a ledger file or its checkpoint log, as
// the ledger bounds the lines it writes (1 MiB): memory stays bounded
// whatever the files hold.
const maxLine = 1 << 20

// record is one ledger line with the fields its columns hold.
type record struct {
	seq                                                 uint64
	prev, hash                                          string
	time                                                time.Time
	kind, decisionID, subject, vendor, purpose, service string
	line                                                []byte
}

// lineFields are the fields of a line the database indexes. encoding/json,
// as the ledger's own readers use: a line reads the same everywhere.
type lineFields struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	DecisionID string    `json:"decision_id"`
	Subject    string    `json:"subject"`
	Vendor     string    `json:"vendor"`
	Purpose    string    `json:"purpose"`
	Service    string    `json:"service"`
	Prev       string    `json:"prev"`
}

// dbTime is a record's time as a timestamptz column holds it: to the
// microsecond (pgx drops the nanoseconds).
func dbTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

func hashLine(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:])
}

// parseRecord reads the indexed fields of a line (copied: line may be a
// reader's buffer).
func parseRecord(line []byte) (record, error) {
	var f lineFields
	if err := json.Unmarshal(line, &f); err != nil {
		return record{}, err
	}
	if f.Seq == 0 {
		return record{}, errors.New("no seq")
	}
	return record{seq: f.Seq, prev: f.Prev, hash: hashLine(line), time: dbTime(f.Time), kind: f.Kind,
		decisionID: f.DecisionID, subject: f.Subject, vendor: f.Vendor, purpose: f.Purpose, service: f.Service,
		line: bytes.Clone(line)}, nil
}

// lineReader reads newline-terminated lines of at most maxLine bytes.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next complete line without its newline, io.EOF at the
// end or before a last line without newline (still being written, or
// torn: never acknowledged). The line is valid until the next call.
func (r *lineReader) next() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		frag, err := r.br.ReadSlice('\n')
		if len(r.buf)+len(frag) > maxLine+1 {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		r.buf = append(r.buf, frag...)
		switch {
		case err == nil:
			return r.buf[:len(r.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// errLocal marks what is wrong with the local files, not with the
// database: shipping stops until a person looks (the records stay on
// disk, retention deletes nothing).
var errLocal = errors.New("local ledger")

// cursor reads a ledger's records in chain order across its files, from
// where the database's head says shipping stopped. The writer renames the
// current file at each rotation, and after a deletion under it saves its
// records under the rotated name and continues in a new file: so the
// cursor holds the file it reads open (its identity cannot then be reused
// by a new file while an offset points into it), follows it through a
// rename, and drops it once it is no longer linked anywhere — beyond what
// was acknowledged, the bytes of a deleted file are not the ledger's.
type cursor struct {
	path string
	next uint64   // seq of the next record to read
	prev string   // its prev: the chain hash of record next-1
	f    *os.File // the file record next is in or will be appended to; nil: resolve
	name string   // f's name when last seen
	off  int64    // where record next starts in f
}

func newCursor(path string, shipped uint64, hash string) *cursor {
	return &cursor{path: path, next: shipped + 1, prev: hash}
}

func (c *cursor) drop() {
	if c.f != nil {
		_ = c.f.Close()
	}
	c.f, c.name, c.off = nil, "", 0
}

// errNotYet: no file holds the position yet (a rotation in flight, say).
var errNotYet = errors.New("not yet")

// read returns the records from next on, in order, at most max of them
// or about maxBytes, and none beyond durable (the writer's durable head:
// a line in the page cache that a machine crash could take back is
// never shipped). Every record must follow on from the one before it:
// seq by one, prev the chain hash of the line before.
func (c *cursor) read(max, maxBytes int, durable uint64) ([]record, error) {
	if c.next-1 > durable {
		return nil, fmt.Errorf("%w: the database holds this ledger up to seq %d, its writer's durable head is seq %d: "+
			"the files were cut, restored from a backup, or copied to another sidecar", ErrFork, c.next-1, durable)
	}
	var out []record
	size := 0
	for tries := 0; len(out) < max && size < maxBytes && c.next <= durable; tries++ {
		if tries > 4 {
			return out, nil // the files are moving under us: next time
		}
		if c.f == nil {
			if err := c.resolve(); errors.Is(err, errNotYet) {
				continue
			} else if err != nil {
				return out, err
			}
		}
		name, err := c.linked()
		if err != nil {
			return out, err
		}
		if name == "" {
			c.drop() // deleted under the writer: its records are in the saved copy
			continue
		}
		c.name = name
		n, atEnd, err := c.readFile(&out, &size, max, maxBytes, durable)
		if err != nil {
			return out, err
		}
		if n > 0 {
			tries = 0
		}
		if !atEnd {
			if c.f == nil {
				continue // a new file begun: find where next is
			}
			return out, nil
		}
		if c.name == c.path {
			return out, nil // the end of the current file: nothing more yet
		}
		c.drop() // the end of a rotated file: next is in the next one
	}
	return out, nil
}

// linked is the name the open file has now: its name when last seen, or
// the rotated name it was renamed to; "" when no name is left.
func (c *cursor) linked() (string, error) {
	fi, err := c.f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errLocal, err)
	}
	if st, err := os.Stat(c.name); err == nil && os.SameFile(st, fi) {
		return c.name, nil
	}
	files, err := ledger.Files(c.path)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errLocal, err)
	}
	for _, name := range files {
		if st, err := os.Stat(name); err == nil && os.SameFile(st, fi) {
			return name, nil
		}
	}
	return "", nil
}

// readFile reads records from the open file at c.off, up to its size
// now. atEnd: it stopped at the end (or at a line still being written).
func (c *cursor) readFile(out *[]record, size *int, max, maxBytes int, durable uint64) (n int, atEnd bool, err error) {
	fi, err := c.f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("%w: %v", errLocal, err)
	}
	lr := newLineReader(io.NewSectionReader(c.f, c.off, max64(fi.Size()-c.off, 0)))
	for len(*out) < max && *size < maxBytes && c.next <= durable {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, fmt.Errorf("%w: %s at byte %d: %v", errLocal, c.name, c.off, err)
		}
		r, err := parseRecord(line)
		if err != nil {
			return n, false, fmt.Errorf("%w: %s at byte %d: not a record: %v", errLocal, c.name, c.off, err)
		}
		if r.seq != c.next || r.prev != c.prev {
			if c.off == 0 && r.seq > c.next && c.name == c.path {
				// A new file begun after a rotation not seen yet: the
				// record wanted is in the rotated one.
				c.drop()
				return n, false, nil
			}
			if r.seq == c.next && n > 0 {
				// Either this record's prev or the record before it was
				// changed: the one before is not shipped either.
				*out = (*out)[:len(*out)-1]
			}
			return n, false, fmt.Errorf("%w: %s at byte %d: seq %d does not follow on from seq %d (a record changed, dropped or inserted after it was written; run 'proxy ledger verify')",
				errLocal, c.name, c.off, r.seq, c.next-1)
		}
		c.off += int64(len(line)) + 1
		c.next, c.prev = r.seq+1, r.hash
		*out = append(*out, r)
		*size += len(r.line)
		n++
	}
	return n, false, nil
}

// resolve opens the file that holds record next, or will: the first
// rotated file whose last seq is at least next, else the current file;
// and finds where next starts in it, checking the chain to it: record
// next-1 hashes to prev, or record next's prev is prev.
func (c *cursor) resolve() error {
	files, err := ledger.Files(c.path)
	if err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	for _, name := range files {
		if name != c.path {
			last, err := rotatedSeq(c.path, name)
			if err != nil {
				return fmt.Errorf("%w: %v", errLocal, err)
			}
			if last < c.next {
				continue
			}
		}
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			return errNotYet
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errLocal, err)
		}
		off, err := c.find(f, name)
		if err != nil {
			_ = f.Close()
			return err
		}
		c.f, c.name, c.off = f, name, off
		return nil
	}
	return errNotYet // no current file: a rotation in flight
}

// find scans f (named name) for where record next starts.
func (c *cursor) find(f *os.File, name string) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errLocal, err)
	}
	lr := newLineReader(io.NewSectionReader(f, 0, fi.Size()))
	var off, after int64
	var last uint64
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %s: %v", errLocal, name, err)
		}
		r, err := parseRecord(line)
		if err != nil {
			return 0, fmt.Errorf("%w: %s at byte %d: not a record: %v", errLocal, name, off, err)
		}
		end := off + int64(len(line)) + 1
		switch {
		case r.seq == c.next:
			if r.prev != c.prev {
				return 0, fmt.Errorf("%w: %s: record %d has prev %.12s…, the database's head record %d hashes to %.12s…: "+
					"the database holds another history under this ledger's origin", ErrFork, name, r.seq, r.prev, c.next-1, c.prev)
			}
			return off, nil
		case r.seq+1 == c.next:
			if r.hash != c.prev {
				return 0, fmt.Errorf("%w: %s: record %d hashes to %.12s…, the database's copy to %.12s…", ErrFork, name, r.seq, r.hash, c.prev)
			}
			after = end
		case r.seq > c.next:
			if off == 0 && name == c.path {
				return 0, errNotYet // rotated since the files were listed
			}
			return 0, fmt.Errorf("%w: %s: records %d..%d are in no local file and not in the database", errLocal, name, c.next, r.seq-1)
		}
		last = r.seq
		off = end
	}
	switch {
	case last+1 == c.next:
		return after, nil // caught up: next will be appended here
	case last == 0 && off == 0 && name == c.path:
		return 0, nil // an empty current file: next will be its first record
	case name == c.path:
		return 0, fmt.Errorf("%w: the local ledger ends at seq %d but the database holds it up to seq %d: "+
			"the files were cut, restored from a backup, or copied to another sidecar", ErrFork, last, c.next-1)
	}
	return 0, errNotYet
}

// ErrFork: the database and the local files hold different records under
// one origin and seq. Shipping stops: that is evidence, for a person.
var ErrFork = errors.New("fork")

func rotatedSeq(path, name string) (uint64, error) {
	suffix, ok := strings.CutPrefix(filepath.Base(name), filepath.Base(path)+".")
	if !ok {
		return 0, fmt.Errorf("%s is not a rotated file of %s", name, path)
	}
	return strconv.ParseUint(suffix, 10, 64)
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// logEntry is one checkpoint log line, checked: its note parses, names
// the ledger's origin, and covers the entry's size.
type logEntry struct {
	size int64
	last string
	line []byte
	cp   *ledger.Checkpoint
}

func parseLogEntry(line []byte, origin string) (logEntry, error) {
	var e ledger.LogEntry
	if err := json.Unmarshal(line, &e); err != nil {
		return logEntry{}, err
	}
	cp, err := ledger.ParseCheckpoint([]byte(e.Checkpoint))
	if err != nil {
		return logEntry{}, err
	}
	if cp.Size != e.Size {
		return logEntry{}, fmt.Errorf("entry of size %d holds a checkpoint of %d", e.Size, cp.Size)
	}
	if origin != "" && cp.Origin != origin {
		return logEntry{}, fmt.Errorf("checkpoint of ledger %q, not of %q", cp.Origin, origin)
	}
	return logEntry{size: e.Size, last: e.Last, line: bytes.Clone(line), cp: cp}, nil
}

// logCursor reads the checkpoint log (append-only, never rotated) from an
// offset, starting over if the file was replaced.
type logCursor struct {
	name string
	fi   os.FileInfo
	off  int64
}

// read returns up to max complete entries after the offset.
func (c *logCursor) read(max int, origin string) ([]logEntry, error) {
	f, err := os.Open(c.name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLocal, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errLocal, err)
	}
	if c.fi == nil || !os.SameFile(fi, c.fi) || fi.Size() < c.off {
		c.fi, c.off = fi, 0
	}
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errLocal, c.name, err)
	}
	lr := newLineReader(io.LimitReader(f, max64(fi.Size()-c.off, 0)))
	var out []logEntry
	for len(out) < max {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("%w: %s at byte %d: %v", errLocal, c.name, c.off, err)
		}
		e, err := parseLogEntry(line, origin)
		if err != nil {
			return out, fmt.Errorf("%w: %s at byte %d: %v", errLocal, c.name, c.off, err)
		}
		c.off += int64(len(line)) + 1
		out = append(out, e)
	}
	return out, nil
}
