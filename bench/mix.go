package bench

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// The mix workload is a day of an app's calls to its vendors, in one
// sequence: card payments and customer reads at Stripe, new tickets and
// replies at Zendesk, newsletter upserts and unsubscribes at Mailchimp
// (marketing: some subjects consented, some withdrew, some never did, some
// browsers send GPC), registrations at Eventbrite, and a call no contract
// allows. It is sent two ways, by rows that take turns in the same cell:
//
//   - identical (rows 1-3): every request of one kind is the same request,
//     with the same resource ids and subject, so after the first Pare
//     decides it from its cache;
//   - realistic (row 6): every request names another resource (customer,
//     ticket, list member hashed from another email, event) and another
//     subject, drawn from thousands of subjects whose consent histories Pare
//     reads from a consents file.
//
// Request i of both is of the same kind and gets the same answer from Pare
// (the identical sequence uses a consented or unconsented fixed subject
// where the realistic one drew a consented or unconsented subject), so the
// two differ only in what a real app's traffic differs in.

// mixSubjects is how many subjects the consents file holds.
const mixSubjects = 5000

// request is one request of a workload.
type request struct {
	Method, Host, Path   string
	ContentType, Purpose string
	Subject              string
	GPC                  bool
	Body                 []byte
	Expect               int // Pare's answer (other rows answer 200)
}

// mixKind is one kind of request of the mix.
type mixKind struct {
	name   string
	weight int
	make   func(m *Mix, rng *rand.Rand, realistic bool) request
}

// Mix generates the requests of the mix workload.
type Mix struct {
	kinds   []mixKind
	wheel   []int // kind index per slot, weights expanded
	bodies  map[string][]byte
	granted []bool // per subject: the latest marketing consent is a grant
	mean    int    // mean body bytes per request over one turn of the wheel
}

const mailchimpHost = "us21.api.mailchimp.com"

// newMix builds the mix from the sample payloads (checkout.form,
// ticket.json, attendee.json).
func newMix(checkoutForm, ticket, attendee []byte) *Mix {
	m := &Mix{bodies: map[string][]byte{
		"checkout.form": checkoutForm,
		"ticket.json":   ticket,
		"attendee.json": attendee,
		"customer":      []byte(`{"email":"maria@example.org","name":"Maria Rossi","phone":"+39 06 1234","address":{"country":"IT","postal_code":"00184","line1":"Via Roma 1"}}`),
		"reply":         []byte(`{"ticket":{"comment":{"body":"Thanks, that worked.","public":true},"status":"solved","requester":{"email":"maria@example.org"}}}`),
		"unsubscribe":   []byte(`{"status":"unsubscribed","email_address":"maria@example.org"}`),
	}}
	for s := range mixSubjects {
		m.granted = append(m.granted, subjectGranted(s))
	}
	id := func(rng *rand.Rand, realistic bool, prefix string) string {
		if !realistic {
			return prefix + "0001"
		}
		return fmt.Sprintf("%s%x", prefix, rng.Uint32())
	}
	m.kinds = []mixKind{
		{"stripe payment", 4, func(m *Mix, rng *rand.Rand, realistic bool) request {
			return request{Method: "POST", Host: stripeHost, Path: "/v1/payment_intents", ContentType: "application/x-www-form-urlencoded",
				Purpose: "payment", Body: m.bodies["checkout.form"], Expect: 200}
		}},
		{"stripe customer read", 3, func(m *Mix, rng *rand.Rand, realistic bool) request {
			return request{Method: "GET", Host: stripeHost, Path: "/v1/customers/" + id(rng, realistic, "cus_"), Purpose: "payment", Expect: 200}
		}},
		{"stripe new customer", 1, func(m *Mix, rng *rand.Rand, realistic bool) request {
			return request{Method: "POST", Host: stripeHost, Path: "/v1/customers", ContentType: "application/json",
				Purpose: "payment", Body: m.bodies["customer"], Expect: 200}
		}},
		{"zendesk new ticket", 2, func(m *Mix, rng *rand.Rand, realistic bool) request {
			return request{Method: "POST", Host: zendeskHost, Path: "/api/v2/tickets.json", ContentType: "application/json",
				Purpose: "support", Body: m.bodies["ticket.json"], Expect: 200}
		}},
		{"zendesk reply", 3, func(m *Mix, rng *rand.Rand, realistic bool) request {
			t := "4711"
			if realistic {
				t = fmt.Sprint(100000 + rng.IntN(900000))
			}
			return request{Method: "PUT", Host: zendeskHost, Path: "/api/v2/tickets/" + t, ContentType: "application/json",
				Purpose: "support", Body: m.bodies["reply"], Expect: 200}
		}},
		{"mailchimp upsert", 4, func(m *Mix, rng *rand.Rand, realistic bool) request {
			r := request{Method: "PUT", Host: mailchimpHost, ContentType: "application/json", Purpose: "marketing"}
			email := "maria@example.org"
			list := "a1b2c3"
			if realistic {
				email = fmt.Sprintf("person%d@example.org", rng.IntN(1_000_000))
				list = fmt.Sprintf("l%x", rng.IntN(8))
			}
			sum := md5.Sum([]byte(email))
			r.Path = "/3.0/lists/" + list + "/members/" + hex.EncodeToString(sum[:])
			r.Body = fmt.Appendf(nil, `{"email_address":%q,"status_if_new":"subscribed","merge_fields":{"FNAME":"Maria","LNAME":"Rossi","PHONE":"+39 06 1234"},"ip_signup":"203.0.113.9"}`, email)
			return r
		}},
		{"mailchimp unsubscribe", 1, func(m *Mix, rng *rand.Rand, realistic bool) request {
			member := "9e107d9d372bb6826bd81d3542a419d6"
			if realistic {
				sum := md5.Sum(fmt.Appendf(nil, "person%d@example.org", rng.IntN(1_000_000)))
				member = hex.EncodeToString(sum[:])
			}
			return request{Method: "PATCH", Host: mailchimpHost, Path: "/3.0/lists/a1b2c3/members/" + member, ContentType: "application/json",
				Purpose: "opt_out", Body: m.bodies["unsubscribe"], Expect: 200}
		}},
		{"eventbrite registration", 2, func(m *Mix, rng *rand.Rand, realistic bool) request {
			ev := "1001"
			if realistic {
				ev = fmt.Sprint(1000 + rng.IntN(5000))
			}
			return request{Method: "POST", Host: eventbriteHost, Path: "/v3/events/" + ev + "/attendees/", ContentType: "application/json",
				Purpose: "event_registration", Body: m.bodies["attendee.json"], Expect: 200}
		}},
		{"refused: delete a customer", 1, func(m *Mix, rng *rand.Rand, realistic bool) request {
			return request{Method: "DELETE", Host: stripeHost, Path: "/v1/customers/" + id(rng, realistic, "cus_"), Purpose: "payment", Expect: 403}
		}},
	}
	for k, kind := range m.kinds {
		for range kind.weight {
			m.wheel = append(m.wheel, k)
		}
	}
	// Spread the kinds over the wheel (a fixed shuffle), so a short run
	// still sees all of them in their proportions.
	rng := rand.New(rand.NewPCG(7, 7))
	rng.Shuffle(len(m.wheel), func(i, j int) { m.wheel[i], m.wheel[j] = m.wheel[j], m.wheel[i] })
	total := 0
	for i := range m.wheel {
		total += len(m.Request(i, false).Body)
	}
	m.mean = total / len(m.wheel)
	return m
}

// Request returns request i of the identical or the realistic sequence.
func (m *Mix) Request(i int, realistic bool) *request {
	kind := m.kinds[m.wheel[i%len(m.wheel)]]
	rng := rand.New(rand.NewPCG(uint64(i), 42))
	r := kind.make(m, rng, realistic)
	// The subject, and for marketing what Pare answers: a grant in the
	// subject's history lets the upsert through, unless the browser sent
	// GPC; a withdrawal or no consent at all refuses it.
	subject := rng.IntN(mixSubjects)
	gpc := rng.IntN(10) == 0
	ok := m.granted[subject]
	if realistic {
		r.Subject = subjectID(subject)
	} else if ok {
		r.Subject = subjectID(grantedFixed)
	} else {
		r.Subject = subjectID(unconsentedFixed)
	}
	if r.Purpose == "marketing" {
		r.GPC = gpc
		r.Expect = 200
		if !ok || gpc {
			r.Expect = 403
		}
	}
	return &r
}

// The identical sequence's two subjects: one whose marketing consent is
// granted, one whose is not (found among the generated ones).
var grantedFixed, unconsentedFixed = func() (int, int) {
	g, u := -1, -1
	for s := 0; g < 0 || u < 0; s++ {
		if subjectGranted(s) && g < 0 {
			g = s
		} else if !subjectGranted(s) && u < 0 {
			u = s
		}
	}
	return g, u
}()

func subjectID(s int) string { return fmt.Sprintf("u-%06d", s) }

// subjectHistory is subject s's consent history: one to three events over
// marketing, support and analytics; marketing sometimes granted and later
// withdrawn, sometimes never asked.
type event struct {
	purpose, status, action, where string
	at                             time.Time
}

func subjectHistory(s int) []event {
	rng := rand.New(rand.NewPCG(uint64(s), 99))
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(300*24)) * time.Hour)
	var evs []event
	n := 1 + rng.IntN(3)
	for j := range n {
		p := []string{"marketing", "support", "analytics"}[rng.IntN(3)]
		e := event{purpose: p, status: "granted", action: "checked 'Send me product news'", where: "signup form /register",
			at: base.Add(time.Duration(j) * 240 * time.Hour)}
		if j > 0 && rng.IntN(3) == 0 {
			e.status, e.action, e.where = "withdrawn", "clicked unsubscribe", "newsletter footer"
		}
		evs = append(evs, e)
	}
	return evs
}

// subjectGranted: the latest marketing event of s's history is a grant.
func subjectGranted(s int) bool {
	status := ""
	for _, e := range subjectHistory(s) {
		if e.purpose == "marketing" {
			status = e.status // events are in time order
		}
	}
	return status == "granted"
}

// writeConsentsFile writes every subject's history as a consents file
// (JSON) for Pare's --consents.
func writeConsentsFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	w.WriteString(`{"subjects": {`)
	for s := range mixSubjects {
		if s > 0 {
			w.WriteString(",")
		}
		fmt.Fprintf(w, "\n  %q: [", subjectID(s))
		for j, e := range subjectHistory(s) {
			if j > 0 {
				w.WriteString(", ")
			}
			fmt.Fprintf(w, `{"purpose": %q, "status": %q, "time": %q, "evidence": {"action": %q, "where": %q, "policy_version": "2026-09"}}`,
				e.purpose, e.status, e.at.Format(time.RFC3339), e.action, e.where)
		}
		w.WriteString("]")
	}
	w.WriteString("\n}}\n")
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
