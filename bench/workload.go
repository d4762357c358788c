package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Workload is one payload of the standard workload and the vendor call it
// is sent as. The routes are the bundled contracts' routes for that data:
// Pare answers 200 for every one of them, so a refusal is a harness bug.
type Workload struct {
	Name        string // "checkout.json", "attendees 64 KiB"
	ContentType string
	Body        []byte
	Method      string
	Host        string // vendor host, port 443
	Path        string
	Purpose     string // X-Data-Purpose
	JSON        bool   // the body is JSON (the OPA pattern handles JSON only)
	Nominal     int    // nominal size of the attendee series (0: not part of it)
	// Mix, when set, makes this the mix workload: its requests come from
	// the mix (identical for rows 1-3, realistic for row 6) and the fields
	// above describe its first kind only.
	Mix  *Mix
	size int // len(Body), kept when the results drop the bodies; the mix's mean
}

// MixName is the mix workload's name.
const MixName = "mix"

// Standard attendee-array sizes (nominal; the body is the largest array of
// whole attendee.json records that fits).
var (
	FullSizes  = []int{1 << 10, 64 << 10, 1 << 20, 10 << 20}
	QuickSizes = []int{1 << 10, 64 << 10}
)

const (
	stripeHost     = "api.stripe.com"
	zendeskHost    = "webinarco.zendesk.com"
	eventbriteHost = "www.eventbriteapi.com"
)

// LoadWorkloads reads the sample payloads in dir (shared/payloads) and builds
// the workload: checkout.json and checkout.form as Stripe payment intents,
// ticket.json as a Zendesk ticket and arrays of attendee.json of the given
// nominal sizes as an Eventbrite batch registration.
func LoadWorkloads(dir string, sizes []int) ([]Workload, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("payloads: %w", err)
		}
		return bytes.TrimSpace(b), nil
	}
	checkoutJSON, err := read("checkout.json")
	if err != nil {
		return nil, err
	}
	checkoutForm, err := read("checkout.form")
	if err != nil {
		return nil, err
	}
	ticket, err := read("ticket.json")
	if err != nil {
		return nil, err
	}
	attendee, err := read("attendee.json")
	if err != nil {
		return nil, err
	}
	ws := []Workload{
		{Name: "checkout.json", ContentType: "application/json", Body: checkoutJSON, Method: "POST",
			Host: stripeHost, Path: "/v1/payment_intents", Purpose: "payment", JSON: true},
		{Name: "checkout.form", ContentType: "application/x-www-form-urlencoded", Body: checkoutForm, Method: "POST",
			Host: stripeHost, Path: "/v1/payment_intents", Purpose: "payment"},
		{Name: "ticket.json", ContentType: "application/json", Body: ticket, Method: "POST",
			Host: zendeskHost, Path: "/api/v2/tickets", Purpose: "support", JSON: true},
	}
	for _, size := range sizes {
		ws = append(ws, Workload{
			Name: "attendees " + SizeLabel(size), ContentType: "application/json",
			Body:   attendeeArray(attendee, size),
			Method: "POST", Host: eventbriteHost, Path: "/v3/events/1001/attendees/batch/",
			Purpose: "event_registration", JSON: true, Nominal: size,
		})
	}
	for i := range ws {
		ws[i].size = len(ws[i].Body)
	}
	mix := newMix(checkoutForm, ticket, attendee)
	first := mix.Request(0, false)
	ws = append(ws, Workload{Name: MixName, ContentType: "(several)", Body: first.Body, Method: "(several)",
		Host: "(stripe, zendesk, mailchimp, eventbrite)", Path: "", Purpose: first.Purpose, Mix: mix, size: mix.mean})
	return ws, nil
}

// request returns request i of w: the mix's, or w's one request.
func (w *Workload) request(i int, realistic bool) *request {
	if w.Mix != nil {
		return w.Mix.Request(i, realistic)
	}
	return &request{Method: w.Method, Host: w.Host, Path: w.Path, ContentType: w.ContentType,
		Purpose: w.Purpose, Subject: "u-1", Body: w.Body, Expect: 200}
}

// Size is the body's length in bytes.
func (w *Workload) Size() int { return w.size }

// attendeeArray builds {"attendees":[a,a,...]} with as many copies of a as
// fit in size bytes (at least one).
func attendeeArray(a []byte, size int) []byte {
	const head, tail = `{"attendees":[`, `]}`
	n := (size - len(head) - len(tail) + 1) / (len(a) + 1)
	if n < 1 {
		n = 1
	}
	var b bytes.Buffer
	b.Grow(len(head) + len(tail) + n*(len(a)+1))
	b.WriteString(head)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(a)
	}
	b.WriteString(tail)
	return b.Bytes()
}

// SizeLabel formats a byte count as "64 KiB", "1 MiB", "2.1 KiB".
func SizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
