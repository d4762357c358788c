package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement that a ledger held Size records (seq 1
// through Size) whose Merkle tree has Root. Its text is a C2SP
// tlog-checkpoint — origin line, tree size, base64 root — in the signed-note
// format of golang.org/x/mod/sumdb/note (Ed25519), the format of the Go
// checksum database and other transparency logs:
//
//	github.com/pare-dev/pare/ledger/6f1c0e2d9a4b4f3e8c1d2b3a4f5e6d7c
//	4242
//	9nF8mJ6b1x0xk1r0Jm7n2o0dK2m3Zx0vY1c5q8w9eXo=
//
//	— pare-ledger Az3grlgt...
type Checkpoint struct {
	Origin string    `json:"origin"`
	Size   int64     `json:"size"`
	Root   tlog.Hash `json:"root"`
	// Note is the signed note as written: what witnesses keep and
	// verifiers check.
	Note []byte `json:"-"`
}

// OriginPrefix starts the origin line of every ledger's checkpoints; the
// rest is the ledger's instance id, generated when its first checkpoint is
// written, so checkpoints of two ledgers (two sidecars) never verify as
// each other's.
const OriginPrefix = "github.com/pare-dev/pare/ledger/"

// KeyName is the name of a ledger signing key: it appears in every
// signature line and in the verifier key ("pare-ledger+<hash>+<key>").
const KeyName = "pare-ledger"

func newInstanceID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// checkpointText is the unsigned body of a checkpoint.
func checkpointText(origin string, size int64, root tlog.Hash) string {
	return origin + "\n" + strconv.FormatInt(size, 10) + "\n" + base64.StdEncoding.EncodeToString(root[:]) + "\n"
}

// parseCheckpointText reads a checkpoint body. Extension lines after the
// root are allowed by C2SP and ignored.
func parseCheckpointText(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint: want origin, size and root lines")
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" {
		return Checkpoint{}, errors.New("checkpoint: empty origin")
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || lines[1] != strconv.FormatInt(n, 10) {
		return Checkpoint{}, fmt.Errorf("checkpoint: tree size %q", lines[1])
	}
	c.Size = n
	c.Root, err = tlog.ParseHash(lines[2])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint: root %q: %w", lines[2], err)
	}
	return c, nil
}

// OpenCheckpoint checks msg's signature with v and parses the checkpoint in
// it. A note not signed by v's key, or whose signature does not verify, is
// an error.
func OpenCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unv *note.UnverifiedNoteError
		if errors.As(err, &unv) {
			return nil, fmt.Errorf("checkpoint is not signed by key %s+%08x", v.Name(), v.KeyHash())
		}
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c, err := parseCheckpointText(n.Text)
	if err != nil {
		return nil, err
	}
	c.Note = append([]byte(nil), msg...)
	return &c, nil
}

// ParseCheckpoint parses a signed checkpoint without checking its
// signature: for the writer reading back its own log (its key may have been
// rotated since), and for tools that check the signature later or not at
// all and say so. A verifier uses OpenCheckpoint.
func ParseCheckpoint(msg []byte) (*Checkpoint, error) {
	_, err := note.Open(msg, nil)
	var unv *note.UnverifiedNoteError
	if !errors.As(err, &unv) {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	c, err := parseCheckpointText(unv.Note.Text)
	if err != nil {
		return nil, err
	}
	c.Note = append([]byte(nil), msg...)
	return &c, nil
}

// ---------------------------------------------------------------------------
// Keys.

// GenerateKey returns a new signer key (the secret, "PRIVATE+KEY+...") and
// its verifier key (the public key verifiers are given).
func GenerateKey() (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, KeyName)
}

// VerifierKey returns the verifier key of a signer key. note can generate
// a pair but not derive one from the other, so this decodes the signer key
// the way note.NewSigner does: PRIVATE+KEY+<name>+<hash>+<base64 of the
// algorithm byte 1 and the Ed25519 seed>.
func VerifierKey(skey string) (string, error) {
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("signer key: %w", err)
	}
	// SplitN: the base64 key may itself hold '+'.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("signer key: malformed")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", errors.New("signer key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(key[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// ReadKeyFile reads a signer key file and returns the signer and its
// verifier key.
func ReadKeyFile(path string) (note.Signer, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key %s: %w", path, err)
	}
	vkey, err := VerifierKey(skey)
	if err != nil {
		return nil, "", fmt.Errorf("ledger key %s: %w", path, err)
	}
	return s, vkey, nil
}

// LoadOrCreateKey reads the signer key in path, or creates it (mode 0600,
// its directory 0700) when path does not exist. created tells which.
func LoadOrCreateKey(path string) (s note.Signer, vkey string, created bool, err error) {
	s, vkey, err = ReadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return s, vkey, false, err
	}
	skey, _, err := GenerateKey()
	if err != nil {
		return nil, "", false, fmt.Errorf("ledger key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", false, fmt.Errorf("ledger key: %w", err)
	}
	// Written under a temporary name and linked into place, so a crash
	// never leaves a half-written key and a concurrent start never
	// overwrites another's key.
	if err := writeFileAtomic(path, []byte(skey+"\n"), false); err != nil {
		if errors.Is(err, os.ErrExist) {
			s, vkey, err = ReadKeyFile(path)
			return s, vkey, false, err
		}
		return nil, "", false, fmt.Errorf("ledger key: %w", err)
	}
	s, vkey, err = ReadKeyFile(path)
	return s, vkey, err == nil, err
}

// writeFileAtomic is copyFileAtomic of a byte slice.
func writeFileAtomic(path string, data []byte, replace bool) error {
	return copyFileAtomic(path, bytes.NewReader(data), replace)
}

// ---------------------------------------------------------------------------
// The checkpoint log: every checkpoint, kept beside the ledger.

// CheckpointLogName is the file beside the ledger at path that keeps every
// checkpoint the writer made, one JSON object per line (see LogEntry).
func CheckpointLogName(path string) string { return path + ".checkpoints" }

// LogEntry is one line of the checkpoint log. Checkpoint is the signed note;
// the other fields are unsigned hints that let the writer continue the tree
// on Open without reading the whole ledger, and let a verifier check what
// remains after older files are gone. A hint that lies cannot make a
// verifier accept anything: every root is recomputed from the records and
// compared with a signed one.
type LogEntry struct {
	Size int64     `json:"size"`
	Time time.Time `json:"time"`
	// Last is the chain hash (the next record's prev) of record Size.
	Last string `json:"last"`
	// Offset is the byte just past record Size in the file that held it
	// when the checkpoint was made; 0 when record Size ended a file.
	Offset int64 `json:"offset"`
	// Frontier holds the roots of the complete subtrees of the tree of
	// Size records, largest first: with them, the records after Size
	// suffice to recompute later roots and prove later records.
	Frontier   []tlog.Hash `json:"frontier"`
	Checkpoint string      `json:"checkpoint"`
}

// ReadCheckpointLog reads a checkpoint log. A torn last line (an
// interrupted append) is skipped; any other line that does not parse is an
// error naming it. Signatures are not checked here.
func ReadCheckpointLog(name string) ([]LogEntry, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lr := newLineReader(f)
	var out []LogEntry
	for n := 1; ; n++ {
		line, complete, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if !complete {
			return out, nil
		}
		if tooLong {
			return nil, fmt.Errorf("%s:%d: line too long", name, n)
		}
		var e LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		out = append(out, e)
	}
}

// lastLogEntry reads the last complete entry of the log, cutting a torn
// tail off first (the writer appends after it). ok is false when the log
// does not exist or holds no entry.
func lastLogEntry(name string) (e LogEntry, ok bool, err error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return LogEntry{}, false, nil
	}
	if err != nil {
		return LogEntry{}, false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return LogEntry{}, false, err
	}
	line, end, err := lastLine(f, fi.Size())
	if err != nil {
		return LogEntry{}, false, fmt.Errorf("%s: %w", name, err)
	}
	if end < fi.Size() {
		if err := f.Truncate(end); err != nil {
			return LogEntry{}, false, fmt.Errorf("%s: cut torn tail: %w", name, err)
		}
		if err := f.Sync(); err != nil {
			return LogEntry{}, false, fmt.Errorf("%s: cut torn tail: %w", name, err)
		}
	}
	if line == nil {
		return LogEntry{}, false, nil
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return LogEntry{}, false, fmt.Errorf("%s: last entry: %w", name, err)
	}
	return e, true, nil
}

// ---------------------------------------------------------------------------
// The checkpointer: signs and writes checkpoints off the writer goroutine.

// cpRequest is a durable state of the tree the writer wants checkpointed.
type cpRequest struct {
	tree   frontier
	last   string
	offset int64
	// boundary: the tree at the end of a ledger file. Written even when a
	// later state is queued, because a verifier of what remains after
	// older files are deleted needs the frontier at each file's start.
	boundary bool
}

type checkpointer struct {
	signer  note.Signer
	origin  string
	logPath string
	witness string // "" = none
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex
	queue   []cpRequest
	stopped bool
	wake    chan struct{}
	done    chan struct{}

	written int64 // size of the last checkpoint written, -1 before the first (checkpointer-owned)
	failing bool  // the last write failed (checkpointer-owned; logs once)

	latest atomic.Pointer[Checkpoint]
	count  atomic.Uint64
	errs   atomic.Uint64
}

// post queues a checkpoint. A queued non-boundary request is replaced by a
// newer one: only the latest state matters between boundaries.
func (c *checkpointer) post(r cpRequest) {
	c.mu.Lock()
	if n := len(c.queue); n > 0 && !c.queue[n-1].boundary {
		c.queue[n-1] = r
	} else {
		c.queue = append(c.queue, r)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		<-c.wake
		c.mu.Lock()
		q, stopped := c.queue, c.stopped
		c.queue = nil
		c.mu.Unlock()
		for _, r := range q {
			if r.tree.n <= c.written {
				continue
			}
			if err := c.write(r); err != nil {
				c.errs.Add(1)
				if !c.failing {
					c.log.Error("ledger: checkpoint not written", "size", r.tree.n, "err", err)
				}
				c.failing = true
				continue
			}
			if c.failing {
				c.log.Info("ledger: checkpoints written again", "size", r.tree.n)
			}
			c.failing = false
		}
		if stopped {
			return
		}
	}
}

// stop writes what is queued and returns once the checkpointer is done.
func (c *checkpointer) stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
}

// write signs the checkpoint, appends it to the log (fsync'd), then
// replaces the witness file with it. The log comes first: a witness never
// holds a checkpoint the ledger directory lacks, unless the directory was
// tampered with.
func (c *checkpointer) write(r cpRequest) error {
	root := r.tree.root()
	msg, err := note.Sign(&note.Note{Text: checkpointText(c.origin, r.tree.n, root)}, c.signer)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	e := LogEntry{Size: r.tree.n, Time: c.now().UTC(), Last: r.last, Offset: r.offset,
		Frontier: r.tree.h, Checkpoint: string(msg)}
	if e.Frontier == nil {
		e.Frontier = []tlog.Hash{}
	}
	line, err := json.Marshal(&e)
	if err != nil {
		return err
	}
	if err := appendLog(c.logPath, append(line, '\n')); err != nil {
		return fmt.Errorf("checkpoint log: %w", err)
	}
	c.written = r.tree.n
	cp := &Checkpoint{Origin: c.origin, Size: r.tree.n, Root: root, Note: msg}
	c.latest.Store(cp)
	c.count.Add(1)
	if c.witness != "" {
		if err := writeFileAtomic(c.witness, msg, true); err != nil {
			return fmt.Errorf("witness %s: %w", c.witness, err)
		}
	}
	return nil
}

// appendLog appends one line and fsyncs it; a log it creates has its
// directory entry fsync'd too.
func appendLog(name string, line []byte) error {
	created := false
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		created = true
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if created {
		return syncDir(filepath.Dir(name))
	}
	return nil
}
