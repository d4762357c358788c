package e2e

import (
	"strings"
	"testing"
)

// Findings of the adversarial review (the app as the attacker: it controls
// every byte of its requests, not the sidecar's config or policies). Each
// test failed on the code it was written against; run them all with
// go test ./... -run TestFinding.

// Finding 1: an encoded ";" in a path segment is decoded for the policy
// and then sent to the vendor raw, where servers read it as a path
// parameter: "/recordings/..%3Bx/..%3Bx/assets/logo.png" matches the policy's
// "/recordings/**", and a server that strips ";x" (Tomcat, Spring, Jetty)
// resolves "/recordings/..;x/..;x/assets/logo.png" to "/assets/logo.png" —
// the raw-";" refusal of cleanPath, sidestepped. The vendor must receive
// the ";" still encoded.
func TestFindingEncodedSemicolonSentRaw(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	r := request{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/..%3Bx/..%3Bx/assets/logo.png",
		Header: hdr("Content-Type", "image/png", "X-Data-Purpose", "hosting"), Body: []byte("not really a png")}
	p.Stub.Reset()
	resp := p.do(t, r)
	for _, got := range p.Stub.Received() {
		if strings.Contains(got.RequestURI, ";") {
			t.Fatalf("the hosting provider received %q (status to the app %d): a raw ';' path parameter the policy decided as data", got.RequestURI, resp.Status)
		}
	}
}

// Finding 2: the card guard scans the URL path one segment at a time, so a
// card number written with slashes — a separator the guard itself joins
// digits across ("4111/1111/1111/1111" in a body is refused) — reaches a
// vendor whose route has "**".
func TestFindingCardNumberAcrossPathSegments(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	for _, r := range []request{
		{Method: "DELETE", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/4111/1111/1111/1111",
			Header: hdr("X-Data-Purpose", "hosting")},
		{Method: "PUT", URL: "http://webinar-co-media.storage.example-cloud.com/recordings/5555/5555/5555/4444/notes.txt",
			Header: hdr("Content-Type", "text/plain", "X-Data-Purpose", "hosting"), Body: []byte("notes")},
	} {
		refused(t, p, r, 403, "card_number")
	}
}

// Finding 5: the egress log line names the request's decoded path, and a
// card refusal's cause names the JSON path of the card — payload values
// (a card number, an email address) in the logs, which the ledger carefully
// keeps out ("Logs never contain payload values").
func TestFindingLogsCarryNoPayloadValues(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Service: "support"})
	put := request{Method: "PUT", URL: "http://webinarco.zendesk.com/api/v2/tickets/4111111111111111",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json", "X-Data-Purpose", "support"),
		Body:   []byte(`{"ticket":{"status":"solved"}}`)}
	id1 := refused(t, p, put, 403, "card_number").DecisionID
	put.URL = "http://webinarco.zendesk.com/api/v2/tickets/maria.kowalska@example.org"
	id2 := wantOK(t, p.do(t, put))
	attendee := request{Method: "POST", URL: "http://www.eventbriteapi.com/v3/events/wb_101/attendees/",
		Header: hdr("Authorization", "Bearer e2e-vendor-token", "Content-Type", "application/json", "X-Data-Purpose", "event_registration"),
		Body:   []byte(`{"email":"a@example.org","first_name":{"jan.zielinski@example.org":"5555 5555 5555 4444"},"last_name":"Z"}`)}
	id3 := refused(t, p, attendee, 403, "card_number").DecisionID
	for _, id := range []string{id1, id2, id3} {
		if !p.waitLog(t, id) {
			t.Fatalf("no log line for %s:\n%s", id, p.logs)
		}
	}
	logs := p.logs.String()
	for _, v := range []string{"4111111111111111", "maria.kowalska@example.org", "jan.zielinski@example.org"} {
		if strings.Contains(logs, v) {
			t.Errorf("the proxy's log holds the payload value %q", v)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs)
	}
}
