package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
)

func runLedger(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
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
	}
	fmt.Fprintf(stderr, "proxy ledger: unknown subcommand %q (verify, query, report)\n", args[0])
	return exitUsage
}

func ledgerUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: proxy ledger <subcommand> [flags] [FILE...]

Subcommands:
  verify   check the hash chain of the ledger and its rotated files
  query    list the disclosures about one data subject
  report   the answer to "who received this person's data", as html, csv or json

FILE defaults to pare-ledger.jsonl and stands for its rotated files too.
Run 'proxy ledger <subcommand> -h' for its flags.
`)
}

// ledgerFiles expands the positional arguments: a ledger path stands for its
// rotated files and itself, in chain order.
func ledgerFiles(args []string, def string) ([]string, error) {
	if len(args) == 0 {
		args = []string{def}
	}
	var out []string
	for _, a := range args {
		fs, err := ledger.Files(a)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	return out, nil
}

func ledgerVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ledger verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	files, err := ledgerFiles(fs.Args(), "pare-ledger.jsonl")
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger verify:", err)
		return exitUsage
	}
	res, err := ledger.Verify(files...)
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger verify:", err)
		return exitFail
	}
	if !res.OK {
		fmt.Fprintf(stderr, "proxy ledger verify: first bad record: %s\n", res.Bad)
		fmt.Fprintf(stderr, "  %d records before it verified (seq %d..%d)\n", res.Records, res.FirstSeq, res.LastSeq)
		return exitFail
	}
	fmt.Fprintf(stdout, "ok: %d records in %d files, seq %d..%d, chain intact; head %s\n",
		res.Records, res.Files, res.FirstSeq, res.LastSeq, res.Head)
	return exitOK
}

func queryFlags(name string, stderr io.Writer) (*flag.FlagSet, *ledger.Filter, *string, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
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
	fs, f, since, until := queryFlags("ledger query", stderr)
	asJSON := fs.Bool("json", false, "one JSON record per line")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	recs, code := queryRecords(fs, f, *since, *until, stderr)
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

func queryRecords(fs *flag.FlagSet, f *ledger.Filter, since, until string, stderr io.Writer) ([]ledger.Record, int) {
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
	files, err := ledgerFiles(fs.Args(), "pare-ledger.jsonl")
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitUsage
	}
	recs, err := ledger.Query(files, *f)
	if err != nil {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return nil, exitFail
	}
	return recs, exitOK
}

func ledgerReport(args []string, stdout, stderr io.Writer) int {
	fs, f, since, until := queryFlags("ledger report", stderr)
	format := fs.String("format", "html", "html, csv or json")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	recs, code := queryRecords(fs, f, *since, *until, stderr)
	if code != exitOK {
		return code
	}
	rep := ledger.BuildReport(recs, f.Subject, f.Since, f.Until)
	var err error
	switch *format {
	case "html":
		err = ledger.WriteHTML(stdout, rep)
	case "csv":
		err = ledger.WriteCSV(stdout, rep)
	case "json":
		err = ledger.WriteJSON(stdout, rep)
	default:
		fmt.Fprintf(stderr, "proxy ledger report: --format %q: want html, csv or json\n", *format)
		return exitUsage
	}
	if err != nil {
		fmt.Fprintln(stderr, "proxy ledger report:", err)
		return exitFail
	}
	return exitOK
}
