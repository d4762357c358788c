package ledgerdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
)

// Defaults for [Options].
const (
	DefaultBatch    = 1000
	DefaultPoll     = 200 * time.Millisecond
	DefaultRetryMax = 30 * time.Second
	// DefaultRetain keeps shipped rotated files an hour: long enough to
	// look at one locally after an incident, short enough that the disk
	// holds an hour of records beyond what is not yet shipped.
	DefaultRetain = time.Hour
)

const (
	batchBytes = 4 << 20 // about this much line data per transaction
	maxQueued  = 256     // checkpoint log entries read ahead
	heartbeat  = 10 * time.Second
	txTimeout  = time.Minute
	// ApplicationName names the shipper's connection in pg_stat_activity.
	ApplicationName = "pare-ledger-shipper"
)

// Options configure a [Shipper].
type Options struct {
	// Path is the ledger file; its rotated files and checkpoint log are
	// found beside it.
	Path string
	// DSN is the PostgreSQL connection string (postgres://... or
	// key=value). Keep the password out of it: the driver reads
	// PGPASSWORD and PGPASSFILE.
	DSN string
	// Origin is the ledger's origin (ledger.Ledger.Origin): the instance
	// its rows are keyed by. Required.
	Origin string
	// Head returns the seq and chain hash of the writer's last durable
	// record (ledger.Ledger.Head); nothing after it is shipped. nil: every
	// complete line is (a ledger no writer has open).
	Head func() (uint64, string)
	// Signer signs the shipped marker written before retention deletes a
	// file (the ledger's own key). nil: no file is ever deleted.
	Signer note.Signer
	// Retain keeps a shipped rotated file at least this long after it was
	// rotated (its modification time); negative: never delete.
	Retain time.Duration
	// Batch bounds the records of one transaction. Default DefaultBatch.
	Batch int
	// Poll is how often to look for new records once caught up, and the
	// first wait after a failure. Default DefaultPoll.
	Poll time.Duration
	// RetryMax bounds the wait between attempts while PostgreSQL fails.
	// Default DefaultRetryMax.
	RetryMax time.Duration
	// Service and Host are recorded with the instance, for people looking
	// at the database.
	Service, Host string
	// Logger receives state changes and errors (never a record's
	// content). Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of lag and retention. Default time.Now.
	Now func() time.Time
}

// Stats are what the metrics show.
type Stats struct {
	// Durable is the writer's durable head as last seen; Shipped the last
	// record the database confirmed (0 before the first contact).
	Durable, Shipped uint64
	// LagSeconds is the age of the oldest durable record not yet shipped
	// (0 when caught up or before the first contact).
	LagSeconds float64
	// Records and Checkpoints count rows this process shipped; Errors its
	// failed attempts; FilesDeleted the rotated files retention deleted.
	Records, Checkpoints, Errors, FilesDeleted uint64
	// LastContact is the last successful round trip to the database (a
	// shipment, or the heartbeat while there is nothing to ship).
	LastContact time.Time
	// Stopped is set while shipping cannot go on without a person: the
	// database holds another history under this origin, the local files
	// do not chain, or the schema is newer than this binary.
	Stopped string
}

// A Shipper copies one ledger's records and checkpoints into PostgreSQL.
// Run it beside the ledger's writer; it only reads the files.
type Shipper struct {
	opt  Options
	cfg  *pgx.ConnConfig
	sink string
	log  *slog.Logger
	now  func() time.Time

	// Owned by Run.
	cur         *cursor
	logc        *logCursor
	shipped     uint64 // records 1..shipped are in the database
	shippedHash string
	cpShipped   int64      // largest checkpoint in the database
	batch       []record   // read, not yet confirmed
	queue       []logEntry // checkpoint log entries read, not yet shipped
	months      map[time.Time]bool
	lastContact time.Time
	lastRetain  time.Time
	keptWhy     string // why retention last stopped, logged once

	mu    sync.Mutex
	stats Stats

	records, checkpoints, errs, deleted atomic.Uint64
}

// New checks the options and parses the DSN; it does not connect.
func New(opt Options) (*Shipper, error) {
	if opt.Path == "" {
		return nil, errors.New("ledger sink: no ledger path")
	}
	if !strings.HasPrefix(opt.Origin, ledger.OriginPrefix) {
		return nil, fmt.Errorf("ledger sink: origin %q is not a ledger origin (the ledger needs a signing key)", opt.Origin)
	}
	cfg, err := pgx.ParseConfig(opt.DSN)
	if err != nil {
		// pgx's parse errors may quote the DSN, password included.
		return nil, errors.New("ledger sink: the DSN cannot be parsed (want postgres://user@host/db or key=value pairs)")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	cfg.RuntimeParams["application_name"] = ApplicationName
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	if opt.Poll <= 0 {
		opt.Poll = DefaultPoll
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = DefaultRetryMax
	}
	s := &Shipper{opt: opt, cfg: cfg, sink: Sink(cfg), log: opt.Logger, now: opt.Now, months: map[time.Time]bool{}}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Sink names a database without credentials: postgres://host:port/db.
func Sink(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if !strings.HasPrefix(host, "/") {
		host = net.JoinHostPort(host, strconv.Itoa(int(cfg.Port)))
	}
	s := "postgres://" + host + "/" + cfg.Database
	return strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s)
}

// Stats returns the shipper's counters and state.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.Records, st.Checkpoints, st.Errors, st.FilesDeleted = s.records.Load(), s.checkpoints.Load(), s.errs.Load(), s.deleted.Load()
	return st
}

// durable is the writer's durable head.
func (s *Shipper) durable() uint64 {
	if s.opt.Head == nil {
		return ^uint64(0)
	}
	seq, _ := s.opt.Head()
	return seq
}

// observe updates the state the metrics read.
func (s *Shipper) observe(stopped error) {
	now := s.now()
	d := s.durable()
	if d == ^uint64(0) {
		d = s.shipped + uint64(len(s.batch))
	}
	lag := 0.0
	if s.cur != nil && d > s.shipped && len(s.batch) > 0 {
		lag = now.Sub(s.batch[0].time).Seconds()
		if lag < 0 {
			lag = 0
		}
	}
	s.mu.Lock()
	s.stats.Durable, s.stats.Shipped, s.stats.LagSeconds, s.stats.LastContact = d, s.shipped, lag, s.lastContact
	s.stats.Stopped = ""
	if stopped != nil {
		s.stats.Stopped = stopped.Error()
	}
	s.mu.Unlock()
}

// Run ships until ctx is done. It never returns an error: a database that
// is down is retried with backoff (the local ledger carries on), and a
// state that needs a person (a fork, local files that do not chain) is
// logged, shown in Stats.Stopped, and retried slowly in case the person
// fixed it.
func (s *Shipper) Run(ctx context.Context) {
	wait := s.opt.Poll
	var lastErr string
	var lastLog time.Time
	for {
		progressed, err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		s.errs.Add(1)
		if progressed {
			wait = s.opt.Poll
		}
		stop := errors.Is(err, ErrFork) || errors.Is(err, errLocal) || errors.Is(err, ErrSchemaNewer)
		if stop {
			wait = s.opt.RetryMax
		}
		if msg := err.Error(); msg != lastErr || s.now().Sub(lastLog) > time.Minute {
			if stop {
				s.log.Error("ledger shipping stopped: a person must look; the local ledger keeps every record and nothing is deleted",
					"sink", s.sink, "err", err)
			} else {
				s.log.Warn("ledger shipping failed; retrying (the local ledger carries on)", "sink", s.sink, "err", err)
			}
			lastErr, lastLog = msg, s.now()
		}
		// What is unshipped can still be read, so the lag stays known
		// while the database is away.
		if !stop && s.cur != nil && len(s.batch) == 0 {
			s.batch, _ = s.cur.read(s.opt.Batch, batchBytes, s.durable())
		}
		if stop {
			s.observe(err)
		} else {
			s.observe(nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.opt.RetryMax)
	}
}

// Drain ships what is left — every durable record and checkpoint the
// files hold — and returns once the database has all of it, or ctx ends.
// For a sidecar's shutdown, after Run returned and the ledger's Close
// wrote its final checkpoint: a pod deleted with its volume then loses
// nothing. Not concurrently with Run.
func (s *Shipper) Drain(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.cfg)
	if err != nil {
		return fmt.Errorf("drain: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := s.resume(ctx, conn); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	defer s.observe(nil)
	for {
		did, err := s.step(ctx, conn)
		if err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		if did {
			continue
		}
		if s.opt.Head == nil || s.shipped >= s.durable() {
			return nil
		}
		// Durable records not read yet: the files moved under the
		// cursor (a rotation); look again.
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain: records %d..%d not shipped: %w", s.shipped+1, s.durable(), ctx.Err())
		case <-time.After(s.opt.Poll):
		}
	}
}

// session connects, resumes from the database's head and ships until an
// error. progressed: something was shipped.
func (s *Shipper) session(ctx context.Context) (progressed bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout+5*time.Second)
	conn, err := pgx.ConnectConfig(cctx, s.cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := s.resume(ctx, conn); err != nil {
		return false, err
	}
	s.log.Info("ledger shipping", "sink", s.sink, "origin", s.opt.Origin, "from_seq", s.shipped+1)
	for {
		if err := ctx.Err(); err != nil {
			return progressed, err
		}
		did, err := s.step(ctx, conn)
		if err != nil {
			return progressed, err
		}
		progressed = progressed || did
		s.observe(nil)
		if !did {
			if err := s.idle(ctx, conn); err != nil {
				return progressed, err
			}
			select {
			case <-ctx.Done():
				return progressed, ctx.Err()
			case <-time.After(s.opt.Poll):
			}
		}
	}
}

// resume migrates, registers the instance and reconciles what this
// process believes was shipped with what the database says.
func (s *Shipper) resume(ctx context.Context, conn *pgx.Conn) error {
	tctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	if _, err := Migrate(tctx, conn); err != nil {
		return err
	}
	if _, err := conn.Exec(tctx, `INSERT INTO pare_ledger_instances (origin, service, host) VALUES ($1, $2, $3)
		ON CONFLICT (origin) DO NOTHING`, s.opt.Origin, column(s.opt.Service), column(s.opt.Host)); err != nil {
		return fmt.Errorf("register %s: %w", s.opt.Origin, err)
	}
	var seq, cp int64
	var hash string
	if err := conn.QueryRow(tctx, `SELECT shipped_seq, shipped_hash, checkpoint_size FROM pare_ledger_instances WHERE origin = $1`,
		s.opt.Origin).Scan(&seq, &hash, &cp); err != nil {
		return fmt.Errorf("head of %s: %w", s.opt.Origin, err)
	}
	s.lastContact = s.now()
	db := uint64(seq)
	switch {
	case s.cur != nil && db == s.shipped && hash == s.shippedHash:
		// Where we left it: the batch in hand is retried.
	case s.cur != nil && len(s.batch) > 0 && db == s.batch[len(s.batch)-1].seq && hash == s.batch[len(s.batch)-1].hash:
		// The last commit went through though its answer was lost.
		s.shipped, s.shippedHash, s.batch = db, hash, nil
	default:
		s.cur, s.batch, s.queue = newCursor(s.opt.Path, db, hash), nil, nil
		s.logc = &logCursor{name: ledger.CheckpointLogName(s.opt.Path)}
		s.shipped, s.shippedHash = db, hash
	}
	s.cpShipped = cp
	if err := EnsurePartitions(tctx, conn, s.now(), s.now()); err != nil {
		return err
	}
	return nil
}

// step ships the next batch and the checkpoints it completes. did: a
// transaction committed.
func (s *Shipper) step(ctx context.Context, conn *pgx.Conn) (did bool, err error) {
	var readErr error // what stopped the read: the records before it still go
	if len(s.batch) == 0 {
		s.batch, readErr = s.cur.read(s.opt.Batch, batchBytes, s.durable())
		if readErr != nil && len(s.batch) == 0 {
			return false, readErr
		}
	}
	end, endHash := s.shipped, s.shippedHash
	if n := len(s.batch); n > 0 {
		end, endHash = s.batch[n-1].seq, s.batch[n-1].hash
	}
	if len(s.queue) < maxQueued {
		es, err := s.logc.read(maxQueued-len(s.queue), s.opt.Origin)
		if err != nil {
			return false, err
		}
		for _, e := range es {
			if e.size > s.cpShipped {
				s.queue = append(s.queue, e)
			}
		}
	}
	// Checkpoints go with the records they cover, never ahead of them: a
	// checkpoint in the database over rows it lacks means rows deleted.
	ncp := 0
	for ncp < len(s.queue) && uint64(s.queue[ncp].size) <= end {
		ncp++
	}
	if len(s.batch) == 0 && ncp == 0 {
		return false, nil
	}
	if err := s.ensureMonths(ctx, conn); err != nil {
		return false, err
	}
	if err := s.commit(ctx, conn, s.queue[:ncp], end, endHash); err != nil {
		return false, err
	}
	s.lastContact = s.now()
	s.records.Add(uint64(len(s.batch)))
	s.checkpoints.Add(uint64(ncp))
	s.shipped, s.shippedHash = end, endHash
	if ncp > 0 {
		s.cpShipped = max(s.cpShipped, s.queue[ncp-1].size)
	}
	s.queue = append(s.queue[:0], s.queue[ncp:]...)
	s.batch = nil
	if ncp > 0 || s.now().Sub(s.lastRetain) > time.Second {
		if err := s.retain(ctx, conn); err != nil {
			return true, err
		}
	}
	if readErr != nil {
		return true, readErr
	}
	// The next records in hand at once: the lag is the age of the first
	// of them, and it is known between transactions too.
	if s.batch, err = s.cur.read(s.opt.Batch, batchBytes, s.durable()); err != nil && len(s.batch) == 0 {
		return true, err
	}
	return true, nil
}

// ensureMonths makes the partitions of the batch's months before the
// transaction that fills them.
func (s *Shipper) ensureMonths(ctx context.Context, conn *pgx.Conn) error {
	var months []time.Time
	for _, r := range s.batch {
		if m := monthStart(r.time); !s.months[m] {
			s.months[m] = true
			months = append(months, m)
		}
	}
	if len(months) == 0 {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	if err := EnsurePartitions(tctx, conn, s.now(), months...); err != nil {
		for _, m := range months {
			delete(s.months, m)
		}
		return err
	}
	return nil
}

var recordColumns = []string{"origin", "seq", "time", "kind", "decision_id", "subject", "vendor", "purpose", "service", "prev", "line"}

// commit ships the batch and cps in one transaction, moving the head from
// (s.shipped, s.shippedHash) to (end, endHash) only if it is still there.
func (s *Shipper) commit(ctx context.Context, conn *pgx.Conn, cps []logEntry, end uint64, endHash string) error {
	ctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("ship: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
	var seq int64
	var hash string
	if err := tx.QueryRow(ctx, `SELECT shipped_seq, shipped_hash FROM pare_ledger_instances WHERE origin = $1 FOR UPDATE`,
		s.opt.Origin).Scan(&seq, &hash); err != nil {
		return fmt.Errorf("ship: head: %w", err)
	}
	if uint64(seq) != s.shipped || hash != s.shippedHash {
		// Another process ships this origin, or someone moved the head:
		// resume from what the database says.
		s.cur = nil
		return fmt.Errorf("ship: the database's head of %s moved to seq %d behind this shipper's back", s.opt.Origin, seq)
	}
	if len(s.batch) > 0 {
		rows := s.batch
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"pare_ledger_records"}, recordColumns,
			pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
				r := &rows[i]
				return []any{s.opt.Origin, int64(r.seq), r.time, column(r.kind), column(r.decisionID), column(r.subject),
					column(r.vendor), column(r.purpose), column(r.service), column(r.prev), r.line}, nil
			}))
		if err != nil {
			return fmt.Errorf("ship records %d..%d: %w", rows[0].seq, end, err)
		}
		if n != int64(len(rows)) {
			return fmt.Errorf("ship records %d..%d: %d rows copied", rows[0].seq, end, n)
		}
	}
	cpMax := int64(-1)
	for _, e := range cps {
		tag, err := tx.Exec(ctx, `INSERT INTO pare_ledger_checkpoints (origin, size, entry) VALUES ($1, $2, $3)
			ON CONFLICT (origin, size) DO NOTHING`, s.opt.Origin, e.size, e.line)
		if err != nil {
			return fmt.Errorf("ship checkpoint %d: %w", e.size, err)
		}
		if tag.RowsAffected() == 0 {
			var have []byte
			if err := tx.QueryRow(ctx, `SELECT entry FROM pare_ledger_checkpoints WHERE origin = $1 AND size = $2`,
				s.opt.Origin, e.size).Scan(&have); err != nil {
				return fmt.Errorf("ship checkpoint %d: %w", e.size, err)
			}
			h, err := parseLogEntry(have, s.opt.Origin)
			if err != nil || string(h.cp.Note) != string(e.cp.Note) {
				return fmt.Errorf("%w: the database holds another checkpoint of %d records for %s", ErrFork, e.size, s.opt.Origin)
			}
		}
		cpMax = max(cpMax, e.size)
	}
	var lastTime, firstTime any
	if n := len(s.batch); n > 0 {
		lastTime = s.batch[n-1].time
		if s.batch[0].seq == 1 {
			firstTime = s.batch[0].time
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE pare_ledger_instances SET shipped_seq = $2, shipped_hash = $3,
		shipped_time = coalesce($4, shipped_time), first_time = coalesce(first_time, $5),
		checkpoint_size = greatest(checkpoint_size, $6), updated_at = now() WHERE origin = $1`,
		s.opt.Origin, int64(end), endHash, lastTime, firstTime, cpMax); err != nil {
		return fmt.Errorf("ship: move head: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("ship: commit: %w", err)
	}
	return nil
}

// idle runs while there is nothing to ship: retention, and a heartbeat
// that proves the connection (and shows the instance alive centrally).
func (s *Shipper) idle(ctx context.Context, conn *pgx.Conn) error {
	if s.now().Sub(s.lastRetain) > heartbeat/2 {
		if err := s.retain(ctx, conn); err != nil {
			return err
		}
	}
	if s.now().Sub(s.lastContact) < heartbeat {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	if _, err := conn.Exec(tctx, `UPDATE pare_ledger_instances SET updated_at = now() WHERE origin = $1`, s.opt.Origin); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	s.lastContact = s.now()
	return nil
}

// retain deletes the oldest rotated files, in order, while each is
// shipped (its last record and the checkpoint of that size are in the
// database) and older than Retain. Before each deletion it writes the
// signed marker that accounts for it (ledger.Shipped), so that the
// ledger's own verify still passes on what remains.
func (s *Shipper) retain(ctx context.Context, conn *pgx.Conn) error {
	s.lastRetain = s.now()
	if s.opt.Signer == nil || s.opt.Retain < 0 {
		return nil
	}
	files, err := ledger.Files(s.opt.Path)
	if err != nil {
		return fmt.Errorf("%w: %v", errLocal, err)
	}
	for _, name := range files {
		if name == s.opt.Path {
			return nil
		}
		last, err := rotatedSeq(s.opt.Path, name)
		if err != nil {
			return fmt.Errorf("%w: %v", errLocal, err)
		}
		if last > s.shipped {
			return nil
		}
		fi, err := os.Stat(name)
		if err != nil {
			return fmt.Errorf("%w: %v", errLocal, err)
		}
		if s.now().Sub(fi.ModTime()) < s.opt.Retain {
			return nil
		}
		var entry []byte
		tctx, cancel := context.WithTimeout(ctx, txTimeout)
		err = conn.QueryRow(tctx, `SELECT entry FROM pare_ledger_checkpoints WHERE origin = $1 AND size = $2`,
			s.opt.Origin, int64(last)).Scan(&entry)
		cancel()
		if errors.Is(err, pgx.ErrNoRows) {
			s.kept(name, "the checkpoint of its last record is not in the database")
			return nil
		}
		if err != nil {
			return fmt.Errorf("retention: %w", err)
		}
		e, err := parseLogEntry(entry, s.opt.Origin)
		if err != nil {
			return fmt.Errorf("%w: the database's checkpoint of %d records: %v", ErrFork, last, err)
		}
		r, err := lastRecord(name)
		if err != nil {
			return err
		}
		if r.seq != last || r.hash != e.last {
			return fmt.Errorf("%w: %s ends with record %d hashing to %.12s…, the database's checkpoint says %.12s…", ErrFork, name, r.seq, r.hash, e.last)
		}
		msg, err := ledger.SignShipped(s.opt.Signer, ledger.Shipped{Origin: s.opt.Origin, Seq: last, Last: e.last,
			Root: e.cp.Root, Time: r.time, Sink: s.sink})
		if err != nil {
			return fmt.Errorf("%w: %v", errLocal, err)
		}
		if err := ledger.WriteShipped(s.opt.Path, msg); err != nil {
			return fmt.Errorf("%w: %v", errLocal, err)
		}
		if err := os.Remove(name); err != nil {
			return fmt.Errorf("%w: retention: %v", errLocal, err)
		}
		if err := syncDir(filepath.Dir(name)); err != nil {
			return fmt.Errorf("%w: retention: %v", errLocal, err)
		}
		s.deleted.Add(1)
		s.keptWhy = ""
		s.log.Info("ledger file deleted: shipped, and kept its retention time", "file", name, "through_seq", last, "sink", s.sink)
	}
	return nil
}

func (s *Shipper) kept(name, why string) {
	if s.keptWhy != why {
		s.log.Warn("ledger file kept", "file", name, "why", why)
		s.keptWhy = why
	}
}

// lastRecord reads the last record of a (rotated, complete) file.
func lastRecord(name string) (record, error) {
	f, err := os.Open(name)
	if err != nil {
		return record{}, fmt.Errorf("%w: %v", errLocal, err)
	}
	defer f.Close()
	lr := newLineReader(f)
	var last []byte
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return record{}, fmt.Errorf("%w: %s: %v", errLocal, name, err)
		}
		last = append(last[:0], line...)
	}
	if last == nil {
		return record{}, fmt.Errorf("%w: %s holds no record", errLocal, name)
	}
	r, err := parseRecord(last)
	if err != nil {
		return record{}, fmt.Errorf("%w: %s: last line: %v", errLocal, name, err)
	}
	return r, nil
}

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
