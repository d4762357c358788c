package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/headless"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/policies"
)

// docFlags are the settings every document for the privacy office reads (ledger report, ropa,
// datamap): the contracts, the company and its privacy contact. A --config file gives defaults
// (policies, ledger, company_name, privacy_contact); flags override it.
type docFlags struct {
	config, policies, company, contact string
}

func addDocFlags(fs *flag.FlagSet) *docFlags {
	d := &docFlags{}
	fs.StringVar(&d.config, "config", "", "serve configuration file to take policies, ledger, company_name and privacy_contact from")
	fs.StringVar(&d.policies, "policies", "", "policies directory whose contracts explain the data (default: the bundled policies)")
	fs.StringVar(&d.company, "company", "", "the company's name (config company_name)")
	fs.StringVar(&d.contact, "privacy-contact", "", "where people ask about their data (config privacy_contact)")
	return d
}

// docSettings are docFlags resolved against the config file.
type docSettings struct {
	company, contact, ledger string
	catalog                  *contract.Catalog
}

func (d *docFlags) resolve() (docSettings, error) {
	c := defaultConfig()
	if d.config != "" {
		if err := loadConfigFile(d.config, &c); err != nil {
			return docSettings{}, err
		}
		if err := c.validate(); err != nil {
			return docSettings{}, fmt.Errorf("config %s: %w", d.config, err)
		}
	}
	s := docSettings{company: c.CompanyName, contact: c.PrivacyContact, ledger: c.Ledger}
	if d.company != "" {
		s.company = d.company
	}
	if d.contact != "" {
		s.contact = d.contact
	}
	dir := c.Policies
	if d.policies != "" {
		dir = d.policies
	}
	var cs map[string]*contract.Contract
	var err error
	if dir == "" {
		cs, err = contract.LoadFS(policies.FS, "contracts")
	} else {
		cs, err = contract.LoadDir(filepath.Join(dir, "contracts"))
	}
	if err != nil {
		return docSettings{}, err
	}
	if s.catalog, err = contract.NewCatalog(cs); err != nil {
		return docSettings{}, err
	}
	return s, nil
}

// period turns --since/--until into dates: a report states its period as dates, so an open start
// is the ledger's first record and an open end is now.
func period(files []string, since, until time.Time, now time.Time) (time.Time, time.Time, error) {
	if since.IsZero() {
		start, err := ledger.Start(files)
		if err != nil {
			return since, until, err
		}
		since = start
		if since.IsZero() {
			since = now // an empty ledger: the period is empty
		}
	}
	if until.IsZero() {
		until = now
	}
	if !until.After(since) && !until.Equal(since) {
		return since, until, fmt.Errorf("--until %s is before --since %s", until.Format(time.RFC3339), since.Format(time.RFC3339))
	}
	return since, until, nil
}

// writePDF renders a self-contained page to PDF with headless Chromium.
func writePDF(ctx context.Context, w io.Writer, html []byte) error {
	p, err := headless.Find()
	if err != nil {
		if errors.Is(err, headless.ErrNotFound) {
			return fmt.Errorf("--format pdf: %w; --format html gives the same page to print", err)
		}
		return err
	}
	pdf, err := headless.Browser{Path: p}.PrintPDF(ctx, html)
	if err != nil {
		return err
	}
	_, err = w.Write(pdf)
	return err
}

// reportDocument is `ledger report`: the disclosures about one person, for staff or for the
// person.
func reportDocument(fs *flag.FlagSet, f *ledger.Filter, since, until, format, audience string, docs *docFlags, evf *evidenceFlags, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "proxy %s: %v\n", fs.Name(), err)
		return code
	}
	switch format {
	case "html", "csv", "json", "pdf":
	default:
		return fail(exitUsage, fmt.Errorf("--format %q: want html, csv, json or pdf", format))
	}
	if audience != ledger.AudienceStaff && audience != ledger.AudienceSubject {
		return fail(exitUsage, fmt.Errorf("--for %q: want staff or subject", audience))
	}
	set, err := docs.resolve()
	if err != nil {
		return fail(exitUsage, err)
	}
	if audience == ledger.AudienceSubject && (set.company == "" || set.contact == "") {
		return fail(exitUsage, errors.New("--for subject: a report for a person names the company and where to ask: give --company and --privacy-contact (or company_name and privacy_contact in --config)"))
	}
	if f.Subject == "" {
		return fail(exitUsage, errors.New("--subject is required"))
	}
	if f.Since, err = parseTimeArg(since); err == nil {
		f.Until, err = parseTimeArg(until)
	}
	if err != nil {
		return fail(exitUsage, err)
	}
	now := time.Now().UTC()
	var recs []ledger.Record
	if evf.dsn != "" {
		var code int
		if recs, code = fleetReportRecords(fs, f, now, evf, stderr); code != exitOK {
			return code
		}
	} else {
		files, err := ledgerFiles(fs.Args(), set.ledger)
		if err != nil {
			return fail(exitUsage, err)
		}
		// A report answers only from a ledger that verifies, against its
		// signed checkpoints (and the witness, when one is given).
		opt, err := evf.options(fs.Args())
		if err != nil {
			return fail(exitUsage, err)
		}
		if _, ev, code := audit(fs.Name(), files, opt, true, stderr); code != exitOK {
			fmt.Fprintf(stderr, "proxy %s: the ledger does not verify; no answer is given from it\n", fs.Name())
			return code
		} else if shippedAway(fs.Name(), ev, stderr) {
			return exitFail
		}
		if f.Since, f.Until, err = period(files, f.Since, f.Until, now); err != nil {
			return fail(exitUsage, err)
		}
		if recs, err = ledger.Query(files, *f); err != nil {
			return fail(exitFail, err)
		}
	}
	rep := ledger.BuildReportWith(recs, ledger.ReportOptions{Subject: f.Subject, Since: f.Since, Until: f.Until,
		Catalog: set.catalog, Audience: audience, Company: set.company, Contact: set.contact})
	rep.Generated = now
	switch format {
	case "html":
		err = ledger.WriteHTML(stdout, rep)
	case "csv":
		err = ledger.WriteCSV(stdout, rep)
	case "json":
		err = ledger.WriteJSON(stdout, rep)
	case "pdf":
		var page bytes.Buffer
		if err = ledger.WriteHTML(&page, rep); err == nil {
			err = writePDF(context.Background(), stdout, page.Bytes())
		}
	}
	if err != nil {
		return fail(exitFail, err)
	}
	return exitOK
}
