package ledgerdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
)

// FleetQueryIsTheUnionOfLocalQueries: for each person, vendor and
// period, the records the database returns are those ledger.Query
// returns from each sidecar's files, instance after instance, and the
// report built from them is the same report, byte for byte.
func testFleetQueryIsTheUnionOfLocalQueries(t *testing.T, srv *pgtest.Server) {
	dsn := newDB(t, srv, "fleetquery")
	s, _ := testKey(t)
	var fs []*fixture
	for i := range 3 {
		f := newFixture(t, s, 3000)
		f.add(i*100, 25+i*5)
		f.ship(t, dsn, nil)
		fs = append(fs, f)
	}
	for _, f := range fs {
		f.waitShipped(t, dsn)
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].l.Origin() < fs[j].l.Origin() })
	c := connect(t, dsn)
	start := time.Date(2026, 10, 29, 0, 0, 0, 0, time.UTC)
	filters := []ledger.Filter{
		{Subject: "u-3"},
		{Subject: "u-0", Vendor: "zendesk"},
		{Subject: "u-5", Since: start, Until: start.Add(20 * time.Hour)},
		{Subject: "nobody"},
		{Vendor: "stripe", Since: start.Add(10 * time.Hour)},
	}
	// A period that ends between a disclosure and its outcome: the
	// outcome is returned with the disclosure it belongs to.
	for seq := uint64(1); ; seq++ {
		r, err := parseRecord(fs[0].lines()[seq])
		if err != nil {
			t.Fatal(err)
		}
		if r.kind == ledger.KindDisclosure && r.subject == "u-5" {
			filters = append(filters, ledger.Filter{Subject: "u-5", Until: r.time.Add(30 * time.Minute)})
			break
		}
	}
	for _, flt := range filters {
		t.Run(fmt.Sprintf("%+v", flt), func(t *testing.T) {
			var local []ledger.Record
			for _, f := range fs {
				files, err := ledger.Files(f.path)
				if err != nil {
					t.Fatal(err)
				}
				rs, err := ledger.Query(files, flt)
				if err != nil {
					t.Fatal(err)
				}
				local = append(local, rs...)
			}
			fleet, err := Query(context.Background(), c, flt)
			if err != nil {
				t.Fatal(err)
			}
			if flt.Subject != "nobody" && len(local) == 0 {
				t.Fatal("the filter selects nothing: the test would prove nothing")
			}
			lj, _ := json.Marshal(local)
			fj, _ := json.Marshal(fleet)
			if string(lj) != string(fj) {
				t.Fatalf("fleet query differs from the local ones:\nlocal %d records\nfleet %d records", len(local), len(fleet))
			}
			opt := ledger.ReportOptions{Subject: flt.Subject, Since: flt.Since, Until: flt.Until, Audience: ledger.AudienceStaff}
			lr, _ := json.Marshal(ledger.BuildReportWith(local, opt))
			fr, _ := json.Marshal(ledger.BuildReportWith(fleet, opt))
			if string(lr) != string(fr) {
				t.Fatalf("reports differ:\nlocal %s\nfleet %s", lr, fr)
			}
		})
	}
	// A returned row whose columns were changed is refused, not reported.
	execSQL(t, dsn, `UPDATE pare_ledger_records SET vendor = 'acme' WHERE subject = 'u-3' AND seq = (SELECT min(seq) FROM pare_ledger_records WHERE subject = 'u-3')`)
	if _, err := Query(context.Background(), c, ledger.Filter{Subject: "u-3"}); !errors.Is(err, ErrRowMismatch) {
		t.Errorf("a row with a changed column: %v", err)
	}
	var first time.Time
	for _, f := range fs {
		r, err := parseRecord(f.lines()[1])
		if err != nil {
			t.Fatal(err)
		}
		if first.IsZero() || r.time.Before(first) {
			first = r.time
		}
	}
	if st, err := Start(context.Background(), c); err != nil || !st.Equal(first) {
		t.Errorf("start %v (%v), want the first record's time %v", st, err, first)
	}
}
