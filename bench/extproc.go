package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// extprocClient plays Envoy for row 5: for each request of the workload it
// runs one ext_proc stream against `proxy extproc` as Envoy's ext_proc
// filter does with the settings the README recommends (request body
// BUFFERED, response headers sent): the request headers (values in
// raw_value, protocol_config announcing BUFFERED), the body, and — after it
// has sent the mutated request to the vendor, as Envoy's router would — the
// vendor's response headers. An ImmediateResponse is the app's answer, and
// nothing goes to the vendor.
//
// Envoy keeps one HTTP/2 connection to the ext_proc cluster per worker
// thread and opens a stream per request on it; on this 2-core machine
// Envoy would run 2 workers, hence 2 connections.
type extprocClient struct {
	conns  []*grpc.ClientConn
	procs  []extprocv3.ExternalProcessorClient
	vendor *http.Client // the router's connection pool to the vendors
	next   atomic.Uint64
}

// extprocMaxMsg bounds a gRPC message: a whole buffered body (10 MiB at
// most in the workload) and its headers.
const extprocMaxMsg = 64 << 20

func newExtprocClient(addr, stub string, roots *x509.CertPool, conc int) *extprocClient {
	c := &extprocClient{}
	for range min(conc, 2) {
		// NewClient only fails on a malformed target or options; a dial
		// failure shows as the first stream's error.
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(extprocMaxMsg), grpc.MaxCallSendMsgSize(extprocMaxMsg)))
		if err != nil {
			panic(fmt.Sprintf("bench: grpc client for %s: %v", addr, err))
		}
		c.conns = append(c.conns, cc)
		c.procs = append(c.procs, extprocv3.NewExternalProcessorClient(cc))
	}
	tr := mustVendorTransport(stub, roots)
	tr.MaxIdleConnsPerHost = max(conc, 2)
	c.vendor = &http.Client{Transport: tr}
	return c
}

func (c *extprocClient) close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
	c.vendor.CloseIdleConnections()
}

// do sends r as Envoy would with Pare as its ext_proc filter and returns
// the app's answer: the vendor's status, or Pare's immediate response.
func (c *extprocClient) do(ctx context.Context, r *request) (status int, vendorBytes int64, msg string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := c.procs[c.next.Add(1)%uint64(len(c.procs))].Process(ctx)
	if err != nil {
		return 0, 0, "", err
	}
	// What Envoy's HTTP connection manager has of the request when the
	// filter runs: the pseudo-headers, the app's headers, the framing, and
	// what Envoy adds itself (x-forwarded-proto, x-request-id).
	hdrs := []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte(r.Host)},
		{Key: ":path", RawValue: []byte(r.Path)},
		{Key: ":method", RawValue: []byte(r.Method)},
		{Key: ":scheme", RawValue: []byte("http")},
	}
	for _, h := range r.appHeaders() {
		hdrs = append(hdrs, &corev3.HeaderValue{Key: strings.ToLower(h[0]), RawValue: []byte(h[1])})
	}
	if r.Body != nil {
		hdrs = append(hdrs, &corev3.HeaderValue{Key: "content-length", RawValue: []byte(strconv.Itoa(len(r.Body)))})
	}
	hdrs = append(hdrs, &corev3.HeaderValue{Key: "x-forwarded-proto", RawValue: []byte("http")},
		&corev3.HeaderValue{Key: "x-request-id", RawValue: []byte(requestID())})
	hasBody := len(r.Body) > 0
	first := &extprocv3.ProcessingRequest{
		ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED},
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers: &corev3.HeaderMap{Headers: hdrs}, EndOfStream: !hasBody}},
	}
	resp, err := exchange(s, first)
	if err != nil {
		return 0, 0, "", err
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		return immediate(s, r, ir)
	}
	mutations := []*extprocv3.HeaderMutation{resp.GetRequestHeaders().GetResponse().GetHeaderMutation()}
	body := r.Body
	if hasBody {
		resp, err = exchange(s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: r.Body, EndOfStream: true}}})
		if err != nil {
			return 0, 0, "", err
		}
		if ir := resp.GetImmediateResponse(); ir != nil {
			return immediate(s, r, ir)
		}
		cr := resp.GetRequestBody().GetResponse()
		if cr == nil {
			return 0, 0, "", fmt.Errorf("ext_proc: answer to the body is %T", resp.GetResponse())
		}
		mutations = append(mutations, cr.GetHeaderMutation())
		switch m := cr.GetBodyMutation().GetMutation().(type) {
		case *extprocv3.BodyMutation_Body:
			body = m.Body
		case *extprocv3.BodyMutation_ClearBody:
			body = nil
		case nil:
		default:
			return 0, 0, "", fmt.Errorf("ext_proc: body mutation %T", m)
		}
	}

	// Envoy's router: the request as mutated, over TLS to the vendor.
	h := map[string]string{}
	for _, hv := range hdrs {
		h[hv.GetKey()] = string(hv.GetRawValue())
	}
	for _, m := range mutations {
		for _, k := range m.GetRemoveHeaders() {
			delete(h, k)
		}
		for _, o := range m.GetSetHeaders() {
			h[o.GetHeader().GetKey()] = headerValue(o.GetHeader())
		}
	}
	if hasBody && h["content-length"] != strconv.Itoa(len(body)) {
		return 0, 0, "", fmt.Errorf("ext_proc: content-length %q for a body of %d bytes: Envoy would reset the request", h["content-length"], len(body))
	}
	up, err := http.NewRequestWithContext(ctx, h[":method"], "https://"+h[":authority"]+h[":path"], bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", err
	}
	for k, v := range h {
		if !strings.HasPrefix(k, ":") && k != "content-length" {
			up.Header.Set(k, v)
		}
	}
	vresp, err := c.vendor.Do(up)
	if err != nil {
		return 0, 0, "", err
	}
	defer vresp.Body.Close()
	if _, err := io.Copy(io.Discard, vresp.Body); err != nil {
		return 0, 0, "", err
	}
	resp, err = exchange(s, &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":status", RawValue: []byte(strconv.Itoa(vresp.StatusCode))},
			{Key: "content-type", RawValue: []byte(vresp.Header.Get("Content-Type"))},
		}}}}})
	if err != nil {
		return 0, 0, "", err
	}
	if resp.GetResponseHeaders() == nil {
		return 0, 0, "", fmt.Errorf("ext_proc: answer to the response headers is %T", resp.GetResponse())
	}
	if err := finish(s); err != nil {
		return 0, 0, "", err
	}
	vb, _ := strconv.ParseInt(vresp.Header.Get(ReceivedHeader), 10, 64)
	if vresp.StatusCode != http.StatusOK {
		msg = r.Method + " " + r.Host + r.Path + ": vendor answered " + vresp.Status
	}
	return vresp.StatusCode, vb, msg, nil
}

// exchange sends one message and waits for its answer, as Envoy does.
func exchange(s extprocv3.ExternalProcessor_ProcessClient, m *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	if err := s.Send(m); err != nil {
		return nil, fmt.Errorf("ext_proc send: %w", err)
	}
	resp, err := s.Recv()
	if err != nil {
		return nil, fmt.Errorf("ext_proc recv: %w", err)
	}
	return resp, nil
}

// finish half-closes the stream and waits for the server to end it.
func finish(s extprocv3.ExternalProcessor_ProcessClient) error {
	if err := s.CloseSend(); err != nil {
		return err
	}
	if _, err := s.Recv(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("ext_proc: stream not ended after the last message: %v", err)
	}
	return nil
}

// immediate is the app's answer when Pare answers in Envoy's place.
func immediate(s extprocv3.ExternalProcessor_ProcessClient, r *request, ir *extprocv3.ImmediateResponse) (int, int64, string, error) {
	if err := finish(s); err != nil {
		return 0, 0, "", err
	}
	code := int(ir.GetStatus().GetCode())
	return code, 0, r.Method + " " + r.Host + r.Path + ": " + oneLine(string(ir.GetBody()), 300), nil
}

func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.GetRawValue()) > 0 {
		return string(hv.GetRawValue())
	}
	return hv.GetValue()
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
