package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
)

const ledgerUsageText = `Usage: proxy ledger <subcommand> [flags] [LEDGER]

Subcommands:
  verify [--pubkey K] [--checkpoint FILE|URL] [LEDGER]   the chain, and the records held to the signed checkpoints
  verify --dsn DSN [--pubkey K] [--origin O] [--json]    every instance shipped to the fleet's database
  query --subject ID [--vendor V] [--since T] [--until T] [--json] [LEDGER | --dsn DSN]
  report --subject ID [--for subject|staff] [--format html|csv|json|pdf] [--since T] [--until T] [LEDGER | --dsn DSN]
  prove --seq N [--checkpoint FILE|URL] [--pubkey K] [LEDGER]   an inclusion proof of one record (JSON)
  check-proof --pubkey K [PROOF]                         check a proof (stdin when PROOF is - or absent)
  pubkey [--state-dir DIR] [--ledger-key FILE]           print the key that verifies the checkpoints
  keygen --ledger-key FILE                               make a signing key (for a Secret), print its public key
  migrate --dsn DSN [--months-ahead N]                   create or update the fleet database's schema
LEDGER is the ledger file (default pare-ledger.jsonl); its rotated files and its
checkpoint log (LEDGER.checkpoints) are found beside it. verify, query and
report also take --pubkey and --checkpoint. With --dsn they answer from the
fleet's database (serve --ledger-sink), every sidecar at once; query and report
verify it first (--verify=false: an index lookup, each row checked alone).
Run 'proxy ledger <subcommand> -h' for its flags.
`

func runLedger(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		ledgerUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		ledgerUsage(stderr)
		return exitOK
	case "verify":
		return ledgerVerify(args[1:], stdout, stderr)
	case "query":
		return ledgerQuery(args[1:], stdout, stderr)
	case "report":
		return ledgerReport(args[1:], stdout, stderr)
	case "prove":
		return ledgerProve(args[1:], stdout, stderr)
	case "check-proof":
		return ledgerCheckProof(args[1:], stdin, stdout, stderr)
	case "pubkey":
		return ledgerPubkey(args[1:], stdout, stderr)
	case "keygen":
		return ledgerKeygen(args[1:], stdout, stderr)
	case "migrate":
		return ledgerMigrate(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "proxy ledger: unknown subcommand %q (verify, query, report, prove, check-proof, pubkey, keygen, migrate)\n", args[0])
	return exitUsage
}

func ledgerUsage(w io.Writer) { fmt.Fprint(w, ledgerUsageText) }

// ledgerFiles expands the positional arguments: a ledger path stands for its
// rotated files and itself, in chain order. A path with no file at all, a
// directory, or a directory that does not exist is an error: "no records"
// must only ever be said of a ledger that exists.
func ledgerFiles(args []string, def string) ([]string, error) {
	if len(args) == 0 {
		args = []string{def}
	}
	var out []string
	for _, a := range args {
		if fi, err := os.Stat(a); err == nil && fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory: name the ledger file (for example %s)", a, filepath.Join(a, "pare-ledger.jsonl"))
		}
		fs, err := ledger.Files(a)
		if err != nil {
			return nil, fmt.Errorf("ledger %s: %w", a, err)
		}
		if len(fs) == 0 {
			return nil, fmt.Errorf("no ledger at %s: no such file, and no rotated files beside it", a)
		}
		out = append(out, fs...)
	}
	return out, nil
}

// evidenceFlags are the flags that hold a ledger to its checkpoints, and
// (registerFleet) that read the fleet's database instead of files.
type evidenceFlags struct {
	pubkeys    listFlag
	checkpoint string
	dsn        string
	verifyDB   bool
}

func (e *evidenceFlags) registerFleet(fs *flag.FlagSet, withVerify bool) {
	fs.StringVar(&e.dsn, "dsn", "", "the fleet's ledger database (postgres://user@host/db; password from PGPASSWORD or PGPASSFILE) instead of a ledger file")
	if withVerify {
		fs.BoolVar(&e.verifyDB, "verify", true, "with --dsn: verify every instance in the database before answering (false: an index lookup, each row returned checked alone)")
	}
}

func (e *evidenceFlags) register(fs *flag.FlagSet) {
	fs.Var(&e.pubkeys, "pubkey", "verifier key (or a file holding it) the checkpoints must be signed with; repeatable (see 'proxy ledger pubkey')")
	fs.StringVar(&e.checkpoint, "checkpoint", "", "a checkpoint kept outside the ledger directory (the witness file, or the admin URL /debug/ledger/checkpoint)")
}

// options reads the keys and the witness checkpoint. Errors are usage
// errors (exit 2).
func (e *evidenceFlags) options(args []string) (ledger.AuditOptions, error) {
	var opt ledger.AuditOptions
	for _, k := range e.pubkeys {
		v, err := readVerifier(k)
		if err != nil {
			return opt, err
		}
		opt.Verifiers = append(opt.Verifiers, v)
	}
	if e.checkpoint != "" {
		b, err := readCheckpointArg(e.checkpoint)
		if err != nil {
			return opt, err
		}
		opt.Witness = b
	}
	// The checkpoint log of the ledger named: with several paths, whose
	// logs differ, only the witness is used.
	path := ""
	switch len(args) {
	case 0:
		path = defaultLedger
	case 1:
		path = args[0]
	}
	if path != "" {
		opt.Log = ledger.CheckpointLogName(path)
		// Files deleted once shipped (serve --ledger-sink) are accounted
		// for by the signed marker retention writes beside the ledger.
		if b, err := os.ReadFile(ledger.ShippedName(path)); err == nil {
			opt.Shipped = b
		} else if !errors.Is(err, os.ErrNotExist) {
			return opt, fmt.Errorf("shipped marker: %w", err)
		}
	}
	return opt, nil
}

const defaultLedger = "pare-ledger.jsonl"

// readVerifier takes a verifier key, or a file holding one.
func readVerifier(k string) (note.Verifier, error) {
	if b, err := os.ReadFile(k); err == nil {
		k = strings.TrimSpace(string(b))
	}
	v, err := note.NewVerifier(k)
	if err != nil {
		return nil, fmt.Errorf("--pubkey: want a verifier key (pare-ledger+<hash>+<key>) or a file holding one: %w", err)
	}
	return v, nil
}

// readCheckpointArg reads a checkpoint from a file or an http(s) URL (the
// admin endpoint).
func readCheckpointArg(src string) ([]byte, error) {
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(src)
		if err != nil {
			return nil, fmt.Errorf("--checkpoint: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return nil, fmt.Errorf("--checkpoint %s: %w", src, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("--checkpoint %s: %s", src, resp.Status)
		}
		return b, nil
	}
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, fmt.Errorf("--checkpoint: %w", err)
	}
	return b, nil
}

// audit runs ledger.Audit and prints what is wrong. It returns exitOK, or
// the exit code to stop with. tornOK accepts a torn last line of the last
// file: a live ledger ends in one while a write is in flight.
func audit(name string, files []string, opt ledger.AuditOptions, tornOK bool, stderr io.Writer) (*ledger.VerifyResult, *ledger.Evidence, int) {
	res, ev, err := ledger.Audit(files, opt)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", name, err)
		return nil, nil, exitUsage // unreadable: not a verdict on the ledger
	}
	if !res.OK {
		if tornOK && res.Bad.Problem == ledger.ProblemTorn && res.Bad.File == files[len(files)-1] {
			return res, nil, exitOK
		}
		fmt.Fprintf(stderr, "proxy %s: first bad record: %s\n", name, res.Bad)
		fmt.Fprintf(stderr, "  %d records before it verified (seq %d..%d)\n", res.Records, res.FirstSeq, res.LastSeq)
		return res, ev, exitFail
	}
	if !ev.OK {
		fmt.Fprintf(stderr, "proxy %s: %s: %s\n", name, ev.Problem, ev.Detail)
		if !ev.Signed && ev.Problem != ledger.ProblemMissingStart {
			fmt.Fprintf(stderr, "  (checkpoint signatures not checked: give --pubkey)\n")
		}
		return res, ev, exitFail
	}
	return res, ev, exitOK
}

func ledgerVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var evf evidenceFlags
	evf.register(fs)
	evf.registerFleet(fs, false)
	origin := fs.String("origin", "", "with --dsn: only this instance")
	asJSON := fs.Bool("json", false, "with --dsn: the result as JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if evf.dsn != "" {
		return fleetVerify(fs, &evf, *origin, *asJSON, stdout, stderr)
	}
	files, err := ledgerFiles(fs.Args(), defaultLedger)
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger verify:", err)
		return exitUsage
	}
	opt, err := evf.options(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger verify:", err)
		return exitUsage
	}
	res, ev, code := audit("ledger verify", files, opt, false, stderr)
	if code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "ok: %d records in %d files, seq %d..%d, chain intact; head %s\n",
		res.Records, res.Files, res.FirstSeq, res.LastSeq, res.Head)
	switch {
	case ev.Latest == nil && ev.Witness == nil:
		fmt.Fprintln(stdout, "no checkpoints: the chain alone cannot show records cut from its end (serve writes signed checkpoints)")
	case ev.Latest == nil:
		fmt.Fprintf(stdout, "checkpoint of %d records (%s) matches\n", ev.Witness.Size, ev.Origin)
	default:
		who := "signatures NOT checked (give --pubkey to check who signed them)"
		if ev.Signed {
			who = "signatures verified"
		}
		fmt.Fprintf(stdout, "checkpoints: %d match the records, %s; latest covers seq 1..%d; %d records after it not yet checkpointed\n",
			ev.Checked, who, ev.Latest.Size, ev.After)
		fmt.Fprintf(stdout, "origin %s\n", ev.Origin)
		if sh := ev.Shipped; sh != nil {
			fmt.Fprintf(stdout, "records 1..%d were shipped to %s and deleted here (the shipped marker, signature %s)\n",
				sh.Seq, sh.Sink, map[bool]string{true: "verified", false: "NOT checked"}[ev.Signed])
		}
		if ev.Witness != nil {
			fmt.Fprintf(stdout, "witness %s: checkpoint of %d records matches\n", evf.checkpoint, ev.Witness.Size)
		}
	}
	return exitOK
}

func queryFlags(name string, stderr io.Writer, evf *evidenceFlags) (*flag.FlagSet, *ledger.Filter, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	evf.register(fs)
	evf.registerFleet(fs, true)
	f := &ledger.Filter{}
	fs.StringVar(&f.Subject, "subject", "", "data subject id (required)")
	fs.StringVar(&f.Vendor, "vendor", "", "only this vendor")
	since := fs.String("since", "", "from this time (RFC 3339 or YYYY-MM-DD)")
	until := fs.String("until", "", "until this time (RFC 3339 or YYYY-MM-DD)")
	return fs, f, since, until
}

func parseTimeArg(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 or YYYY-MM-DD", s)
	}
	return t, nil
}

func ledgerQuery(args []string, stdout, stderr io.Writer) int {
	var evf evidenceFlags
	fs, f, since, until := queryFlags("ledger query", stderr, &evf)
	asJSON := fs.Bool("json", false, "one JSON record per line")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	recs, code := queryRecords(fs, f, *since, *until, &evf, stderr)
	if code != exitOK {
		return code
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for i := range recs {
			_ = enc.Encode(&recs[i])
		}
		return exitOK
	}
	// One row per request: a disclosure with its vendor's answer (the
	// outcome record that follows it), or a refusal.
	outcomes := map[string]string{}
	for _, r := range recs {
		if r.Kind == ledger.KindOutcome {
			outcomes[r.DecisionID] = r.Outcome
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tVENDOR\tPURPOSE\tRESULT\tFIELDS SENT\tLEGAL BASIS")
	for _, r := range recs {
		var result, fields string
		switch r.Kind {
		case ledger.KindOutcome:
			continue
		case ledger.KindRefusal:
			result, fields = "refused: "+r.Outcome, "-"
		default:
			result = "sent, vendor answered " + outcomes[r.DecisionID]
			if outcomes[r.DecisionID] == "" {
				result = "sent, answer not recorded"
			}
			if r.DryRun {
				result += " (dry run)"
			}
			fields = summarize(r.FieldsSent, 90)
		}
		basis := r.LegalBasis
		if basis == "" {
			basis = "-"
		}
		vendor := r.Vendor
		if vendor == "" {
			vendor = r.Host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), vendor, r.Purpose,
			result, fields, basis)
	}
	_ = tw.Flush()
	return exitOK
}

// summarize joins paths up to about width characters and says how many more
// there are; --json has them all.
func summarize(paths []string, width int) string {
	if len(paths) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, p := range paths {
		if i > 0 && b.Len()+len(p)+2 > width {
			fmt.Fprintf(&b, ", … (+%d)", len(paths)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// queryRecords reads what a query or report is about, from a ledger that
// exists and verifies (chain, and checkpoints when there are any): an
// answer from a damaged ledger could say "nothing was disclosed" falsely.
func queryRecords(fs *flag.FlagSet, f *ledger.Filter, since, until string, evf *evidenceFlags, stderr io.Writer) ([]ledger.Record, int) {
	if f.Subject == "" {
		fmt.Fprintf(stderr, "proxy %s: --subject is required\n", fs.Name())
		return nil, exitUsage
	}
	var err error
	if f.Since, err = parseTimeArg(since); err == nil {
		f.Until, err = parseTimeArg(until)
	}
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	if evf.dsn != "" {
		return fleetRecords(fs, *f, evf, stderr)
	}
	files, err := ledgerFiles(fs.Args(), defaultLedger)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	opt, err := evf.options(fs.Args())
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	if _, ev, code := audit(fs.Name(), files, opt, true, stderr); code != exitOK {
		fmt.Fprintf(stderr, "proxy %s: the ledger does not verify; no answer is given from it\n", fs.Name())
		return nil, code
	} else if shippedAway(fs.Name(), ev, stderr) {
		return nil, exitFail
	}
	recs, err := ledger.Query(files, *f)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitFail
	}
	return recs, exitOK
}

func ledgerReport(args []string, stdout, stderr io.Writer) int {
	var evf evidenceFlags
	fs, f, since, until := queryFlags("ledger report", stderr, &evf)
	format := fs.String("format", "html", "html, csv, json or pdf (pdf needs Chromium)")
	audience := fs.String("for", ledger.AudienceStaff, "staff (every technical detail) or subject (the letter for the person: plain words, needs --company and --privacy-contact)")
	docs := addDocFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	return reportDocument(fs, f, *since, *until, *format, *audience, docs, &evf, stdout, stderr)
}

func ledgerProve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger prove", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seq := fs.Uint64("seq", 0, "the record to prove (required)")
	var evf evidenceFlags
	evf.register(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy ledger prove: "+format+"\n", a...)
		return code
	}
	if *seq == 0 {
		return fail(exitUsage, "--seq is required")
	}
	if fs.NArg() > 1 {
		return fail(exitUsage, "one ledger at a time")
	}
	files, err := ledgerFiles(fs.Args(), defaultLedger)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	opt, err := evf.options(fs.Args())
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	entries, err := ledger.ReadCheckpointLog(opt.Log)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(exitUsage, "%v", err)
	}
	// The checkpoint to prove against: the one given, else the newest in
	// the log.
	msg := opt.Witness
	if msg == nil {
		if len(entries) == 0 {
			return fail(exitFail, "no checkpoint in %s and none given with --checkpoint", opt.Log)
		}
		msg = []byte(entries[len(entries)-1].Checkpoint)
	}
	var cp *ledger.Checkpoint
	if len(opt.Verifiers) > 0 {
		for _, v := range opt.Verifiers {
			if cp, err = ledger.OpenCheckpoint(msg, v); err == nil {
				break
			}
		}
	} else {
		cp, err = ledger.ParseCheckpoint(msg)
	}
	if err != nil {
		return fail(exitFail, "checkpoint: %v", err)
	}
	p, err := ledger.Prove(files, entries, *seq, cp)
	if err != nil {
		return fail(exitFail, "%v", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(p); err != nil {
		return fail(exitFail, "%v", err)
	}
	return exitOK
}

func ledgerCheckProof(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger check-proof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var keys listFlag
	fs.Var(&keys, "pubkey", "verifier key (or a file holding it) the proof's checkpoint must be signed with (required; repeatable)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy ledger check-proof: "+format+"\n", a...)
		return code
	}
	if len(keys) == 0 {
		return fail(exitUsage, "--pubkey is required: a proof is only as good as the key that signed its checkpoint")
	}
	var vs []note.Verifier
	for _, k := range keys {
		v, err := readVerifier(k)
		if err != nil {
			return fail(exitUsage, "%v", err)
		}
		vs = append(vs, v)
	}
	var b []byte
	var err error
	switch fs.NArg() {
	case 0:
		b, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
	case 1:
		if fs.Arg(0) == "-" {
			b, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
		} else {
			b, err = os.ReadFile(fs.Arg(0))
		}
	default:
		return fail(exitUsage, "one proof at a time")
	}
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	p, err := ledger.ReadProof(b)
	if err != nil {
		return fail(exitFail, "%v", err)
	}
	cp, err := ledger.CheckProof(p, vs...)
	if err != nil {
		return fail(exitFail, "%v", err)
	}
	fmt.Fprintf(stdout, "ok: record seq %d is in ledger %s as of its signed checkpoint of %d records\n", p.Seq, cp.Origin, cp.Size)
	return exitOK
}

func ledgerPubkey(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger pubkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := defaultConfig()
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "the state directory serve uses")
	fs.StringVar(&c.LedgerKey, "ledger-key", c.LedgerKey, "the signing key file (default STATE-DIR/"+ledgerKeyFile+")")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := c.ledgerKeyPath()
	_, vkey, err := ledger.ReadKeyFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "proxy ledger pubkey: no signing key at %s: 'proxy serve' creates it on its first start (or give --ledger-key)\n", path)
		} else {
			fmt.Fprintln(stderr, "proxy ledger pubkey:", err)
		}
		return exitUsage
	}
	fmt.Fprintln(stdout, vkey)
	return exitOK
}

// ledgerKeygen makes a signing key outside any sidecar, for a key kept in a
// Kubernetes Secret (the chart's ledger.keySecret) rather than generated on
// the ledger's volume. It never replaces a key: a key that signed
// checkpoints is what an auditor verifies them with.
func ledgerKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "ledger-key", "", "the file to create (mode 0600); the public key goes to stdout")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "proxy ledger keygen: want --ledger-key FILE and no arguments")
		return exitUsage
	}
	_, vkey, created, err := ledger.LoadOrCreateKey(path)
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger keygen:", err)
		return exitUsage
	}
	if !created {
		fmt.Fprintf(stderr, "proxy ledger keygen: %s exists: refusing to replace a signing key (its public key: %s)\n", path, vkey)
		return exitUsage
	}
	fmt.Fprintln(stdout, vkey)
	return exitOK
}
