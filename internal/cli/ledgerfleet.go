package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/ledgerdb"
)

// The ledger commands over the fleet's database (--dsn): verify, query,
// report and migrate. Exit codes as for a ledger file: 0 ok, 1 the
// records have a problem, 2 usage or a database that cannot be read.

// fleetTimeout bounds a command against the database; verification
// streams every record, so it gets longer.
const (
	fleetTimeout  = 5 * time.Minute
	verifyTimeout = 2 * time.Hour
)

func fleetConfig(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("--dsn: not a PostgreSQL connection string (postgres://user@host/db)")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	cfg.RuntimeParams["application_name"] = "pare-ledger"
	return cfg, nil
}

// fleetVerify is `ledger verify --dsn`.
func fleetVerify(fs *flag.FlagSet, evf *evidenceFlags, origin string, asJSON bool, stdout, stderr io.Writer) int {
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy ledger verify: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "--dsn verifies the fleet's database: give no ledger file")
	}
	if evf.checkpoint != "" {
		return fail(exitUsage, "--checkpoint holds one ledger's files to a witness; with --dsn give the keys (--pubkey)")
	}
	cfg, err := fleetConfig(evf.dsn)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	opt, err := evf.options(nil)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	res, err := ledgerdb.Verify(ctx, cfg, ledgerdb.VerifyOptions{Verifiers: opt.Verifiers, Origin: origin})
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	}
	if !res.OK() {
		for _, p := range res.Problems {
			fmt.Fprintf(stderr, "proxy ledger verify: %s\n", p)
		}
		fmt.Fprintf(stderr, "proxy ledger verify: %d problem(s) in the fleet's ledger database\n", len(res.Problems))
		if !res.Signed {
			fmt.Fprintln(stderr, "  (checkpoint signatures not checked: give --pubkey)")
		}
		return exitFail
	}
	if asJSON {
		return exitOK
	}
	who := "signatures NOT checked (give --pubkey, once per sidecar key)"
	if res.Signed {
		who = "signatures verified"
	}
	fmt.Fprintf(stdout, "ok: %d instances, %d records, chains intact, %d checkpoints match, %s\n",
		len(res.Instances), res.Records, res.Checkpoints, who)
	for _, in := range res.Instances {
		fmt.Fprintf(stdout, "  %s: seq %d..%d, %d checkpoints match, latest covers 1..%d, %d records after it\n",
			in.Origin, in.FirstSeq, in.LastSeq, in.Checked, max(in.Latest, 0), in.After)
	}
	return exitOK
}

// fleetRecords is what `ledger query --dsn` answers from: the records of
// every instance that f selects, from a database that verifies (unless
// --verify=false).
func fleetRecords(fs *flag.FlagSet, f ledger.Filter, evf *evidenceFlags, stderr io.Writer) ([]ledger.Record, int) {
	conn, code := fleetOpen(fs, evf, stderr)
	if code != exitOK {
		return nil, code
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	recs, err := ledgerdb.Query(ctx, conn, f)
	if errors.Is(err, ledgerdb.ErrRowMismatch) {
		fmt.Fprintf(stderr, "proxy %s: %v; run 'proxy ledger verify --dsn'\n", fs.Name(), err)
		return nil, exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	return recs, exitOK
}

// fleetReportRecords is fleetRecords for a report, whose period is dates:
// an open start is the fleet's first record, an open end now.
func fleetReportRecords(fs *flag.FlagSet, f *ledger.Filter, now time.Time, evf *evidenceFlags, stderr io.Writer) ([]ledger.Record, int) {
	conn, code := fleetOpen(fs, evf, stderr)
	if code != exitOK {
		return nil, code
	}
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	if f.Since.IsZero() {
		start, err := ledgerdb.Start(ctx, conn)
		if err != nil {
			fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
			return nil, exitUsage
		}
		f.Since = start
		if f.Since.IsZero() {
			f.Since = now
		}
	}
	if f.Until.IsZero() {
		f.Until = now
	}
	if f.Until.Before(f.Since) {
		fmt.Fprintf(stderr, "proxy %s: --until %s is before --since %s\n", fs.Name(), f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
		return nil, exitUsage
	}
	recs, err := ledgerdb.Query(ctx, conn, *f)
	if errors.Is(err, ledgerdb.ErrRowMismatch) {
		fmt.Fprintf(stderr, "proxy %s: %v; run 'proxy ledger verify --dsn'\n", fs.Name(), err)
		return nil, exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	return recs, exitOK
}

// fleetOpen checks the flags, verifies the database when asked (an answer
// from a database someone changed could say "nothing was disclosed"
// falsely) and connects.
func fleetOpen(fs *flag.FlagSet, evf *evidenceFlags, stderr io.Writer) (*pgx.Conn, int) {
	name := fs.Name()
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "proxy %s: --dsn answers from the fleet's database: give no ledger file\n", name)
		return nil, exitUsage
	}
	cfg, err := fleetConfig(evf.dsn)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", name, err)
		return nil, exitUsage
	}
	if evf.verifyDB {
		opt, err := evf.options(nil)
		if err != nil {
			fmt.Fprintf(stderr, "proxy %s: %v\n", name, err)
			return nil, exitUsage
		}
		ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
		res, err := ledgerdb.Verify(ctx, cfg, ledgerdb.VerifyOptions{Verifiers: opt.Verifiers})
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "proxy %s: %v\n", name, err)
			return nil, exitUsage
		}
		if !res.OK() {
			for _, p := range res.Problems {
				fmt.Fprintf(stderr, "proxy %s: %s\n", name, p)
			}
			fmt.Fprintf(stderr, "proxy %s: the fleet's ledger database does not verify; no answer is given from it\n", name)
			return nil, exitFail
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout+5*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", name, err)
		return nil, exitUsage
	}
	return conn, exitOK
}

// shippedAway says (and reports) that records were shipped and deleted
// here: a local answer would leave them out.
func shippedAway(name string, ev *ledger.Evidence, stderr io.Writer) bool {
	if ev == nil || ev.Shipped == nil {
		return false
	}
	fmt.Fprintf(stderr, "proxy %s: records 1..%d of this ledger were shipped to %s and deleted here: "+
		"an answer from these files would leave them out; ask the fleet's database (--dsn)\n", name, ev.Shipped.Seq, ev.Shipped.Sink)
	return true
}

// ledgerMigrate is `ledger migrate --dsn`: the schema, for a database
// whose sidecars may not create tables, and the partitions of the coming
// months.
func ledgerMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("dsn", "", "the fleet's ledger database (required)")
	ahead := fs.Int("months-ahead", 3, "create the monthly partitions of this many coming months")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy ledger migrate: "+format+"\n", a...)
		return code
	}
	if *dsn == "" || fs.NArg() > 0 || *ahead < 0 || *ahead > 24 {
		return fail(exitUsage, "want --dsn DSN and --months-ahead 0..24")
	}
	cfg, err := fleetConfig(*dsn)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	defer conn.Close(context.Background())
	before, err := ledgerdb.Migrate(ctx, conn)
	if err != nil {
		return fail(exitFail, "%v", err)
	}
	now := time.Now()
	var months []time.Time
	for i := 0; i <= *ahead; i++ {
		months = append(months, now.AddDate(0, i, 0))
	}
	if err := ledgerdb.EnsurePartitions(ctx, conn, now, months...); err != nil {
		return fail(exitFail, "%v", err)
	}
	fmt.Fprintf(stdout, "ok: schema version %d (was %d), partitions through %s\n", ledgerdb.SchemaVersion, before,
		now.AddDate(0, *ahead, 0).Format("2006-01"))
	return exitOK
}
