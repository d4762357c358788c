package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/pare-dev/pare/internal/enginetest"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pipeline"
)

// envoy is a gRPC client that plays Envoy's side of ext_proc over a real
// connection to a running server.
type envoy struct {
	t      testing.TB
	client extprocv3.ExternalProcessorClient
	ledger string
}

func start(t testing.TB, service string, maxBody int64) *envoy {
	t.Helper()
	dir := t.TempDir()
	eng := enginetest.Bundled(t)
	ledPath := filepath.Join(dir, "ledger.jsonl")
	led, err := ledger.Open(ledPath, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	pl, err := pipeline.New(pipeline.Config{Engine: eng, Ledger: led, Service: service, MaxBody: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(srv, New(pl))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &envoy{t: t, client: extprocv3.NewExternalProcessorClient(conn), ledger: ledPath}
}

// headers builds an HttpHeaders message; values go in raw_value, as Envoy
// sends them, unless inValue.
func headers(eos, inValue bool, kv ...string) *extprocv3.HttpHeaders {
	hm := &corev3.HeaderMap{}
	for i := 0; i < len(kv); i += 2 {
		hv := &corev3.HeaderValue{Key: kv[i]}
		if inValue {
			hv.Value = kv[i+1]
		} else {
			hv.RawValue = []byte(kv[i+1])
		}
		hm.Headers = append(hm.Headers, hv)
	}
	return &extprocv3.HttpHeaders{Headers: hm, EndOfStream: eos}
}

// exchange sends msgs on one stream, one at a time as Envoy does, and
// returns the server's answer to each.
func (e *envoy) exchange(msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.client.Process(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*extprocv3.ProcessingResponse
	for i, m := range msgs {
		if i == 0 && m.ProtocolConfig == nil {
			m.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED}
		}
		if err := s.Send(m); err != nil {
			e.t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			e.t.Fatalf("message %d: %v", i, err)
		}
		out = append(out, r)
		if r.GetImmediateResponse() != nil {
			break // Envoy stops the stream after an immediate response
		}
	}
	_ = s.CloseSend()
	return out
}

func reqHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: h}}
}

func reqBody(b []byte) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: b, EndOfStream: true}}}
}

func respHeaders(status string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: headers(false, false, ":status", status, "content-type", "application/json")}}
}

func set(k, v string) *corev3.HeaderValueOption { return setHeader(k, v) }

func wantEqual(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Errorf("%s:\n got  %s\n want %s", what, protojson.Format(got), protojson.Format(want))
	}
}

func readRepo(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenBody is the body part of an e2e golden: what the vendor must
// receive, whichever front end sent it.
func goldenBody(t testing.TB, name string) []byte {
	g := readRepo(t, "e2e/testdata/golden/"+name)
	_, body, ok := bytes.Cut(g, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s has no body", name)
	}
	return body
}

var appHeaders = []string{
	"authorization", "Bearer e2e-vendor-token", "accept", "application/json",
	"user-agent", "webinar-co-app/3.2 (maria.kowalska@example.org)", "x-request-id", "req-81be2",
	"cookie", "session=sess_81be2",
}

// An allowed request with a body: the body comes back filtered, byte for
// byte what the built-in proxy sends (the e2e golden), and the header
// mutation removes every header the contract does not allow and sets the
// new content-length; the response phase records the vendor's status.
func TestAllowedWithBody(t *testing.T) {
	e := start(t, "billing", 0)
	ticket := readRepo(t, "e2e/testdata/payloads/ticket.json")
	h := append([]string{":method", "POST", ":scheme", "http", ":authority", "webinarco.zendesk.com", ":path", "/api/v2/tickets.json",
		"content-type", "application/json", "content-length", "999", "x-data-purpose", "support", "x-data-subject", "u-123"}, appHeaders...)
	rs := e.exchange(reqHeaders(headers(false, false, h...)), reqBody(ticket), respHeaders("201"))
	if len(rs) != 3 {
		t.Fatalf("%d responses, want 3: %v", len(rs), rs)
	}
	wantEqual(t, "headers response", rs[0], headersContinue(nil))
	want := goldenBody(t, "zendesk-ticket.golden")
	wantEqual(t, "body response", rs[1], &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{
				RemoveHeaders: []string{"x-data-purpose", "x-data-subject", "user-agent", "x-request-id", "cookie"},
				SetHeaders:    []*corev3.HeaderValueOption{set("content-length", "399")},
			},
			BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: want}},
		},
	}}})
	id := ""
	for _, o := range rs[2].GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if o.GetHeader().GetKey() == "x-pare-decision-id" {
			id = string(o.GetHeader().GetRawValue())
		}
	}
	if id == "" {
		t.Fatal("the response phase did not add x-pare-decision-id")
	}
	recs := e.records(t, id, 2)
	if len(recs) != 2 || recs[0].Kind != "disclosure" || recs[1].Kind != "outcome" || recs[1].Outcome != "201" {
		t.Fatalf("ledger for %s: %+v", id, recs)
	}
	if recs[0].BytesOut != int64(len(want)) || recs[0].Vendor != "zendesk" {
		t.Errorf("disclosure %+v", recs[0])
	}
}

func (e *envoy) records(t testing.TB, id string, want int) []ledger.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var out []ledger.Record
		b, _ := os.ReadFile(e.ledger)
		for _, line := range bytes.Split(b, []byte("\n")) {
			var r ledger.Record
			if json.Unmarshal(line, &r) == nil && r.DecisionID == id {
				out = append(out, r)
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A bodiless request finishes at the headers: the query is filtered through
// :path, values are read from value as well as raw_value.
func TestBodilessQueryFiltered(t *testing.T) {
	e := start(t, "billing", 0)
	for _, inValue := range []bool{false, true} {
		h := append([]string{":method", "GET", ":scheme", "http", ":authority", "api.stripe.com",
			":path", "/v1/customers/cus_9f3b2c?expand=default_source&email=maria.kowalska%40example.org",
			"x-data-purpose", "payment"}, appHeaders...)
		rs := e.exchange(reqHeaders(headers(true, inValue, h...)))
		wantEqual(t, "headers response", rs[0], headersContinue(&extprocv3.HeaderMutation{
			RemoveHeaders: []string{"x-data-purpose", "user-agent", "x-request-id", "cookie"},
			SetHeaders:    []*corev3.HeaderValueOption{set(":path", "/v1/customers/cus_9f3b2c?expand=default_source")},
		}))
	}
}

// Refusals are immediate responses with the proxy's status and JSON body;
// nothing goes on.
func TestRefusals(t *testing.T) {
	e := start(t, "support", 1024)
	base := []string{":method", "POST", ":scheme", "http", ":path", "/api/v2/tickets.json", "content-type", "application/json"}
	tests := []struct {
		name   string
		msgs   []*extprocv3.ProcessingRequest
		status int
		code   string
	}{
		{"unknown vendor", []*extprocv3.ProcessingRequest{reqHeaders(headers(false, false, append(base, ":authority", "tracker.example", "x-data-purpose", "support")...))}, 403, "unknown_vendor"},
		{"no purpose", []*extprocv3.ProcessingRequest{reqHeaders(headers(false, false, append(base, ":authority", "webinarco.zendesk.com")...))}, 403, "purpose_required"},
		{"malformed body", []*extprocv3.ProcessingRequest{
			reqHeaders(headers(false, false, append(base, ":authority", "webinarco.zendesk.com", "x-data-purpose", "support")...)),
			reqBody([]byte(`{"ticket": {"subject": "oops", }`))}, 400, "malformed_body"},
		{"too large", []*extprocv3.ProcessingRequest{
			reqHeaders(headers(false, false, append(base, ":authority", "webinarco.zendesk.com", "x-data-purpose", "support")...)),
			reqBody([]byte(`{"ticket":{"subject":"` + strings.Repeat("x", 2000) + `"}}`))}, 413, "body_too_large"},
		{"declared too large", []*extprocv3.ProcessingRequest{
			reqHeaders(headers(false, false, append(base, ":authority", "webinarco.zendesk.com", "x-data-purpose", "support", "content-length", "5000")...))}, 413, "body_too_large"},
		{"encoded ? in the path", []*extprocv3.ProcessingRequest{reqHeaders(headers(true, false,
			":method", "GET", ":scheme", "http", ":authority", "api.stripe.com", ":path", "/v1/customers/x%3Fexpand=all", "x-data-purpose", "payment"))}, 400, "malformed_path"},
		{"card number in an opaque upload", []*extprocv3.ProcessingRequest{
			reqHeaders(headers(false, false, ":method", "PUT", ":scheme", "http", ":authority", "webinar-co-media.storage.example-cloud.com",
				":path", "/recordings/2026/notes.txt", "content-type", "text/plain", "x-data-purpose", "hosting")),
			reqBody([]byte("notes: card 4111 1111 1111 1111, thanks"))}, 403, "card_number"},
		{"card number in the path", []*extprocv3.ProcessingRequest{reqHeaders(headers(false, false, ":method", "PUT", ":scheme", "http",
			":authority", "webinarco.zendesk.com", ":path", "/api/v2/tickets/4111111111111111", "content-type", "application/json", "x-data-purpose", "support")),
			reqBody([]byte(`{"ticket":{"status":"solved"}}`))}, 403, "card_number"},
		{"lower-case method", []*extprocv3.ProcessingRequest{reqHeaders(headers(true, false,
			":method", "get", ":scheme", "http", ":authority", "api.stripe.com", ":path", "/v1/customers/x", "x-data-purpose", "payment"))}, 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := e.exchange(tt.msgs...)
			ir := rs[len(rs)-1].GetImmediateResponse()
			if ir == nil {
				t.Fatalf("no immediate response: %v", rs)
			}
			var body struct {
				Error, Reason string
				DecisionID    string `json:"decision_id"`
			}
			if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
				t.Fatal(err)
			}
			if int(ir.GetStatus().GetCode()) != tt.status || body.Error != tt.code {
				t.Fatalf("got %d %q (%s), want %d %q", ir.GetStatus().GetCode(), body.Error, body.Reason, tt.status, tt.code)
			}
			recs := e.records(t, body.DecisionID, 1)
			if len(recs) == 0 || recs[0].Kind != "refusal" || recs[0].Outcome != tt.code {
				t.Errorf("ledger %+v, want a %s refusal", recs, tt.code)
			}
		})
	}
}

// A filter that would send the body unbuffered (request_body_mode NONE or
// STREAMED) cannot let Pare filter it: requests with a body are refused.
func TestUnbufferedBodyRefused(t *testing.T) {
	e := start(t, "support", 0)
	m := reqHeaders(headers(false, false, ":method", "POST", ":scheme", "http", ":authority", "webinarco.zendesk.com",
		":path", "/api/v2/tickets.json", "content-type", "application/json", "x-data-purpose", "support"))
	m.ProtocolConfig = &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_STREAMED}
	rs := e.exchange(m)
	if ir := rs[0].GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 503 {
		t.Fatalf("unbuffered body: %v, want an immediate 503", rs[0])
	}
}
