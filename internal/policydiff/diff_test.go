package policydiff

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/inputspace"
	"github.com/pare-dev/pare/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// edit is one textual change to a file of the bundled policies.
type edit struct {
	file, old, new string
}

// variant is the bundled policies with edits applied. Each edit must change
// its file: a test whose edit no longer applies (the bundled contract was
// rewritten) fails instead of comparing the policy with itself.
func variant(t testing.TB, edits ...edit) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		f := m[e.file]
		if f == nil || !bytes.Contains(f.Data, []byte(e.old)) {
			t.Fatalf("edit of %s: %q not found", e.file, e.old)
		}
		if e.new == "\x00delete" {
			delete(m, e.file)
			continue
		}
		f.Data = bytes.Replace(f.Data, []byte(e.old), []byte(e.new), 1)
	}
	return m
}

func side(t testing.TB, label string, fsys fs.FS) *Side {
	t.Helper()
	p, err := engine.Load(context.Background(), fsys, engine.LoadOptions{CacheBytes: -1})
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	return &Side{Label: label, Kind: KindDir, Policy: p}
}

// The realistic changes of a policy pull request, as edits of the bundled
// policies.
var (
	zendeskPhone = []edit{
		{"contracts/zendesk.yaml", "        - ticket/requester/email\n", "        - ticket/requester/email\n        - ticket/requester/phone\n"},
		{"contracts/zendesk.yaml", "    ticket/requester/email: email address\n", "    ticket/requester/email: email address\n    ticket/requester/phone: phone number\n"},
		{"contracts/zendesk.yaml", "    contact: [ticket/requester/email]", "    contact: [ticket/requester/email, ticket/requester/phone]"},
	}
	// The refusal that keeps marketing from a browser that sent Global
	// Privacy Control, deleted.
	gpcDeleted = []edit{{"egress.rego", `consent_refusals contains {"rank": 60, "code": "gpc_opt_out", "reason": sprintf("%s is a marketing disclosure and the subject's Global Privacy Control signal opts out of it", [who])} if {
	marketing_gated
	gpc
	vendor
}
`, ""}}
	eventbriteRedact = []edit{{"contracts/eventbrite.yaml", "  headers: [authorization, content-type, accept]\n", "  headers: [authorization, content-type, accept]\n  cards: redact\n"}}
	// Support no longer receives the ticket's tags, nor the requester's name.
	zendeskLess = []edit{
		{"contracts/zendesk.yaml", "        - ticket/tags\n", ""},
		{"contracts/zendesk.yaml", "        - ticket/requester/name\n", ""},
		{"contracts/zendesk.yaml", "    ticket/tags: topic tags\n", ""},
		{"contracts/zendesk.yaml", "    ticket/requester/name: name\n", ""},
		{"contracts/zendesk.yaml", "    identity: [ticket/requester/name]\n", ""},
		{"contracts/zendesk.yaml", "      - ticket/tags\n", ""},
	}
)

// only keeps the systematic cases of one vendor, method and route pattern,
// and of the purposes given (all when none): a test decides the routes its
// change touches, every case of them, in seconds.
func only(vendor, method, pattern string, purposes ...string) func(inputspace.Dims) bool {
	return func(d inputspace.Dims) bool {
		return !d.Random && d.Vendor == vendor && d.Method == method && d.Pattern == pattern &&
			(len(purposes) == 0 || slices.Contains(purposes, d.Purpose))
	}
}

// TestCompare: realistic policy changes, each over every case of the routes
// it touches, against golden Markdown and JSON.
func TestCompare(t *testing.T) {
	old := side(t, "policies", policies.FS)
	for _, tc := range []struct {
		name   string
		edits  []edit
		filter func(inputspace.Dims) bool
		scope  string
		widens bool
		want   []Change // must be among the changes of some group
	}{
		{
			name: "zendesk-gains-phone", edits: zendeskPhone,
			filter: only("zendesk", "POST", "/api/v2/tickets{,.json}"), scope: "Zendesk POST /api/v2/tickets{,.json}", widens: true,
			want: []Change{{Effect: Widens, Kind: KindStarts, Vendor: "zendesk", Item: "ticket/requester/phone", Label: "phone number", Categories: []string{"contact"}, Personal: true}},
		},
		{
			name: "gpc-refusal-deleted", edits: gpcDeleted,
			filter: only("mailchimp", "PUT", "/3.0/lists/*/members/*", "marketing", "analytics"), scope: "Mailchimp PUT /3.0/lists/*/members/* for marketing and analytics", widens: true,
			want: []Change{
				{Effect: Widens, Kind: KindRefusalLifted, Vendor: "mailchimp", Old: "gpc_opt_out"},
				{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "merge_fields/FNAME", Label: "first name", Categories: []string{"identity"}, Personal: true},
				{Effect: Widens, Kind: KindCategoryStarts, Vendor: "mailchimp", Item: "contact", Personal: true},
				{Effect: Neutral, Kind: KindRefusalCode, Old: "gpc_opt_out", New: "consent_required"},
			},
		},
		{
			name: "eventbrite-cards-redact", edits: eventbriteRedact,
			filter: only("eventbrite", "POST", "/v3/events/*/attendees/", "event_registration", "marketing"), scope: "Eventbrite POST /v3/events/*/attendees/ for event_registration and marketing", widens: true,
			want: []Change{{Effect: Widens, Kind: KindCards, Vendor: "eventbrite", Old: "block", New: "redact"}},
		},
		{
			name: "zendesk-sends-less", edits: zendeskLess,
			filter: only("zendesk", "POST", "/api/v2/tickets{,.json}", "support", "analytics"), scope: "Zendesk POST /api/v2/tickets{,.json} for support and analytics", widens: false,
			want: []Change{
				{Effect: Narrows, Kind: KindStops, Vendor: "zendesk", Item: "ticket/tags", Label: "topic tags", Categories: []string{"communications"}, Personal: true},
				{Effect: Narrows, Kind: KindCategoryStops, Vendor: "zendesk", Item: "identity", Personal: true},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Compare(context.Background(), old, side(t, tc.name, variant(t, tc.edits...)), Options{Filter: tc.filter, Scope: tc.scope})
			if err != nil {
				t.Fatal(err)
			}
			if r.Widens != tc.widens {
				t.Errorf("widens %v, want %v", r.Widens, tc.widens)
			}
			if r.Differing == 0 || len(r.Groups) == 0 {
				t.Fatalf("no difference found: %+v", r)
			}
			for _, w := range tc.want {
				if !hasChange(r, w) {
					t.Errorf("no group has the change %+v", w)
				}
			}
			for _, g := range r.Groups {
				if !tc.widens && g.Effect == Widens {
					t.Errorf("a narrowing change has a widening group: %+v", g)
				}
			}
			var md, js bytes.Buffer
			if err := r.WriteMarkdown(&md, 0); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".md", md.Bytes())
			golden(t, tc.name+".json", js.Bytes())
		})
	}
}

func hasChange(r *Report, want Change) bool {
	for _, g := range r.Groups {
		for _, c := range g.Changes {
			if reflect.DeepEqual(c, want) {
				return true
			}
		}
	}
	return false
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/policydiff -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update if the change is intended)\n--- got\n%s", path, got)
	}
}

// Every case that decides differently is counted in exactly one group, and
// a case that decides the same is in none: the groups add up to the cases
// whose decisions differ, counted here independently of the grouping.
func TestEveryDifferenceIsCounted(t *testing.T) {
	ctx := context.Background()
	old := side(t, "old", policies.FS)
	new := side(t, "new", variant(t, append(slices.Clone(gpcDeleted), zendeskPhone...)...))
	r, err := Compare(ctx, old, new, Options{Sample: 3000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	seen := map[int]bool{}
	for _, g := range r.Groups {
		sum += g.Cases
		if seen[g.Example.Case] {
			t.Errorf("case %d is the example of two groups", g.Example.Case)
		}
		seen[g.Example.Case] = true
	}
	e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
	sp := inputspace.New(inputspace.Union(old.Policy.Contracts, new.Policy.Contracts), inputspace.Options{Seed: 7})
	differ := 0
	for _, i := range sp.Sample(3000) {
		c := sp.Case(i)
		a, errA := e.Decide(ctx, old.Policy, &c.Input, nil)
		b, errB := e.Decide(ctx, new.Policy, &c.Input, nil)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if a.Allow != b.Allow || a.Code != b.Code || a.Reason != b.Reason || !reflect.DeepEqual(a.Fields, b.Fields) || a.Cards != b.Cards {
			differ++
		}
	}
	if r.Evaluated != 3000 || r.Differing != sum || r.Differing != differ || differ == 0 {
		t.Errorf("evaluated %d, differing %d, groups add up to %d, independently counted %d", r.Evaluated, r.Differing, sum, differ)
	}
}

// The same policy twice, and two copies of it loaded apart: no change.
func TestIdenticalPolicies(t *testing.T) {
	a, b := side(t, "a", policies.FS), side(t, "b", variant(t))
	r, err := Compare(context.Background(), a, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Identical || r.Widens || r.Differing != 0 || len(r.Groups) != 0 || r.Verdict() != "no change" {
		t.Errorf("report %+v", r)
	}
	// Equal decisions from policies that are not the same files: a comment
	// added to the Rego is evaluated and found to change nothing.
	c := side(t, "c", variant(t, edit{"egress.rego", "package egress\n", "package egress\n\n# A comment.\n"}))
	r, err = Compare(context.Background(), a, c, Options{Sample: 1500})
	if err != nil {
		t.Fatal(err)
	}
	if r.Identical || r.Evaluated != 1500 || r.Differing != 0 || r.Widens || len(r.Groups) != 0 {
		t.Errorf("report %+v", r)
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md, 0); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "No case differs") {
		t.Errorf("markdown:\n%s", md.String())
	}
}

// Two runs give the same bytes whatever the number of workers: groups,
// their order, counts and examples do not depend on scheduling.
func TestStableOutput(t *testing.T) {
	old := side(t, "old", policies.FS)
	new := side(t, "new", variant(t, append(slices.Clone(gpcDeleted), eventbriteRedact...)...))
	var outs []string
	for _, jobs := range []int{1, 3} {
		r, err := Compare(context.Background(), old, new, Options{Sample: 1200, Jobs: jobs})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.String())
		var v map[string]any
		if err := json.Unmarshal(b.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
	}
	if outs[0] != outs[1] {
		t.Error("the JSON differs between 1 and 3 jobs")
	}
}

// A vendor added in NEW: every request to it that is now allowed starts
// leaving, and the report names the vendor as added.
func TestVendorAdded(t *testing.T) {
	withoutEventbrite := variant(t, edit{"contracts/eventbrite.yaml", "eventbrite:", "\x00delete"})
	r, err := Compare(context.Background(), side(t, "old", withoutEventbrite), side(t, "new", policies.FS),
		Options{Filter: only("eventbrite", "POST", "/v3/events/*/attendees/", "event_registration"), Scope: "Eventbrite"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Widens || !slices.Equal(r.VendorsAdded, []string{"eventbrite"}) ||
		!hasChange(r, Change{Effect: Widens, Kind: KindRefusalLifted, Vendor: "eventbrite", Old: "unknown_vendor"}) {
		t.Errorf("report: widens %v, added %v, groups %+v", r.Widens, r.VendorsAdded, r.Groups)
	}
	r, err = Compare(context.Background(), side(t, "new", policies.FS), side(t, "old", withoutEventbrite),
		Options{Filter: only("eventbrite", "POST", "/v3/events/*/attendees/", "event_registration"), Scope: "Eventbrite"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Widens || !slices.Equal(r.VendorsRemoved, []string{"eventbrite"}) ||
		!hasChange(r, Change{Effect: Narrows, Kind: KindRefused, Vendor: "eventbrite", New: "unknown_vendor"}) {
		t.Errorf("reverse: widens %v, removed %v", r.Widens, r.VendorsRemoved)
	}
}

// A cancelled run is an error, not a report of fewer differences.
func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Compare(ctx, side(t, "old", policies.FS), side(t, "new", variant(t, zendeskPhone...)), Options{Sample: 500}); err == nil {
		t.Error("a cancelled comparison returned a report")
	}
}

// A NEW policy that fails to decide some requests (a conflict at
// evaluation) refuses them, as a sidecar does, and the report says how
// many it failed and why: a reviewer must not read the narrowing as a
// deliberate one.
func TestNewPolicyFailsToDecide(t *testing.T) {
	m := variant(t).(fstest.MapFS)
	m["conflict.rego"] = &fstest.MapFile{Data: []byte(`package egress

deny contains {"rank": 5, "code": "denied", "reason": boom} if input.purpose == "support"

boom := "a" if input.purpose == "support"

boom := "b" if input.purpose == "support"
`)}
	r, err := Compare(context.Background(), side(t, "old", policies.FS), side(t, "new", m),
		Options{Filter: only("zendesk", "POST", "/api/v2/tickets{,.json}", "support"), Scope: "Zendesk"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Widens || !hasChange(r, Change{Effect: Narrows, Kind: KindRefused, Vendor: "zendesk", New: "policy_error"}) {
		t.Errorf("widens %v, groups %+v", r.Widens, r.Groups)
	}
	if !slices.ContainsFunc(r.Notes, func(n string) bool {
		return strings.Contains(n, "NEW failed to decide") && strings.Contains(n, "policy_error")
	}) {
		t.Errorf("notes %q: want NEW's failures counted", r.Notes)
	}
}

// A NEW policy that decides on something the input space never varies (a
// header value here; the body) could let data out on a value no case
// tries: the diff cannot see it, so it fails closed and counts it as
// widening, naming what NEW reads.
func TestNewPolicyReadsMore(t *testing.T) {
	for _, tc := range []struct {
		name, rego string
		want       []string
	}{
		{"header", `deny contains {"rank": 5, "code": "denied", "reason": "x"} if input.request.headers["x-open-sesame"] == "no"`, []string{"request.headers.x-open-sesame"}},
		{"body", `deny contains {"rank": 5, "code": "denied", "reason": "x"} if input.body.open_sesame == "no"`, []string{"body"}},
		{"clock", `deny contains {"rank": 5, "code": "denied", "reason": "x"} if time.now_ns() < 0`, []string{engine.NondeterministicRead("time.now_ns")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := variant(t).(fstest.MapFS)
			m["more.rego"] = &fstest.MapFile{Data: []byte("package egress\n\n" + tc.rego + "\n")}
			r, err := Compare(context.Background(), side(t, "old", policies.FS), side(t, "new", m),
				Options{Filter: only("zendesk", "POST", "/api/v2/tickets{,.json}", "support"), Scope: "Zendesk"})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Widens || !slices.Equal(r.Unverified, tc.want) || r.Verdict() != "may widen disclosure (not verified)" {
				t.Errorf("widens %v, unverified %q, verdict %q; want widening, %q", r.Widens, r.Unverified, r.Verdict(), tc.want)
			}
			var md strings.Builder
			if err := r.WriteMarkdown(&md, 0); err != nil || !strings.Contains(md.String(), "should read the Rego") || !strings.Contains(md.String(), strings.ReplaceAll(tc.want[0], "_", `\_`)) {
				t.Errorf("markdown (%v) does not ask to read the Rego and name %q:\n%s", err, tc.want[0], md.String())
			}
			// The other way round NEW reads less: nothing to vouch for.
			r, err = Compare(context.Background(), side(t, "new", m), side(t, "old", policies.FS),
				Options{Filter: only("zendesk", "POST", "/api/v2/tickets{,.json}", "support"), Scope: "Zendesk"})
			if err != nil {
				t.Fatal(err)
			}
			if r.Widens || len(r.Unverified) != 0 {
				t.Errorf("reverse: widens %v, unverified %q", r.Widens, r.Unverified)
			}
		})
	}
}
