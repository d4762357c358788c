package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pare-dev/pare/internal/datamap"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/ropa"
)

// docCommand is what ropa and datamap share: the doc flags, a period and optional ledgers.
type docCommand struct {
	fs           *flag.FlagSet
	docs         *docFlags
	since, until *string
	format       *string
	stderr       io.Writer
}

func newDocCommand(name, formats string, stderr io.Writer) *docCommand {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := &docCommand{fs: fs, docs: addDocFlags(fs), stderr: stderr}
	d.since = fs.String("since", "", "traffic from this time (RFC 3339 or YYYY-MM-DD; default: the ledger's first record)")
	d.until = fs.String("until", "", "traffic until this time, exclusive (default: now)")
	d.format = fs.String("format", "html", formats)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: proxy %s [flags] [LEDGER...]\n\nWithout a ledger, from the contracts alone; with one, what was sent in the period too.\n\n", name)
		fs.PrintDefaults()
	}
	return d
}

func (d *docCommand) fail(code int, err error) int {
	fmt.Fprintf(d.stderr, "proxy %s: %v\n", d.fs.Name(), err)
	return code
}

// prepare resolves the settings and, when ledgers are given, scans them into add over the period.
func (d *docCommand) prepare(needCompany bool, observer func(set docSettings, since, until time.Time) func(*ledger.Record) error) (docSettings, bool, int) {
	set, err := d.docs.resolve()
	if err != nil {
		return set, false, d.fail(exitUsage, err)
	}
	if needCompany && (set.company == "" || set.contact == "") {
		return set, false, d.fail(exitUsage, errors.New("the record names the controller and its contact (GDPR Art. 30(1)(a)): give --company and --privacy-contact (or company_name and privacy_contact in --config)"))
	}
	if d.fs.NArg() == 0 {
		if *d.since != "" || *d.until != "" {
			return set, false, d.fail(exitUsage, errors.New("--since and --until select traffic: give a ledger"))
		}
		return set, false, exitOK
	}
	since, err := parseTimeArg(*d.since)
	if err != nil {
		return set, false, d.fail(exitUsage, err)
	}
	until, err := parseTimeArg(*d.until)
	if err != nil {
		return set, false, d.fail(exitUsage, err)
	}
	files, err := ledgerFiles(d.fs.Args(), set.ledger)
	if err != nil {
		return set, false, d.fail(exitUsage, err)
	}
	if since, until, err = period(files, since, until, time.Now().UTC()); err != nil {
		return set, false, d.fail(exitUsage, err)
	}
	if err := ledger.Scan(files, observer(set, since, until)); err != nil {
		return set, false, d.fail(exitFail, err)
	}
	return set, true, exitOK
}

// emit writes a page in the chosen format; pdf prints the html.
func (d *docCommand) emit(stdout io.Writer, html func(io.Writer) error, others map[string]func(io.Writer) error) int {
	var err error
	switch f := *d.format; f {
	case "html":
		err = html(stdout)
	case "pdf":
		var page bytes.Buffer
		if err = html(&page); err == nil {
			err = writePDF(context.Background(), stdout, page.Bytes())
		}
	default:
		w, ok := others[f]
		if !ok {
			return d.fail(exitUsage, fmt.Errorf("--format %q: want %s", f, d.fs.Lookup("format").Usage))
		}
		err = w(stdout)
	}
	if err != nil {
		return d.fail(exitFail, err)
	}
	return exitOK
}

func runRopa(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	d := newDocCommand("ropa", "html, csv, json or pdf", stderr)
	if code, ok := parseFlags(d.fs, args); !ok {
		return code
	}
	var obs *ropa.Observer
	set, observed, code := d.prepare(true, func(set docSettings, since, until time.Time) func(*ledger.Record) error {
		obs = ropa.NewObserver(set.catalog, since, until)
		return obs.Add
	})
	if code != exitOK {
		return code
	}
	rec := ropa.Build(set.catalog, ropa.Options{Company: set.company, Contact: set.contact, Generated: time.Now().UTC()})
	if observed {
		rec.AddUsage(obs)
	}
	return d.emit(stdout, func(w io.Writer) error { return ropa.WriteHTML(w, rec) }, map[string]func(io.Writer) error{
		"csv":  func(w io.Writer) error { return ropa.WriteCSV(w, rec) },
		"json": func(w io.Writer) error { return ropa.WriteJSON(w, rec) },
	})
}

func runDatamap(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	d := newDocCommand("datamap", "html, svg, json or pdf", stderr)
	if code, ok := parseFlags(d.fs, args); !ok {
		return code
	}
	var obs *datamap.Observer
	set, _, code := d.prepare(false, func(set docSettings, since, until time.Time) func(*ledger.Record) error {
		obs = datamap.NewObserver(set.catalog, since, until)
		return obs.Add
	})
	if code != exitOK {
		return code
	}
	m := datamap.Build(set.catalog, obs, set.company, time.Now().UTC())
	return d.emit(stdout, func(w io.Writer) error { return datamap.WriteHTML(w, m) }, map[string]func(io.Writer) error{
		"svg":  func(w io.Writer) error { return datamap.WriteSVG(w, m) },
		"json": func(w io.Writer) error { return datamap.WriteJSON(w, m) },
	})
}
