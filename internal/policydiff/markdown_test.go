package policydiff

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestChangeLines(t *testing.T) {
	g := Group{Effect: Widens, Changes: []Change{
		{Effect: Widens, Kind: KindRefusalLifted, Vendor: "mailchimp", Old: "gpc_opt_out"},
		{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "email_address", Label: "email address", Categories: []string{"contact"}, Personal: true},
		{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "header:accept"},
		{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "header:authorization"},
		{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "header:x-user-email", Categories: []string{"contact"}, Personal: true},
		{Effect: Widens, Kind: KindStarts, Vendor: "mailchimp", Item: "header:x-version"},
		{Effect: Narrows, Kind: KindStops, Vendor: "mailchimp", Item: "header:x-old"},
		{Effect: Narrows, Kind: KindStops, Vendor: "mailchimp", Item: "notes", Personal: true},
	}}
	got := changeLines(g)
	want := []string{
		"no longer refused (was `gpc_opt_out`): now goes to `mailchimp`",
		"now sends `email_address` (email address; contact details)",
		"now sends the headers `accept`, `authorization` (not personal data, the contract says)",
		"now sends the header `x-user-email` (contact details)",
		"now sends the header `x-version` (not personal data, the contract says)",
		"no longer sends the header `x-old` (not personal data, the contract says) *(narrows)*",
		"no longer sends `notes` (no data category declared) *(narrows)*",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Whatever a contract or a request holds is shown as written, never as
// Markdown: a label cannot make a link or hide a line, a path with
// backticks stays in its code span.
func TestMarkdownEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"a`b":  "``a`b``",
		"`ab":  "`` `ab ``",
		"":     "none",
		"a\nb": "`a b`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
	if got := mdText("[x](http://evil) *y* <img> a|b\nc"); got != `\[x\](http://evil) \*y\* &lt;img&gt; a\|b c` {
		t.Errorf("mdText: %s", got)
	}
	if got := num(1234567); got != "1,234,567" {
		t.Errorf("num: %s", got)
	}
}

// More groups than a comment should hold: the first are shown, the rest
// counted by effect, and the JSON keeps all of them.
func TestMarkdownCountsWhatItDoesNotShow(t *testing.T) {
	r := &Report{SpaceCases: 100, Evaluated: 100, Differing: 5, Widens: true, Counts: map[Effect]Count{Widens: {3, 3}, Narrows: {2, 2}}}
	for i := range 5 {
		e := Widens
		if i >= 3 {
			e = Narrows
		}
		r.Groups = append(r.Groups, Group{Effect: e, Vendor: "zendesk", VendorName: "Zendesk", Route: "/t", Methods: []string{"POST"},
			Purposes: []string{"support"}, Cases: 1, AnyService: true, AnyConsent: true, AnyGPC: true, AnyLegal: true,
			Changes: []Change{{Effect: e, Kind: KindStarts, Vendor: "zendesk", Item: "f" + string(rune('a'+i)), Personal: true}},
			Example: Example{Case: i}})
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md, 2); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{"`fa`", "`fb`", "- 1 more groups, 1 cases: widens disclosure", "- 2 more groups, 2 cases: narrows disclosure", "--format json"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "`fc`") {
		t.Errorf("group 3 shown beyond the limit:\n%s", out)
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Groups) != 5 {
		t.Errorf("JSON: %v, %d groups", err, len(back.Groups))
	}
}
