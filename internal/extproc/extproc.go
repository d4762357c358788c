// Package extproc is Pare as an Envoy external processor: it implements
// envoy.service.ext_proc.v3.ExternalProcessor on the same pipeline as the
// built-in proxy, so an Envoy (or Istio) sidecar minimises, card-guards and
// records exactly what `proxy serve` would. OPA's own Envoy plugin speaks
// ext_authz and can only allow or deny; ext_proc lets Pare rewrite the
// request it allows.
//
// One gRPC stream is one HTTP request. The request headers are decided at
// once: a refusal is an ImmediateResponse with the proxy's JSON error body
// and status, and a bodiless request is minimised there and then. A request
// with a body must reach Pare whole — the filter's request_body_mode must be
// BUFFERED, which Envoy announces in the stream's protocol_config — and is
// answered with a BodyMutation holding the filtered body and a header
// mutation that removes every header the contract does not allow, sets
// content-length and rewrites :path (the filtered query). A mode_override
// cannot stand in for that setting: if the filter ignored it (its
// allow_mode_override is off), Envoy would forward the body Pare never saw,
// so a body that would arrive unbuffered is refused instead.
//
// The disclosure record is durable before Pare lets the request go on — the
// ext_proc filter may be configured to skip the response headers, and then
// no later message could hold the vendor's answer back. The response
// headers, when they come, record the vendor's status in the ledger.
package extproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
)

// Server is the ExternalProcessor service.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
	pl  *pipeline.Pipeline
	log *slog.Logger
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// New returns a server running requests through pl.
func New(pl *pipeline.Pipeline) *Server {
	return &Server{pl: pl, log: pl.Logger()}
}

// stream is the state of one HTTP request's stream.
type stream struct {
	s         *Server
	x         *pipeline.Exchange
	buffered  bool          // Envoy sends request bodies whole (protocol_config)
	headers   []headerEntry // the request headers as Envoy sent them, lower-case names
	rawPath   string        // :path as sent
	decided   bool
	forwarded bool // the request was let go: the response phase records the outcome
	done      bool // an immediate response ended the exchange
}

type headerEntry struct{ name, value string }

// Process handles one HTTP request's messages in Envoy's order: request
// headers, then (BUFFERED) the request body, then the response headers.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	ctx := srv.Context()
	st := &stream{s: s}
	defer func() {
		if st.x != nil {
			st.x.End()
		}
	}()
	for {
		req, err := srv.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if pc := req.GetProtocolConfig(); pc != nil {
			st.buffered = pc.GetRequestBodyMode() == filterv3.ProcessingMode_BUFFERED
		}
		var resp *extprocv3.ProcessingResponse
		switch r := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = st.requestHeaders(ctx, r.RequestHeaders)
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = st.requestBody(ctx, r.RequestBody)
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = st.responseHeaders(r.ResponseHeaders)
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
		default:
			return status.Error(codes.InvalidArgument, "pare: empty ProcessingRequest")
		}
		if req.GetObservabilityMode() {
			continue // responses are ignored in observability mode
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
	}
}

// requestHeaders decides the request. A bodiless request is minimised and
// released here; one with a body waits for it.
func (st *stream) requestHeaders(ctx context.Context, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if st.x != nil {
		return st.refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: "a second set of request headers on one stream"})
	}
	req := st.request(h)
	st.x = st.s.pl.Begin(req)
	hasBody := !h.GetEndOfStream()
	if hasBody && !st.buffered {
		return st.refuse(&engine.Error{Code: engine.CodeEvalError,
			Reason: "Envoy's ext_proc filter must send request bodies to Pare whole (processing_mode.request_body_mode: BUFFERED); this one does not, so the request is refused rather than sent unfiltered"})
	}
	if hasBody && st.s.pl.DecidesOnBody() {
		return headersContinue(nil) // decided once the body is here
	}
	if err := st.x.Decide(ctx); err != nil {
		return st.refuse(err)
	}
	st.decided = true
	if hasBody {
		// A declared length over the limit is refused here, with a ledger
		// record; Envoy would otherwise answer 413 itself, unrecorded.
		if req.ContentLength > st.s.pl.MaxBody() {
			return st.refuse(&engine.Error{Code: engine.CodeBodyTooLarge,
				Reason: fmt.Sprintf("the body is %d bytes; the limit is %d", req.ContentLength, st.s.pl.MaxBody())})
		}
		return headersContinue(nil)
	}
	out, err := st.release(ctx)
	if err != nil {
		return st.refuse(err)
	}
	return headersContinue(st.mutation(out, false))
}

// requestBody minimises the buffered body and releases the request.
func (st *stream) requestBody(ctx context.Context, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	if st.x == nil || st.done {
		return st.refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: "a request body without its headers"})
	}
	if st.forwarded {
		return st.refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: "a second request body on one stream"})
	}
	st.x.SetBody(bytes.NewReader(b.GetBody()), int64(len(b.GetBody())))
	if !st.decided {
		if err := st.x.Decide(ctx); err != nil {
			return st.refuse(err)
		}
		st.decided = true
	}
	out, err := st.release(ctx)
	if err != nil {
		return st.refuse(err)
	}
	m := st.mutation(out, true)
	body := &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out.Body}}
	if len(out.Body) == 0 {
		body = &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_ClearBody{ClearBody: true}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{
		Response: &extprocv3.CommonResponse{HeaderMutation: m, BodyMutation: body},
	}}}
}

// release minimises the request, records the disclosure and waits until
// the record is durable: after this, Envoy sends the request to the vendor.
func (st *stream) release(ctx context.Context) (*pipeline.Outbound, error) {
	out, err := st.x.Minimize(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.x.Disclose(ctx); err != nil {
		return nil, err
	}
	if err := st.x.Durable(ctx); err != nil {
		return nil, err
	}
	st.forwarded = true
	return out, nil
}

// responseHeaders records the vendor's answer (or Envoy's own reply).
func (st *stream) responseHeaders(h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	resp := &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{}}
	if st.x != nil && st.forwarded && !st.done {
		code := 0
		for _, hv := range h.GetHeaders().GetHeaders() {
			if hv.GetKey() == ":status" {
				code, _ = strconv.Atoi(headerValue(hv))
			}
		}
		st.x.Complete(code)
		st.done = true
		resp.Response.HeaderMutation = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			setHeader("x-pare-decision-id", st.x.ID()),
		}}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: resp}}
}

// refuse ends the exchange and answers the app in Envoy's place, with the
// same status and JSON body as the built-in proxy.
func (st *stream) refuse(err error) *extprocv3.ProcessingResponse {
	if st.x == nil {
		st.x = st.s.pl.Begin(&pipeline.Request{Via: "extproc"})
	}
	rf := st.x.Refuse(err)
	st.done = true
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(rf.Status)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{
			setHeader("content-type", "application/json"),
			setHeader("x-pare-decision-id", rf.DecisionID),
		}},
		Body:    rf.JSON(),
		Details: "pare_" + string(rf.Code),
	}}}
}

func headersContinue(m *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{
		Response: &extprocv3.CommonResponse{HeaderMutation: m},
	}}}
}

// request turns Envoy's request headers into the pipeline's request.
// Envoy puts a value in value or raw_value depending on its version and
// configuration: both are read.
func (st *stream) request(h *extprocv3.HttpHeaders) *pipeline.Request {
	r := &pipeline.Request{Via: "extproc", Header: http.Header{}, ContentLength: -1, Scheme: "http"}
	for _, hv := range h.GetHeaders().GetHeaders() {
		name, value := strings.ToLower(hv.GetKey()), headerValue(hv)
		switch name {
		case ":method":
			// Not normalised: ext_proc cannot rewrite :method, so the
			// method the policy sees must be the one Envoy sends.
			r.Method = value
		case ":scheme":
			r.Scheme = strings.ToLower(value)
		case ":authority":
			host, port := splitAuthority(value)
			r.Host, r.Port = host, port
		case ":path":
			st.rawPath = value
			r.Path, r.RawQuery, _ = strings.Cut(value, "?")
		default:
			if strings.HasPrefix(name, ":") {
				continue
			}
			st.headers = append(st.headers, headerEntry{name, value})
			r.Header.Add(name, value)
			if name == "content-length" {
				if n, err := strconv.ParseInt(value, 10, 64); err == nil {
					r.ContentLength = n
				}
			}
		}
	}
	if r.Host == "" {
		r.Host, r.Port = splitAuthority(r.Header.Get("Host"))
	}
	return r
}

func splitAuthority(a string) (string, int) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		host, p = a, ""
	}
	port, _ := strconv.Atoi(p)
	return strings.TrimSuffix(strings.ToLower(host), "."), port
}

func headerValue(hv *corev3.HeaderValue) string {
	if len(hv.GetRawValue()) > 0 {
		return string(hv.GetRawValue())
	}
	return hv.GetValue()
}

// mutation turns what may leave into header changes: every request header
// not in out is removed, changed ones are set, :path carries the filtered
// query, and with a body content-length is its new length (Envoy keeps
// content-length in BUFFERED mode and refuses a body that does not match).
func (st *stream) mutation(out *pipeline.Outbound, withBody bool) *extprocv3.HeaderMutation {
	m := &extprocv3.HeaderMutation{}
	kept := map[string]string{}
	for k, vs := range out.Header {
		kept[strings.ToLower(k)] = strings.Join(vs, ", ")
	}
	orig := map[string][]string{}
	for _, e := range st.headers {
		orig[e.name] = append(orig[e.name], e.value)
	}
	removed := map[string]bool{}
	for _, e := range st.headers {
		// content-length is set below when there is a body, never removed:
		// the order Envoy applies removals and sets in is not specified.
		if _, ok := kept[e.name]; !ok && !removed[e.name] && e.name != "host" && e.name != "content-length" {
			removed[e.name] = true
			m.RemoveHeaders = append(m.RemoveHeaders, e.name)
		}
	}
	names := make([]string, 0, len(kept))
	for k := range kept {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if k == "content-length" || k == "host" {
			continue
		}
		if strings.Join(orig[k], ", ") != kept[k] {
			m.SetHeaders = append(m.SetHeaders, setHeader(k, kept[k]))
		}
	}
	if withBody {
		m.SetHeaders = append(m.SetHeaders, setHeader("content-length", strconv.Itoa(len(out.Body))))
	}
	path := out.URL.EscapedPath()
	if out.URL.RawQuery != "" {
		path += "?" + out.URL.RawQuery
	}
	if path != st.rawPath {
		m.SetHeaders = append(m.SetHeaders, setHeader(":path", path))
	}
	if len(m.SetHeaders) == 0 && len(m.RemoveHeaders) == 0 {
		return nil
	}
	return m
}

// setHeader writes the value in raw_value only, as Envoy asks of servers.
func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
