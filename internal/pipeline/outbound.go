package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/engine"
)

// Outbound is what of a request may leave, ready to send: the vendor's URL
// as the decision says to reach it, the filtered headers and query, and the
// body. The reports say what was kept, removed and transformed (paths and
// names only), for `proxy explain` and the ledger.
type Outbound struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
	// ContentLength is the length of a streamed body (-1: unknown); a
	// buffered Body's is len(Body).
	ContentLength int64

	BodyReport, QueryReport, HeaderReport *filters.Report

	held   *heldBufs   // the pooled buffers Body lives in
	stream *scanReader // an opaque body streamed through the card guard, instead of Body
}

// Stream is the body when it streams to the vendor (an opaque body from a
// front end that sends it itself), nil when it is Body.
func (o *Outbound) Stream() io.Reader {
	if o.stream == nil {
		return nil
	}
	return o.stream
}

// HTTPRequest is the outbound request for an http.RoundTripper. Its body
// holds a reference to the exchange's pooled buffers until the transport
// closes it, so they are reused only once nothing can still send from them.
func (o *Outbound) HTTPRequest(ctx context.Context) *http.Request {
	out := (&http.Request{
		Method:        o.Method,
		URL:           o.URL,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        o.Header,
		Host:          o.URL.Host,
		ContentLength: int64(len(o.Body)),
	}).WithContext(ctx)
	if o.stream != nil {
		// No GetBody: a streamed body cannot be sent twice.
		out.Body, out.ContentLength = io.NopCloser(o.stream), o.ContentLength
		return out
	}
	if len(o.Body) > 0 {
		held, body := o.held, o.Body
		newBody := func() io.ReadCloser {
			held.refs.Add(1)
			return &releasingBody{Reader: bytes.NewReader(body), held: held}
		}
		out.Body = newBody()
		out.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	} else {
		out.Body = http.NoBody
	}
	return out
}

// minimized is a request cut down by a decision, before it is addressed.
type minimized struct {
	Query  string
	Header http.Header
	Body   []byte

	BodyReport, QueryReport, HeaderReport *filters.Report
}

// minimize applies d to the headers, query and body, writing a filtered
// body into dst. It is the one place a request is cut down.
func minimize(dst []byte, d *engine.Decision, header http.Header, rawQuery string, body []byte) (*minimized, error) {
	query, qrep, err := d.FilterQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	removeHopByHop(h)
	hrep := d.FilterHeaders(h)
	filtered, brep, err := d.FilterBody(dst, header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	if d.Body == engine.BodyNone {
		h.Del("Content-Type")
	}
	h.Del("Content-Length")
	return &minimized{Query: query, Header: h, Body: filtered, BodyReport: brep, QueryReport: qrep, HeaderReport: hrep}, nil
}

// original is what dry run sends: the app's own headers, minus Pare's
// control headers and hop-by-hop headers, which never leave.
func original(header http.Header) http.Header {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	removeHopByHop(h)
	for k := range h {
		lk := filters.LowerHeader(k)
		if strings.HasPrefix(lk, "x-data-") || strings.HasPrefix(lk, "x-legal-") || strings.HasPrefix(lk, "x-pare-") {
			delete(h, k)
		}
	}
	h.Del("Content-Length")
	return h
}

// outbound addresses m to the vendor: TLS and port come from the decision,
// never from how the app named the vendor.
func (x *Exchange) outbound(m *minimized) *Outbound {
	d := x.decision
	scheme, port := "https", d.Port
	if !d.TLS {
		scheme = "http"
	}
	host := x.req.Host
	if !(scheme == "https" && port == 443) && !(scheme == "http" && port == 80) {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return &Outbound{
		Method:       x.req.Method,
		URL:          sendURL(scheme, host, x.path, m.Query),
		Header:       m.Header,
		Body:         m.Body,
		BodyReport:   m.BodyReport,
		QueryReport:  m.QueryReport,
		HeaderReport: m.HeaderReport,
		held:         x.held,
	}
}

// sendURL is the vendor's URL for the checked, decoded path. net/url leaves
// ";" unescaped in a path, and servers read it as the start of a path
// parameter ("/recordings/..;x/" is "/recordings/../" to Tomcat): a ";"
// here was sent percent-encoded (cleanPath refuses a raw one), so it is
// data, and it leaves encoded, as Envoy forwards a %3B.
func sendURL(scheme, host, path, query string) *url.URL {
	u := &url.URL{Scheme: scheme, Host: host, Path: path, RawQuery: query}
	if strings.Contains(path, ";") {
		u.RawPath = strings.ReplaceAll(u.EscapedPath(), ";", "%3B")
	}
	return u
}

// upstreamError turns a failed send into a refusal code.
func upstreamError(vendor string, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &engine.Error{Code: engine.CodeUpstreamTimeout, Reason: fmt.Sprintf("%s did not answer in time", vendor), Err: err}
	}
	return &engine.Error{Code: engine.CodeUpstreamError, Reason: fmt.Sprintf("%s could not be reached", vendor), Err: err}
}

// hopByHop headers belong to one connection, never forwarded (RFC 9110 7.6.1).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// RemoveHopByHop deletes the hop-by-hop headers of h, and those its
// Connection header names.
func RemoveHopByHop(h http.Header) { removeHopByHop(h) }

func removeHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k) // already canonical: Del would canonicalise each again
	}
}
