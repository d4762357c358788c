package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Defaults for [Options].
const (
	DefaultMaxBytes           = 64 << 20
	DefaultMaxBatch           = 1024
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = 5 * time.Second
)

// watchEvery is how often the writer checks that its path still names the
// file it has open, and retries a failed ledger: well within the second in
// which a deleted, renamed or replaced file must be noticed.
const watchEvery = 200 * time.Millisecond

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("ledger: closed")

// Options tune a [Ledger]. The zero value is usable.
type Options struct {
	// MaxBytes rotates the file before a record would take it past this
	// size. Default DefaultMaxBytes.
	MaxBytes int64
	// MaxBatch bounds how many records share one write (an fsync covers
	// every write made before it started).
	// Default DefaultMaxBatch.
	MaxBatch int
	// Logger receives the events an operator must see: a torn tail removed
	// on Open, a failed write, a recovery, a failed rotation. Default
	// slog.Default().
	Logger *slog.Logger
	// Now stamps records whose Time is zero. Default time.Now.
	Now func() time.Time
	// ObserveSync, when set, is called with the duration of every fsync
	// (from the syncer goroutine): disk latency is what a durable ledger
	// adds to each request, so operators need to see it.
	ObserveSync func(time.Duration)

	// Signer signs checkpoints. With it the writer keeps the records'
	// Merkle tree and writes a signed [Checkpoint] every CheckpointEvery
	// records or CheckpointInterval, at each rotation and at Close, to the
	// checkpoint log beside the ledger (CheckpointLogName) and to
	// WitnessPath. nil: the hash chain only, no checkpoints.
	Signer note.Signer
	// CheckpointEvery: checkpoint once this many records became durable
	// since the last one. Default DefaultCheckpointEvery.
	CheckpointEvery int
	// CheckpointInterval: checkpoint at least this often while records
	// arrive (none while idle). Default DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// WitnessPath, when set, is replaced by every checkpoint's signed note:
	// a copy of the latest checkpoint outside the ledger directory, ideally
	// on a volume the ledger's owner cannot rewrite.
	WitnessPath string

	// openFile is the seam through which tests put a failing file under the
	// writer. Default openLedgerFile.
	openFile func(name string) (file, error)
}

// file is what the writer needs of the ledger file; *os.File satisfies it.
type file interface {
	io.Writer
	io.ReaderAt
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
}

func openLedgerFile(name string) (file, error) {
	// O_APPEND: every write lands at the end even if something else moved
	// the offset; 0600 because records name data subjects.
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
}

// Stats are counters for the proxy's metrics. All are totals since Open.
type Stats struct {
	Records     uint64 // records acknowledged (durable)
	Batches     uint64 // successful fsyncs; Batches/Records is fsyncs per record
	WriteErrors uint64 // failed writes, fsyncs and recoveries
	Rotations   uint64
	TornTails   uint64 // torn last lines removed by Open
	// Relocations counts new segments started because the path no longer
	// named the open file (deleted, renamed or replaced under the writer).
	Relocations      uint64
	Checkpoints      uint64 // checkpoints written to the checkpoint log
	CheckpointErrors uint64 // checkpoints that could not be written (log or witness)
}

// Ledger appends records to a hash-chained file. It is safe for concurrent
// use.
type Ledger struct {
	path     string
	dir      string
	maxBytes int64
	maxBatch int
	log      *slog.Logger
	now      func() time.Time
	open     func(string) (file, error)
	unlock   func() error
	lockFI   os.FileInfo // identity of the lock file we hold

	observeSync func(time.Duration)

	// mu guards closed against Close racing with the channel send in Append.
	mu     sync.RWMutex
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has finished

	// Owned by the writer goroutine (and by Open before it starts).
	f        file
	size     int64  // bytes in f known to be durable: the end of the last acknowledged line
	seq      uint64 // seq of the last durable record
	last     string // hash of the last durable record's line
	retryRot int64  // after a failed rotation: the size below which not to try again
	unacked  int64  // bytes written after the last durable line when a write or fsync failed: what recovery may cut off
	failed   error  // non-nil while the ledger cannot write
	buf      []byte
	closeErr error
	fi       os.FileInfo // identity of f: the path must keep naming it
	moved    bool        // the failure is that the path no longer names f

	// The records' Merkle tree (nil cp: not kept): tree is the durable
	// state, wtree the written end, like size and wsize.
	cp         *checkpointer
	tree       frontier
	wtree      frontier
	leaves     []tlog.Hash // scratch for commit
	leafH      leafHasher
	cpEvery    uint64
	cpInterval time.Duration
	cpSeq      uint64    // size of the last checkpoint asked for
	cpTime     time.Time // when it was asked for

	// The written end of the file, ahead of size/seq/last while records
	// wait for an fsync (see run).
	wsize    int64
	wseq     uint64
	wlast    string
	pending  []*request // written, waiting for the next fsync
	retry    []*request // written, then cut by a recovery: to write again
	syncing  []*request // covered by the fsync in flight
	target   syncPoint  // what the fsync in flight makes durable
	inflight bool
	syncReq  chan syncJob
	syncRes  chan error

	// headMu guards the copy of the chain head that Head reads.
	headMu   sync.Mutex
	headSeq  uint64
	headHash string

	failedFlag atomic.Pointer[error] // failed, readable from other goroutines
	records    atomic.Uint64
	batches    atomic.Uint64
	writeErrs  atomic.Uint64
	rotations  atomic.Uint64
	tornTails  atomic.Uint64
	relocs     atomic.Uint64
}

// syncPoint is the end of the file an fsync makes durable.
type syncPoint struct {
	size int64
	seq  uint64
	last string
	tree frontier // when the tree is kept
}

// syncJob is what the syncer fsyncs: the file and the identity the path
// must still have once the fsync returned.
type syncJob struct {
	f  file
	fi os.FileInfo
}

// errMoved fails records whose file the ledger's path no longer names: they
// are durable in a file nobody will find.
var errMoved = errors.New("the ledger path no longer names the open file (deleted, renamed or replaced)")

type request struct {
	rec  Record
	mid  []byte // the record's JSON between seq and prev (see encodeMid)
	lazy bool   // submitted: need not be durable before the next batch
	// written, when set, learns when the line is in the file, before the
	// fsync (see Write).
	written  chan error
	tries    int        // times the record was written and then cut by a recovery (writer-owned)
	reported bool       // written was sent (writer-owned)
	done     chan error // buffered: the writer never blocks on an appender that gave up
}

// Open opens (creating if needed) the ledger at path and continues its chain:
// the sequence number and the last hash come from the last record of the
// file, or of the newest rotated file when the current one is empty or
// missing (a crash during rotation). A torn last line — bytes after the last
// newline — can only be a write that was never acknowledged, because Append
// acknowledges only after the newline is fsync'd; Open cuts it off and logs
// it. Anything else that does not parse at the end of the file is refused:
// that is not a crash artefact and needs a human (run Verify).
func Open(path string, opt Options) (*Ledger, error) {
	l := &Ledger{
		path:     path,
		dir:      filepath.Dir(path),
		maxBytes: opt.MaxBytes,
		maxBatch: opt.MaxBatch,
		log:      opt.Logger,
		now:      opt.Now,
		open:     opt.openFile,

		observeSync: opt.ObserveSync,
	}
	if l.maxBytes <= 0 {
		l.maxBytes = DefaultMaxBytes
	}
	if l.maxBatch <= 0 {
		l.maxBatch = DefaultMaxBatch
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.open == nil {
		l.open = openLedgerFile
	}

	unlock, lockFI, err := lockFile(path + ".lock")
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	l.unlock, l.lockFI = unlock, lockFI
	if err := l.openTail(); err != nil {
		_ = unlock()
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	if opt.Signer != nil {
		l.cpEvery = uint64(opt.CheckpointEvery)
		if opt.CheckpointEvery <= 0 {
			l.cpEvery = DefaultCheckpointEvery
		}
		l.cpInterval = opt.CheckpointInterval
		if l.cpInterval <= 0 {
			l.cpInterval = DefaultCheckpointInterval
		}
		l.cp = &checkpointer{signer: opt.Signer, logPath: CheckpointLogName(path), witness: opt.WitnessPath,
			log: l.log, now: l.now, written: -1, wake: make(chan struct{}, 1), done: make(chan struct{})}
		if err := l.openTree(); err != nil {
			_ = l.f.Close()
			_ = unlock()
			return nil, fmt.Errorf("ledger %s: %w", path, err)
		}
		l.wtree = l.tree.clone()
		l.cpSeq, l.cpTime = l.seq, time.Now()
		go l.cp.run()
	}
	l.setHead()
	l.wsize, l.wseq, l.wlast = l.size, l.seq, l.last
	l.reqs = make(chan *request, l.maxBatch)
	l.done = make(chan struct{})
	go l.run()
	return l, nil
}

// openTail opens the current file, removes a torn tail and recovers seq and
// the last hash.
func (l *Ledger) openTail() error {
	f, err := l.open(l.path)
	if err != nil {
		return err
	}
	// The file may have just been created; make its name durable before a
	// record in it is acknowledged.
	if err := syncDir(l.dir); err != nil {
		_ = f.Close()
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return err
	}
	size := fi.Size()
	line, end, err := lastLine(f, size)
	if err != nil {
		_ = f.Close()
		return err
	}
	if end < size {
		// Torn tail: cut it and make the cut durable before writing after it.
		if err := f.Truncate(end); err != nil {
			_ = f.Close()
			return fmt.Errorf("truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("truncate torn tail: %w", err)
		}
		l.tornTails.Add(1)
		// Length and offset only: the bytes are part of a record and records
		// name data subjects.
		l.log.Warn("ledger: removed torn last line left by an interrupted write",
			"path", l.path, "offset", end, "bytes", size-end)
		size = end
	}
	l.f, l.size, l.fi = f, size, fi
	if line != nil {
		seq, err := parseSeq(line)
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("last record (at byte %d) does not parse, refusing to append after it: %w", end-int64(len(line))-1, err)
		}
		l.seq, l.last = seq, hashLine(line)
		return nil
	}
	// The current file holds no record: continue from the newest rotated file.
	files, err := Files(l.path)
	if err != nil {
		_ = f.Close()
		return err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if files[i] == l.path {
			continue
		}
		if err := l.tailOfRotated(files[i]); err != nil {
			_ = f.Close()
			return err
		}
		break
	}
	return nil
}

func (l *Ledger) tailOfRotated(name string) error {
	rf, err := os.Open(name)
	if err != nil {
		return err
	}
	defer rf.Close()
	fi, err := rf.Stat()
	if err != nil {
		return err
	}
	line, end, err := lastLine(rf, fi.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if end != fi.Size() {
		// A rotated file was fsync'd whole before its rename; a torn end
		// there is not a crash artefact.
		return fmt.Errorf("%s: rotated file ends in a partial line", name)
	}
	if line == nil {
		return nil
	}
	seq, err := parseSeq(line)
	if err != nil {
		return fmt.Errorf("%s: last record does not parse: %w", name, err)
	}
	l.seq, l.last = seq, hashLine(line)
	return nil
}

// lastLine finds the last complete line of the first size bytes of r. end is
// the offset just past that line's newline (0 when there is none); bytes
// after end are a torn tail. A tail longer than maxLine is an error: no
// record is that long, so it is not a torn record.
func lastLine(r io.ReaderAt, size int64) (line []byte, end int64, err error) {
	if size == 0 {
		return nil, 0, nil
	}
	// Two max lines back cover a torn tail plus the whole last line.
	n := int64(2*maxLine + 2)
	if n > size {
		n = size
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, size-n); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	nl := bytes.LastIndexByte(buf, '\n')
	if nl < 0 {
		if n < size || n > maxLine {
			return nil, 0, errors.New("no line end in the last bytes: not a ledger file")
		}
		return nil, 0, nil // the whole file is one torn line
	}
	if int64(len(buf)-nl-1) > maxLine {
		return nil, 0, errors.New("partial line at the end is longer than any record: not a crash artefact")
	}
	end = size - n + int64(nl) + 1
	start := bytes.LastIndexByte(buf[:nl], '\n') + 1
	if start == 0 && n < size {
		return nil, 0, errors.New("last line is longer than any record")
	}
	return buf[start:nl], end, nil
}

// chainFields is the part of a record the chain needs. Pointers tell a
// missing field from a zero one.
type chainFields struct {
	Seq  *uint64 `json:"seq"`
	Prev *string `json:"prev"`
}

func parseChain(line []byte) (seq uint64, prev string, err error) {
	var c chainFields
	if err := json.Unmarshal(line, &c); err != nil {
		return 0, "", err
	}
	if c.Seq == nil || *c.Seq == 0 {
		return 0, "", errors.New("missing seq")
	}
	if c.Prev == nil {
		return 0, "", errors.New("missing prev")
	}
	return *c.Seq, *c.Prev, nil
}

func parseSeq(line []byte) (uint64, error) {
	seq, _, err := parseChain(line)
	return seq, err
}

// Append assigns r its Seq, Prev and (when zero) Time, and returns once its
// line is written and fsync'd. On success r's Seq, Time and Prev are set.
//
// ctx bounds the wait only: a record already handed to the writer is written
// even if ctx ends first, and Append then returns ctx.Err() — the caller must
// treat that as "not acknowledged" and not send.
//
// When a write or fsync fails, Append returns the error and the ledger
// enters a failed state. After a failed fsync nothing can be known about the
// bytes written since the last good one (Linux may drop the dirty pages and
// report success on a later fsync), so the writer never retries on that
// descriptor: on the next batch it closes it, re-opens the file, checks it
// still ends where the last acknowledged record ended, truncates the
// unacknowledged bytes, fsyncs, and checks the last line still hashes to the
// chain head. Until that succeeds every Append fails. [Ledger.Err] reports the
// state and [Ledger.Stats] counts the errors.
func (l *Ledger) Append(ctx context.Context, r *Record) error {
	req, err := l.newRequest(r)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		l.mu.RUnlock()
		return ctx.Err()
	}
	l.mu.RUnlock()
	select {
	case err := <-req.done:
		if err != nil {
			return err
		}
		// The writer is done with req: reading its fields is race-free.
		r.Seq, r.Time, r.Prev = req.rec.Seq, req.rec.Time, req.rec.Prev
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Write hands r to the writer and returns once its line is in the file —
// written, not yet fsync'd — with a function that waits until it is
// durable. It lets a caller overlap the fsync with other work: the proxy
// writes the disclosure record before the request goes to the vendor and
// waits for durability only before it answers the app, so the fsync runs
// while the vendor answers. An error from Write means: do not send (the
// record may still be in the file — the ledger may over-report, never
// under-report). An error from wait means the record could not be made
// durable: if a write or fsync fails after Write returned, the writer
// recovers the file and writes the record again (up to maxWriteTries
// times), because its request may already have left; wait reports the end
// of that. wait may be called again after a ctx error.
func (l *Ledger) Write(ctx context.Context, r *Record) (wait func(context.Context) error, err error) {
	req, err := l.newRequest(r)
	if err != nil {
		return nil, err
	}
	req.written = make(chan error, 1)
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	l.mu.RUnlock()
	select {
	case <-req.written:
	case err := <-req.done: // failed before the write, or done already
		if err != nil {
			return nil, err
		}
		req.done <- nil // keep it for wait
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var (
		mu   sync.Mutex
		got  bool
		werr error
	)
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if got {
			return werr
		}
		select {
		case werr = <-req.done:
			got = true
			return werr
		case <-ctx.Done():
			return ctx.Err() // not kept: a later call may still see the result
		}
	}, nil
}

// lazyDelay bounds how long a submitted record waits for a batch to share.
const lazyDelay = 50 * time.Millisecond

// Submit hands r to the writer without waiting for it to be durable: for
// records whose loss in a crash costs no promise, such as the outcome that
// follows a disclosure already on disk. It blocks only while the writer's
// queue is full. Errors (a record it refuses, a closed ledger) are returned
// at once; write failures show in [Ledger.Stats] and [Ledger.Err]. Close
// still writes and fsyncs every submitted record.
func (l *Ledger) Submit(r *Record) error {
	req, err := l.newRequest(r)
	if err != nil {
		return err
	}
	req.lazy = true
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.reqs <- req
	return nil
}

// newRequest validates, stamps and encodes r in the caller's goroutine, so
// the single writer only splices seq and prev into ready bytes.
func (l *Ledger) newRequest(r *Record) (*request, error) {
	rec, err := prepare(r)
	if err != nil {
		return nil, err
	}
	if rec.Time.IsZero() {
		rec.Time = l.now().UTC()
	}
	mid, err := encodeMid(&rec)
	if err != nil {
		return nil, err
	}
	return &request{rec: rec, mid: mid, done: make(chan error, 1)}, nil
}

// Err returns the write error that put the ledger in its failed state, or nil
// when it is writing normally. Health checks use it.
func (l *Ledger) Err() error {
	if p := l.failedFlag.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats returns the counters.
func (l *Ledger) Stats() Stats {
	st := Stats{
		Records:     l.records.Load(),
		Batches:     l.batches.Load(),
		WriteErrors: l.writeErrs.Load(),
		Rotations:   l.rotations.Load(),
		TornTails:   l.tornTails.Load(),
		Relocations: l.relocs.Load(),
	}
	if l.cp != nil {
		st.Checkpoints, st.CheckpointErrors = l.cp.count.Load(), l.cp.errs.Load()
	}
	return st
}

// Checkpoint returns the latest checkpoint written to the checkpoint log,
// or nil when the ledger keeps none (no Signer).
func (l *Ledger) Checkpoint() *Checkpoint {
	if l.cp == nil {
		return nil
	}
	return l.cp.latest.Load()
}

// Origin is the origin line of the ledger's checkpoints: OriginPrefix and
// the instance id stored in its checkpoint log ("" without a Signer).
// It names this ledger wherever its records and checkpoints are shipped.
func (l *Ledger) Origin() string {
	if l.cp == nil {
		return ""
	}
	return l.cp.origin
}

// Head returns the seq and hash of the last durable record. Exporting the
// head elsewhere (a log, a metric, a notary) is what makes truncation of the
// newest records detectable: the chain alone cannot show a missing tail.
func (l *Ledger) Head() (seq uint64, hash string) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.headSeq, l.headHash
}

func (l *Ledger) setHead() {
	l.headMu.Lock()
	l.headSeq, l.headHash = l.seq, l.last
	l.headMu.Unlock()
}

// Close writes and fsyncs everything handed to the writer, closes the file
// and releases the lock. Appends after Close return ErrClosed.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	l.mu.Unlock()
	close(l.reqs)
	<-l.done
	if l.cp != nil {
		l.cp.stop() // writes the final checkpoint the writer queued
	}
	err := l.closeErr
	if uerr := l.unlock(); uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

// run is the writer goroutine: it takes whatever is queued, up to maxBatch,
// writes it with one write, and has the syncer fsync it.
//
// Writing and fsyncing are pipelined: while one fsync is in flight the writer
// keeps writing the next batches, and one fsync then covers all of them. With
// write and fsync in one goroutine, a request arriving during an fsync could
// not even be written (and so not sent to its vendor) until that fsync
// returned — every request paid up to two fsyncs in series with the vendor
// call. Only this goroutine touches the ledger's state; the syncer only calls
// Sync on the file it is given.
func (l *Ledger) run() {
	defer close(l.done)
	syncReq := make(chan syncJob)
	syncRes := make(chan error)
	go func() {
		for j := range syncReq {
			t0 := time.Now()
			err := j.f.Sync()
			if l.observeSync != nil {
				l.observeSync(time.Since(t0))
			}
			if err == nil {
				// Durable, but in the file the path names? An fsync'd
				// record in a file deleted under the writer is found by
				// nobody: it is not acknowledged (see relocate).
				err = l.checkPath(j.fi)
			}
			syncRes <- err
		}
	}()
	l.syncReq, l.syncRes = syncReq, syncRes
	defer close(syncReq)

	batch := make([]*request, 0, l.maxBatch)
	// Submitted records (lazy) wait for the next batch that must be durable
	// anyway, or for lazyDelay: a batch of only outcomes does not cost a
	// write and an fsync of its own.
	urgent := 0
	lazy := time.NewTimer(time.Hour)
	lazy.Stop()
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	armed, open := false, true
	add := func(r *request) {
		batch = append(batch, r)
		if !r.lazy {
			urgent++
		}
	}
	for open || len(batch) > 0 || l.inflight || len(l.retry) > 0 {
		if len(l.retry) > 0 {
			// Before anything else: recover the file and write again what
			// a failure cut (commit recovers first, see writable).
			rb := l.retry
			l.retry = nil
			l.commit(rb)
			continue
		}
		flush := false
		var reqs chan *request
		if open {
			reqs = l.reqs
		}
		var timer <-chan time.Time
		if armed {
			timer = lazy.C
		}
		var synced chan error
		if l.inflight {
			synced = l.syncRes
		}
		select {
		case r, ok := <-reqs:
			if ok {
				add(r)
			} else {
				open = false
			}
		case <-timer:
			armed, flush = false, true
		case err := <-synced:
			l.synced(err)
			l.startSync()
			continue
		case <-tick.C:
			l.watch()
			continue
		}
	fill:
		for open && len(batch) < l.maxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					open = false
					break fill
				}
				add(r)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			continue
		}
		if !flush && urgent == 0 && open && len(batch) < l.maxBatch {
			if !armed {
				lazy.Reset(lazyDelay)
				armed = true
			}
			continue
		}
		if armed {
			lazy.Stop()
			armed = false
		}
		l.commit(batch)
		clear(batch) // drop references so finished requests can be collected
		batch, urgent = batch[:0], 0
	}
	l.syncAll()
	for len(l.retry) > 0 { // the last fsync failed: recover and try again
		rb := l.retry
		l.retry = nil
		l.commit(rb)
		l.syncAll()
	}
	if l.cp != nil {
		l.postCheckpoint(true) // at shutdown; Close waits for it
	}
	if l.f != nil {
		if err := l.f.Close(); err != nil && l.failed == nil {
			l.closeErr = err
		}
		l.f = nil
	}
	if l.failed != nil {
		l.closeErr = errors.Join(l.closeErr, l.failed)
	}
}

// commit writes batch, rotating between records when the file is full, and
// starts an fsync of it unless one is in flight (the next one covers it).
func (l *Ledger) commit(batch []*request) {
	for len(batch) > 0 {
		if err := l.writable(); err != nil {
			for _, r := range batch {
				r.done <- err
			}
			return
		}
		seq, prev := l.wseq, l.wlast
		buf := l.buf[:0]
		leaves := l.leaves[:0]
		n := 0 // requests of batch consumed by this chunk
		for ; n < len(batch); n++ {
			r := batch[n]
			r.rec.Seq, r.rec.Prev = seq+1, prev
			if used := l.wsize + int64(len(buf)); used > 0 && used >= l.retryRot &&
				used+int64(lineLen(r.mid, seq+1)+1) > l.maxBytes {
				break // rotate first; this record opens the next file
			}
			start := len(buf)
			buf = appendLine(buf, r.mid, seq+1, prev)
			putMid(r.mid) // copied; nothing reads it again
			r.mid = nil
			line := buf[start:]
			if l.cp != nil {
				leaves = append(leaves, l.leafH.sum(line))
			}
			buf = append(buf, '\n')
			seq, prev = seq+1, hashLine(line)
		}
		l.buf, l.leaves = buf, leaves
		chunk := batch[:n]
		batch = batch[n:]
		if len(buf) > 0 {
			if err := l.write(buf, chunk, seq, prev, leaves); err != nil {
				for _, r := range batch {
					r.done <- err
				}
				return
			}
		}
		if len(batch) > 0 {
			// Everything in the old file must be durable before it is
			// renamed away.
			l.syncAll()
			if l.failed != nil {
				for _, r := range batch {
					r.done <- l.failed
				}
				return
			}
			l.rotate()
		}
	}
	l.startSync()
}

// write appends buf, the lines of chunk, to the file and tells each Write
// caller its line is in the file. The chunk waits in pending for an fsync.
// On failure the ledger enters the failed state; recovery cuts everything
// after the last durable line, so every written record not yet durable
// fails with chunk.
func (l *Ledger) write(buf []byte, chunk []*request, seq uint64, last string, leaves []tlog.Hash) error {
	_, err := l.f.Write(buf)
	if err != nil {
		l.waitSync() // settle what the in-flight fsync covers first
		l.unacked = l.wsize - l.size + int64(len(buf))
		// The failed state is visible before any caller learns of the error.
		l.fail(fmt.Errorf("ledger %s: write failed, nothing acknowledged: %w", l.path, err))
		// chunk was never reported written: its callers send nothing.
		for _, r := range chunk {
			r.done <- l.failed
		}
		l.lose(l.pending)
		clear(l.pending)
		l.pending = l.pending[:0]
		return l.failed
	}
	for _, r := range chunk {
		if r.written != nil && !r.reported {
			r.written <- nil
			r.reported = true // once: a rewritten record is not reported again
		}
	}
	l.wsize += int64(len(buf))
	l.wseq, l.wlast = seq, last
	for _, h := range leaves {
		l.wtree.add(h, nil)
	}
	l.pending = append(l.pending, chunk...)
	return nil
}

// startSync hands the file to the syncer when records wait for an fsync and
// none is in flight.
func (l *Ledger) startSync() {
	if l.inflight || len(l.pending) == 0 || l.failed != nil {
		return
	}
	l.syncing, l.pending = l.pending, l.syncing[:0]
	// Field by field: assigning a whole syncPoint would drop the tree's
	// buffer kept across fsyncs.
	l.target.size, l.target.seq, l.target.last = l.wsize, l.wseq, l.wlast
	if l.cp != nil {
		// Copied into a buffer kept across fsyncs: one allocation per
		// fsync showed in the proxy's per-request allocations.
		l.target.tree.n = l.wtree.n
		l.target.tree.h = append(l.target.tree.h[:0], l.wtree.h...)
	}
	l.inflight = true
	l.syncReq <- syncJob{l.f, l.fi}
}

// synced takes the result of the in-flight fsync: on success everything it
// covers is durable and acknowledged; on failure nothing written since the
// last good fsync can be trusted (see Append), and all of it fails.
func (l *Ledger) synced(err error) {
	l.inflight = false
	if err != nil {
		l.unacked = l.wsize - l.size
		if errors.Is(err, errMoved) {
			l.moved = true
			l.fail(fmt.Errorf("ledger %s: nothing since the last good fsync acknowledged: %w", l.path, err))
		} else {
			l.fail(fmt.Errorf("ledger %s: fsync failed, nothing since the last good one acknowledged: %w", l.path, err))
		}
		l.lose(l.syncing)
		l.lose(l.pending)
		clear(l.syncing)
		l.syncing = l.syncing[:0]
		clear(l.pending)
		l.pending = l.pending[:0]
		return
	}
	l.size, l.seq, l.last = l.target.size, l.target.seq, l.target.last
	if l.cp != nil {
		l.tree.n = l.target.tree.n
		l.tree.h = append(l.tree.h[:0], l.target.tree.h...)
	}
	l.setHead()
	l.batches.Add(1)
	for _, r := range l.syncing {
		l.records.Add(1)
		r.done <- nil
	}
	l.maybeCheckpoint()
	clear(l.syncing) // drop references so finished requests can be collected
	l.syncing = l.syncing[:0]
}

// waitSync waits for the in-flight fsync, if any.
func (l *Ledger) waitSync() {
	if l.inflight {
		l.synced(<-l.syncRes)
	}
}

// syncAll returns once everything written is durable, or the ledger failed.
func (l *Ledger) syncAll() {
	l.waitSync()
	l.startSync()
	l.waitSync()
}

// lose takes records that were written but whose bytes recovery will cut
// (a write or fsync failed after them). A Write caller may already have sent
// its request to the vendor, so failing the record would leave a disclosure
// unrecorded: each is written again once the file is recovered (see run),
// and acknowledged or failed then. A record lost maxWriteTries times fails.
func (l *Ledger) lose(rs []*request) {
	for _, r := range rs {
		r.tries++
		if r.tries >= maxWriteTries {
			r.done <- l.failed
			continue
		}
		mid, err := encodeMid(&r.rec)
		if err != nil { // it encoded before; cannot happen, but never drop silently
			r.done <- err
			continue
		}
		r.mid = mid
		l.retry = append(l.retry, r)
	}
}

// maxWriteTries bounds how often one record is written after failures.
const maxWriteTries = 3

func (l *Ledger) fail(err error) {
	l.writeErrs.Add(1)
	if l.failed == nil {
		l.log.Error("ledger: entering failed state; appends fail until a write succeeds", "path", l.path, "err", err)
	}
	l.failed = err
	l.failedFlag.Store(&err)
}

// writable returns nil when the ledger can take a write, trying to recover
// from a failed state first.
func (l *Ledger) writable() error {
	if l.failed == nil {
		return nil
	}
	if err := l.recover(); err != nil {
		if l.moved {
			l.fail(fmt.Errorf("ledger %s: %w; still failed: %w", l.path, errMoved, err))
		} else {
			l.fail(fmt.Errorf("ledger %s: still failed: %w", l.path, err))
		}
		return l.failed
	}
	l.log.Info("ledger: writing again after a failure", "path", l.path, "seq", l.seq)
	l.failed = nil
	l.unacked = 0
	l.failedFlag.Store(nil)
	return nil
}

// recover re-establishes a known state on disk after a failed write: a fresh
// descriptor, the file cut back to the last acknowledged line, fsync'd, and
// that line checked against the chain head.
func (l *Ledger) recover() error {
	if l.moved {
		return l.relocate()
	}
	f, err := l.open(l.path)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		_ = f.Close()
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if l.fi != nil && !os.SameFile(fi, l.fi) {
		// Not the file we wrote: the old descriptor still holds our
		// records; save them and start anew.
		_ = f.Close()
		l.moved = true
		return l.relocate()
	}
	if l.f != nil {
		_ = l.f.Close() // its error is the failure we already know of
		l.f = nil
	}
	if err := syncDir(l.dir); err != nil {
		return fail(err)
	}
	switch got := fi.Size(); {
	case got < l.size:
		// Truncate would extend with zeros; someone else changed the file.
		return fail(fmt.Errorf("file is %d bytes, shorter than the %d acknowledged", got, l.size))
	case got > l.size+l.unacked:
		// More than our failed write: not ours to cut.
		return fail(fmt.Errorf("file has %d bytes after the last acknowledged record, more than the failed write", got-l.size))
	}
	if err := f.Truncate(l.size); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if l.size > 0 {
		line, end, err := lastLine(f, l.size)
		if err != nil {
			return fail(err)
		}
		if end != l.size || line == nil || hashLine(line) != l.last {
			return fail(errors.New("last line on disk is not the last acknowledged record"))
		}
	}
	l.f, l.fi = f, fi
	l.wsize, l.wseq, l.wlast = l.size, l.seq, l.last
	if l.cp != nil {
		l.wtree = l.tree.clone()
	}
	return nil
}

// rotate renames the full file to "<path>.<seq of its last record>" and
// starts an empty one; the next record's prev is the last hash of the old
// file, so the chain runs on. All of the old file is already fsync'd. If the
// rename fails the ledger keeps writing to the current file (its records are
// durable) and tries again after some more growth; if the new file cannot be
// created the ledger enters the failed state, and recovery creates it.
func (l *Ledger) rotate() {
	name := RotatedName(l.path, l.seq)
	if err := os.Rename(l.path, name); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			l.lost(errMoved) // deleted under us: relocate saves it
			return
		}
		// Write at least an eighth of a file more before trying again, so a
		// rename that keeps failing neither spins nor logs per record.
		l.retryRot = l.wsize + max(l.maxBytes/8, 1)
		l.log.Error("ledger: rotation failed; still writing to the current file", "path", l.path, "err", err)
		return
	}
	if fi, err := os.Stat(name); err != nil || !os.SameFile(fi, l.fi) {
		// The path named another file when it was renamed: ours was
		// replaced just before. Put the stranger aside again; relocate
		// saves our records from the open descriptor under this name.
		if err == nil {
			aside := replacedName(l.path)
			if rerr := os.Rename(name, aside); rerr == nil {
				l.log.Error("ledger: the ledger path named a file this writer did not write; moved it aside, untouched",
					"path", l.path, "aside", aside)
			}
		}
		l.lost(errMoved)
		return
	}
	_ = l.f.Close() // fsync'd already; a close error changes nothing on disk
	l.f, l.fi, l.size, l.wsize, l.retryRot = nil, nil, 0, 0, 0
	l.rotations.Add(1)
	if l.cp != nil {
		l.postCheckpoint(true) // the tree at the end of the rotated file
	}
	f, err := l.open(l.path)
	var fi os.FileInfo
	if err == nil {
		fi, err = f.Stat()
		if err == nil {
			err = syncDir(l.dir) // makes both the rename and the new name durable
		}
		if err != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		l.unacked = 0
		l.fail(fmt.Errorf("ledger %s: start new file after rotation: %w", l.path, err))
		return
	}
	l.f, l.fi = f, fi
}

// RotatedName is the name a full ledger file gets: the path, a dot and the
// seq of its last record, zero-padded so that names sort in chain order.
func RotatedName(path string, lastSeq uint64) string {
	return fmt.Sprintf("%s.%020d", path, lastSeq)
}

// Files lists the ledger's files in chain order: the rotated files, oldest
// first, then path itself if it exists.
func Files(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	type rotated struct {
		name string
		seq  uint64
	}
	var rs []rotated
	current := false
	for _, e := range entries {
		name := e.Name()
		if name == base {
			current = true
			continue
		}
		suffix, ok := strings.CutPrefix(name, base+".")
		if !ok || len(suffix) != 20 || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(suffix, 10, 64)
		if err != nil {
			continue
		}
		rs = append(rs, rotated{filepath.Join(dir, name), seq})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	out := make([]string, 0, len(rs)+1)
	for _, r := range rs {
		out = append(out, r.name)
	}
	if current {
		out = append(out, path)
	}
	return out, nil
}

// syncDir fsyncs a directory so that a create or rename in it survives a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
