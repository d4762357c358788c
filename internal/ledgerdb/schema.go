package ledgerdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrations are applied in order, each once, each in the transaction
// that records it in pare_ledger_schema. Never edit one that has shipped:
// add the next.
var migrations = []string{
	// 1: instances, records partitioned by month, checkpoints.
	`
CREATE TABLE pare_ledger_instances (
	origin          text PRIMARY KEY,
	-- records 1..shipped_seq are in pare_ledger_records; shipped_hash is
	-- the chain hash of record shipped_seq (the next record's prev)
	shipped_seq     bigint NOT NULL DEFAULT 0,
	shipped_hash    text NOT NULL DEFAULT '',
	shipped_time    timestamptz,
	first_time      timestamptz,
	-- the largest checkpoint shipped (-1: none)
	checkpoint_size bigint NOT NULL DEFAULT -1,
	service         text NOT NULL DEFAULT '',
	host            text NOT NULL DEFAULT '',
	registered_at   timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pare_ledger_records (
	origin      text NOT NULL,
	seq         bigint NOT NULL,
	time        timestamptz NOT NULL,
	kind        text NOT NULL,
	decision_id text NOT NULL,
	subject     text NOT NULL,
	vendor      text NOT NULL,
	purpose     text NOT NULL,
	service     text NOT NULL,
	prev        text NOT NULL,
	-- the record's line as the ledger wrote it, without its newline
	line        bytea NOT NULL,
	PRIMARY KEY (origin, seq, time)
) PARTITION BY RANGE (time);
CREATE INDEX pare_ledger_records_subject ON pare_ledger_records (subject, time);
CREATE INDEX pare_ledger_records_vendor ON pare_ledger_records (vendor, time);
CREATE INDEX pare_ledger_records_decision ON pare_ledger_records (decision_id);
-- records outside the months partitions are made for (a clock far off)
CREATE TABLE pare_ledger_records_default PARTITION OF pare_ledger_records DEFAULT;

CREATE TABLE pare_ledger_checkpoints (
	origin text NOT NULL,
	size   bigint NOT NULL,
	-- the checkpoint log line as the ledger wrote it (ledger.LogEntry:
	-- the signed note, the tree's frontier, the chain hash of record size)
	entry  bytea NOT NULL,
	PRIMARY KEY (origin, size)
);
`,
}

// SchemaVersion is the schema version this binary creates and reads.
var SchemaVersion = len(migrations)

// lockMigrate and lockPartitions are advisory lock keys: concurrent
// sidecars starting together migrate and create partitions one at a time.
const (
	lockMigrate    = 0x7061726501 // "pare" 1
	lockPartitions = 0x7061726502
)

// ErrSchemaNewer: the database was migrated by a newer binary. Writing
// into a schema this binary does not know could lose what the newer one
// relies on, so it refuses.
var ErrSchemaNewer = errors.New("ledger database: schema is newer than this binary")

// Migrate brings the schema to SchemaVersion, in one transaction, and
// returns the version found before. Safe to run from many processes at
// once.
func Migrate(ctx context.Context, conn *pgx.Conn) (before int, err error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockMigrate)); err != nil {
		return 0, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS pare_ledger_schema (
		version    int PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pare_ledger_schema`).Scan(&before); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if before > SchemaVersion {
		return before, fmt.Errorf("%w (version %d, this binary knows %d)", ErrSchemaNewer, before, SchemaVersion)
	}
	for v := before + 1; v <= SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
			return before, fmt.Errorf("migrate to version %d: %w", v, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pare_ledger_schema (version) VALUES ($1)`, v); err != nil {
			return before, fmt.Errorf("migrate to version %d: %w", v, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return before, fmt.Errorf("migrate: %w", err)
	}
	return before, nil
}

// CheckSchema says whether the database holds the schema this binary
// reads: the central commands read, they never migrate.
func CheckSchema(ctx context.Context, conn *pgx.Conn) error {
	var v int
	err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM pare_ledger_schema`).Scan(&v)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return errors.New("ledger database: no pare ledger schema here (no sidecar has shipped to it; 'proxy ledger migrate --dsn' creates it)")
	}
	if err != nil {
		return fmt.Errorf("ledger database: %w", err)
	}
	switch {
	case v > SchemaVersion:
		return fmt.Errorf("%w (version %d, this binary knows %d)", ErrSchemaNewer, v, SchemaVersion)
	case v < SchemaVersion:
		return fmt.Errorf("ledger database: schema version %d, this binary reads %d: let a sidecar or 'proxy ledger migrate' bring it up to date", v, SchemaVersion)
	}
	return nil
}

// Partitions are made for records of months in this window around the
// shipper's clock; anything else goes to the default partition. The bound
// keeps a ledger whose times were forged from creating a table per month
// of its choosing.
const (
	partitionsBack  = 10 * 12 // months
	partitionsAhead = 2
)

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// PartitionName is the table holding the records of the month of t.
func PartitionName(t time.Time) string {
	return fmt.Sprintf("pare_ledger_records_y%04dm%02d", t.UTC().Year(), int(t.UTC().Month()))
}

// inWindow reports whether a partition is made for the month of t.
func inWindow(t, now time.Time) bool {
	m := monthStart(t)
	return !m.Before(monthStart(now).AddDate(0, -partitionsBack, 0)) && !m.After(monthStart(now).AddDate(0, partitionsAhead, 0))
}

// EnsurePartitions creates the monthly partitions of the months given
// that lie in the window around now, and of the next month of each (so a
// month's partition exists before its first record). Created one process
// at a time (an advisory lock), each only if missing. A partition that
// cannot be made (rows of its month already in the default partition) is
// skipped: its records stay in the default one, where queries find them.
func EnsurePartitions(ctx context.Context, conn *pgx.Conn, now time.Time, months ...time.Time) error {
	want := map[time.Time]bool{}
	for _, m := range months {
		for _, mm := range []time.Time{monthStart(m), monthStart(m).AddDate(0, 1, 0)} {
			if inWindow(mm, now) {
				want[mm] = true
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	var missing []time.Time
	for m := range want {
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, PartitionName(m)).Scan(&exists); err != nil {
			return fmt.Errorf("partitions: %w", err)
		}
		if !exists {
			missing = append(missing, m)
		}
	}
	for _, m := range missing {
		if err := createPartition(ctx, conn, m); err != nil {
			return err
		}
	}
	return nil
}

func createPartition(ctx context.Context, conn *pgx.Conn, m time.Time) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("partition %s: %w", PartitionName(m), err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockPartitions)); err != nil {
		return fmt.Errorf("partition %s: %w", PartitionName(m), err)
	}
	// The name and bounds come from a time.Time, never from input text.
	sql := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s PARTITION OF pare_ledger_records FOR VALUES FROM ('%s') TO ('%s')`,
		PartitionName(m), m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
	if _, err := tx.Exec(ctx, sql); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23514" { // check_violation: rows in the default partition
			return nil
		}
		return fmt.Errorf("partition %s: %w", PartitionName(m), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("partition %s: %w", PartitionName(m), err)
	}
	return nil
}

// maxColumn bounds the text columns records are found by: a btree entry
// must fit in a page, and an identifier longer than this is rare enough
// that a query filters it again from the line. The line keeps it whole.
const maxColumn = 256

// column is what a record field is stored as in its column: at most
// maxColumn bytes (cut on a rune boundary), NUL (which text columns
// cannot hold) as U+FFFD. Verify holds the columns to the line through
// it too.
func column(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	}
	if len(s) <= maxColumn {
		return s
	}
	n := maxColumn
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
