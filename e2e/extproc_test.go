package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestExtprocBinary runs the real `proxy extproc` and plays Envoy's side of
// the protocol over gRPC: the body Envoy would send on is the golden body
// `proxy serve` sends, a refusal is an immediate response, and both are in
// the ledger.
func TestExtprocBinary(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{Args: []string{"--listen", "127.0.0.1:0"}, Extproc: true})
	conn, err := grpc.NewClient(p.Egress, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := extprocv3.NewExternalProcessorClient(conn)
	exchange := func(msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := client.Process(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []*extprocv3.ProcessingResponse
		for _, m := range msgs {
			if err := s.Send(m); err != nil {
				t.Fatal(err)
			}
			r, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
			if r.GetImmediateResponse() != nil {
				break
			}
		}
		_ = s.CloseSend()
		return out
	}
	hdrs := func(eos bool, kv ...string) *extprocv3.ProcessingRequest {
		hm := &corev3.HeaderMap{}
		for i := 0; i < len(kv); i += 2 {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
		}
		return &extprocv3.ProcessingRequest{
			ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED},
			Request:        &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hm, EndOfStream: eos}},
		}
	}
	zd := zendeskCase(t)
	kv := []string{":method", "POST", ":scheme", "http", ":authority", hostZendesk, ":path", "/api/v2/tickets.json"}
	for _, h := range zd.Header {
		kv = append(kv, h[0], h[1])
	}
	rs := exchange(hdrs(false, kv...),
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: zd.Body, EndOfStream: true}}},
		&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: ":status", RawValue: []byte("200")}}}}}})
	if len(rs) != 3 {
		t.Fatalf("responses %v", rs)
	}
	body := rs[1].GetRequestBody().GetResponse().GetBodyMutation().GetBody()
	want := readFile(t, testdata("golden/zendesk-ticket.golden"))
	if i := indexBlank(want); i < 0 || string(body) != string(want[i:]) {
		t.Errorf("the body Envoy would send:\n%s\nwant the golden body of serve:\n%s", body, want)
	}
	var id string
	for _, o := range rs[2].GetResponseHeaders().GetResponse().GetHeaderMutation().GetSetHeaders() {
		if o.GetHeader().GetKey() == "x-pare-decision-id" {
			id = string(o.GetHeader().GetRawValue())
		}
	}
	recs := waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, id)) >= 2 })
	if o := kindOf(t, recordsOf(recs, id), "outcome"); o.Outcome != "200" {
		t.Errorf("outcome %q", o.Outcome)
	}

	rs = exchange(hdrs(true, ":method", "GET", ":scheme", "http", ":authority", "api.tracking-pixels.example", ":path", "/collect", "x-data-purpose", "analytics"))
	ir := rs[0].GetImmediateResponse()
	var ref refusal
	if ir == nil || json.Unmarshal(ir.GetBody(), &ref) != nil || ir.GetStatus().GetCode() != 403 || ref.Error != "unknown_vendor" {
		t.Fatalf("unknown vendor: %v", rs[0])
	}
	recs = waitLedger(t, p.Ledger, func(rs []ledgerRecord) bool { return len(recordsOf(rs, ref.DecisionID)) > 0 })
	if r := recordsOf(recs, ref.DecisionID)[0]; r.Kind != "refusal" {
		t.Errorf("ledger %+v", r)
	}
}

// indexBlank is where the body of a golden rendering starts.
func indexBlank(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\n' && b[i+1] == '\n' {
			return i + 2
		}
	}
	return -1
}
