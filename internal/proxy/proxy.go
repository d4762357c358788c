package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
)

// Recorder is where disclosures are recorded. Append must return only once
// the record is durable: the proxy sends nothing before it returns. Submit
// queues a record without waiting: used for the outcome that follows a
// disclosure already on disk, so the app's connection is not held for a
// second fsync.
//
// Write puts a record in the file and returns a wait for its durability:
// the disclosure is written before the request goes to the vendor and made
// durable (fsync, group commit) while the vendor answers; the proxy waits
// for it before the app sees the answer.
type Recorder interface {
	Append(ctx context.Context, r *ledger.Record) error
	Write(ctx context.Context, r *ledger.Record) (wait func(context.Context) error, err error)
	Submit(r *ledger.Record) error
}

// Config holds what a Proxy needs; Engine and Ledger are required.
type Config struct {
	Engine   *engine.Engine
	Ledger   Recorder
	Consents consent.Source // nil: no consent source, every subject has none
	Metrics  *Metrics       // nil: no metrics
	Logger   *slog.Logger
	Service  string // the workload identity: input.source.service
	MaxBody  int64  // bytes; 0 means 10 MiB
	// BodyMemory bounds the body bytes all requests hold at once (each
	// request is charged twice its body); 0 means DefaultBodyMemory.
	BodyMemory int64
	DryRun     bool
	Upstream   UpstreamOptions
}

// Proxy is the egress HTTP handler.
type Proxy struct {
	cfg       Config
	transport *http.Transport
	budget    *budget
	log       *slog.Logger
	m         *Metrics
}

var _ http.Handler = (*Proxy)(nil)

// Defaults for Config.
const (
	DefaultMaxBody    = 10 << 20
	DefaultBodyMemory = 256 << 20
)

// New validates cfg and builds the proxy and its upstream transport.
func New(cfg Config) (*Proxy, error) {
	if cfg.Engine == nil || cfg.Ledger == nil {
		return nil, errors.New("proxy: an engine and a ledger are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BodyMemory <= 0 {
		cfg.BodyMemory = DefaultBodyMemory
	}
	t, err := newTransport(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Proxy{cfg: cfg, transport: t, log: cfg.Logger, m: m, budget: newBudget(cfg.BodyMemory)}, nil
}

// Close releases idle upstream connections.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// target is where the app asked its request to go.
type target struct {
	scheme, host string
	port         int
	path, query  string
}

// targetOf accepts absolute-form requests (the app set HTTP_PROXY) and
// origin-form requests routed by their Host header.
func targetOf(r *http.Request) (target, error) {
	t := target{scheme: "http", path: r.URL.Path, query: r.URL.RawQuery}
	hostport := r.Host
	if r.URL.IsAbs() {
		t.scheme = strings.ToLower(r.URL.Scheme)
		hostport = r.URL.Host
	}
	if t.scheme != "http" && t.scheme != "https" {
		return t, fmt.Errorf("scheme %q is not supported", t.scheme)
	}
	if hostport == "" {
		return t, errors.New("the request names no host (absolute URL or Host header)")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	t.host = strings.TrimSuffix(strings.ToLower(host), ".")
	if t.host == "" {
		return t, errors.New("the request names no host")
	}
	switch {
	case port != "":
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return t, fmt.Errorf("bad port %q", port)
		}
		t.port = n
	case t.scheme == "https":
		t.port = 443
	default:
		t.port = 80
	}
	if t.path == "" {
		t.path = "/"
	}
	return t, nil
}

// credentialHeaders are put in the policy input by name only.
var credentialHeaders = map[string]bool{"authorization": true, "cookie": true, "proxy-authorization": true}

// InputFor builds the policy input for r as the proxy would, for a sidecar
// whose workload identity is service.
func InputFor(r *http.Request, service string) (*engine.Input, error) {
	t, err := targetOf(r)
	if err != nil {
		return nil, err
	}
	return buildInput(r, t, service), nil
}

func buildInput(r *http.Request, t target, service string) *engine.Input {
	in := &engine.Input{
		Method:     r.Method,
		Scheme:     t.scheme,
		Host:       t.host,
		Port:       t.port,
		Path:       t.path,
		Headers:    make(map[string]string, len(r.Header)),
		Purpose:    strings.TrimSpace(r.Header.Get("X-Data-Purpose")),
		Subject:    strings.TrimSpace(r.Header.Get("X-Data-Subject")),
		GPC:        strings.TrimSpace(r.Header.Get("X-Data-GPC")) == "1",
		LegalBasis: strings.TrimSpace(r.Header.Get("X-Legal-Basis")),
		Requester:  strings.TrimSpace(r.Header.Get("X-Data-Requester")),
		Approver:   strings.TrimSpace(r.Header.Get("X-Legal-Approver")),
		Service:    service,
	}
	if t.query != "" {
		if q, err := url.ParseQuery(t.query); err == nil {
			in.Query = q
		}
	}
	for k, vs := range r.Header {
		lk := filters.LowerHeader(k)
		if credentialHeaders[lk] {
			in.Headers[lk] = "[present]"
			continue
		}
		in.Headers[lk] = strings.Join(vs, ", ")
	}
	return in
}

// txn is one request's state, for the refusal, the log line and the ledger.
type txn struct {
	id            string
	start         time.Time
	in            *engine.Input
	policy        *engine.Policy
	decision      *engine.Decision
	dryRun        bool
	bytesIn       int64
	bytesOut      int64
	reports       []*filters.Report
	durable       func(context.Context) error // waits for the disclosure record's fsync
	held          *heldBufs
	releaseBudget func()
	// disclosed is set once the disclosure record is durable: from then on
	// the request's end is an outcome record, not a refusal.
	disclosed bool
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.m.inFlight.Inc()
	defer p.m.inFlight.Dec()
	tx := &txn{id: newID(), start: time.Now(), held: &heldBufs{}}
	tx.held.refs.Store(1)
	defer func() {
		tx.held.release()
		if tx.releaseBudget != nil {
			tx.releaseBudget()
		}
	}()
	w.Header().Set("X-Pare-Decision-Id", tx.id)

	if r.Method == http.MethodConnect {
		p.refuse(w, r, tx, http.StatusMethodNotAllowed, "connect_not_supported",
			"CONNECT (HTTPS_PROXY) is not supported yet: send plain HTTP to the sidecar (HTTP_PROXY) and Pare originates TLS to the vendor", nil)
		return
	}
	t, err := targetOf(r)
	if err != nil {
		p.refuse(w, r, tx, http.StatusBadRequest, string(engine.CodeBadRequest), err.Error(), nil)
		return
	}
	tx.in = buildInput(r, t, p.cfg.Service)
	tx.policy = p.cfg.Engine.Policy()
	pol := tx.policy
	if pol == nil {
		p.refuseCode(w, r, tx, engine.CodeNoPolicy, "no valid policy is loaded", nil)
		return
	}

	if p.cfg.Consents != nil && tx.in.Subject != "" && pol.NeedsConsents() {
		cs, err := p.cfg.Consents.Lookup(r.Context(), tx.in.Subject)
		if err != nil {
			p.m.consentErrors.Inc()
			p.log.Warn("consent lookup failed", "decision_id", tx.id, "err", err)
			tx.in.ConsentErr = "consent source unavailable"
		}
		for _, c := range cs {
			tx.in.Consents = append(tx.in.Consents, engine.Consent{
				Purpose: c.Purpose, Status: c.Status, Time: c.Time,
				Evidence: engine.Evidence{Action: c.Evidence.Action, Where: c.Evidence.Where, PolicyVersion: c.Evidence.PolicyVersion},
			})
		}
	}

	// The body is read only once the request is allowed, unless the policy
	// itself looks at it: a refusal never costs reading the body.
	var body []byte
	var bodyRead bool
	var bodyVal ast.Value
	if pol.NeedsBody() {
		if body, err = p.readBody(r, tx); err != nil {
			p.refuseErr(w, r, tx, err)
			return
		}
		bodyRead = true
		if bodyVal, err = engine.ParseBody(r.Header.Get("Content-Type"), body); err != nil {
			p.refuseErr(w, r, tx, err)
			return
		}
	}

	decStart := time.Now()
	d, err := p.cfg.Engine.Decide(r.Context(), pol, tx.in, bodyVal)
	p.m.decisionSeconds.Observe(time.Since(decStart).Seconds())
	if err != nil {
		p.refuseErr(w, r, tx, err)
		return
	}
	tx.decision = d
	// Dry run relaxes masking only: a refusal (unknown vendor, missing
	// consent, a blocked card number, a malformed body) is enforced in dry
	// run too, because dry run exists to try a contract's field list on a
	// vendor the app already talks to, not to open the proxy.
	if !d.Allow {
		p.refuseCode(w, r, tx, d.Code, d.Reason, nil)
		return
	}

	if !bodyRead {
		if body, err = p.readBody(r, tx); err != nil {
			p.refuseErr(w, r, tx, err)
			return
		}
	}
	tx.bytesIn = int64(len(body))

	out, err := p.minimize(r, tx, body)
	if err != nil {
		p.refuseErr(w, r, tx, err)
		return
	}
	// In dry run the original leaves and the ledger records what would have
	// been removed — unless the card guard redacted a card number: card data
	// reaches a vendor not entitled to it in no mode.
	tx.dryRun = (p.cfg.DryRun || d.DryRun) && len(tx.reports[0].Cards) == 0
	if tx.dryRun {
		out = p.original(r, tx, t, body)
	}
	tx.bytesOut = out.ContentLength

	// No disclosure without a record: the record of what is about to leave
	// is in the ledger file before the first byte goes to the vendor, and
	// durable (fsync) before the app hears anything back (see forward).
	rec := p.record(tx, ledger.KindDisclosure, "pending", 0)
	wait, err := p.cfg.Ledger.Write(context.WithoutCancel(r.Context()), rec)
	if err != nil {
		p.m.ledgerErrors.Inc()
		p.refuseCode(w, r, tx, engine.CodeLedgerError, "the disclosure ledger cannot be written, so nothing is sent", err)
		return
	}
	tx.disclosed = true
	tx.durable = wait
	p.forward(w, r, tx, out)
}

// outbound is the minimized request, ready to send.
type outbound struct {
	*http.Request
}

// Minimized is what of a request may leave under a decision.
type Minimized struct {
	Query        string
	Header       http.Header
	Body         []byte
	BodyReport   *filters.Report // body paths kept, removed, transformed
	QueryReport  *filters.Report
	HeaderReport *filters.Report
}

// Minimize applies d to r's query and headers and to body (r's body, already
// read). It is the one place a request is cut down: the proxy sends its
// result and `proxy explain` prints it.
func Minimize(d *engine.Decision, r *http.Request, body []byte) (*Minimized, error) {
	return minimizeInto(nil, d, r, body)
}

// minimizeInto is Minimize writing the filtered body into dst.
func minimizeInto(dst []byte, d *engine.Decision, r *http.Request, body []byte) (*Minimized, error) {
	query, qrep, err := d.FilterQuery(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	h := r.Header.Clone()
	removeHopByHop(h)
	hrep := d.FilterHeaders(h)
	filtered, brep, err := d.FilterBody(dst, r.Header.Get("Content-Type"), body)
	if err != nil {
		return nil, err
	}
	if d.Body == engine.BodyNone {
		h.Del("Content-Type")
	}
	h.Del("Content-Length")
	return &Minimized{Query: query, Header: h, Body: filtered, BodyReport: brep, QueryReport: qrep, HeaderReport: hrep}, nil
}

func (p *Proxy) minimize(r *http.Request, tx *txn, body []byte) (outbound, error) {
	var dst []byte
	if len(body) > 0 && tx.decision.Body == engine.BodyFilter {
		b := getBuf(len(body) + len(body)/8 + 512)
		tx.held.add(b)
		dst = *b
	}
	m, err := minimizeInto(dst, tx.decision, r, body)
	if err != nil {
		return outbound{}, err
	}
	tx.reports = append(tx.reports[:0], m.BodyReport, m.QueryReport, m.HeaderReport)
	t, _ := targetOf(r)
	return p.newOutbound(r, tx, t, m.Query, m.Header, m.Body), nil
}

// original is what dry run sends: the app's own payload, minus Pare's
// control headers and hop-by-hop headers, which never leave.
func (p *Proxy) original(r *http.Request, tx *txn, t target, body []byte) outbound {
	h := r.Header.Clone()
	removeHopByHop(h)
	for k := range h {
		lk := filters.LowerHeader(k)
		if strings.HasPrefix(lk, "x-data-") || strings.HasPrefix(lk, "x-legal-") || strings.HasPrefix(lk, "x-pare-") {
			delete(h, k)
		}
	}
	return p.newOutbound(r, tx, t, t.query, h, body)
}

func (p *Proxy) newOutbound(r *http.Request, tx *txn, t target, query string, h http.Header, body []byte) outbound {
	// Only allowed requests get here, so tx carries their decision: its
	// TLS and port say how the vendor is reached.
	scheme, port := "https", tx.decision.Port
	if !tx.decision.TLS {
		scheme = "http"
	}
	host := t.host
	if !(scheme == "https" && port == 443) && !(scheme == "http" && port == 80) {
		host = net.JoinHostPort(t.host, strconv.Itoa(port))
	}
	u := &url.URL{Scheme: scheme, Host: host, Path: t.path, RawPath: r.URL.RawPath, RawQuery: query}
	out := (&http.Request{
		Method:        r.Method,
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Host:          host,
		ContentLength: int64(len(body)),
	}).WithContext(r.Context())
	if len(body) > 0 {
		// body lives in pooled buffers: every reader the transport gets
		// holds a reference, so a buffer is reused only once nothing can
		// still send from it.
		held := tx.held
		newBody := func() io.ReadCloser {
			held.refs.Add(1)
			return &releasingBody{Reader: bytes.NewReader(body), held: held}
		}
		out.Body = newBody()
		out.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
	} else {
		out.Body = http.NoBody
	}
	h.Del("Content-Length")
	return outbound{out}
}

// readBody reads at most MaxBody bytes into a pooled buffer: a declared
// Content-Length above the limit is refused before a byte of the body is
// read, and the body's memory is charged to the budget before reading.
func (p *Proxy) readBody(r *http.Request, tx *txn) ([]byte, error) {
	max := p.cfg.MaxBody
	if r.ContentLength > max {
		return nil, &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is %d bytes; the limit is %d", r.ContentLength, max)}
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	charge, size := 2*max, int64(64<<10)
	if r.ContentLength > 0 {
		charge, size = 2*r.ContentLength, r.ContentLength
	}
	release, err := p.budget.acquire(r.Context(), charge)
	if err != nil {
		return nil, &engine.Error{Code: engine.CodeBadRequest, Reason: "the request ended while waiting for body memory", Err: err}
	}
	tx.releaseBudget = release
	bp := getBuf(int(size) + 1)
	tx.held.add(bp)
	buf := *bp
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > max {
			return nil, &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is larger than the limit of %d bytes", max)}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, &engine.Error{Code: engine.CodeBadRequest, Reason: "the request body could not be read", Err: err}
		}
	}
	*bp = buf
	return buf, nil
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, tx *txn, out outbound) {
	upStart := time.Now()
	resp, err := p.transport.RoundTrip(out.Request)
	vendor := tx.decision.Vendor
	p.m.upstreamSeconds.WithLabelValues(p.vendorLabel(tx)).Observe(time.Since(upStart).Seconds())
	// The app hears nothing — neither the vendor's answer nor its failure —
	// before the disclosure record is durable.
	if derr := tx.durable(context.WithoutCancel(r.Context())); derr != nil {
		if err == nil {
			resp.Body.Close()
		}
		p.m.ledgerErrors.Inc()
		// The request may have reached the vendor: this log line is the
		// record of last resort an operator reconciles the ledger with.
		p.log.Error("ledger: a disclosure may have left without a durable record",
			"decision_id", tx.id, "vendor", vendor, "host", tx.in.Host, "path", tx.in.Path,
			"purpose", tx.in.Purpose, "err", derr)
		p.refuseCode(w, r, tx, engine.CodeLedgerError, "the disclosure record could not be made durable, so the vendor's answer is withheld", derr)
		return
	}
	if err != nil {
		code, reason := engine.CodeUpstreamError, fmt.Sprintf("%s could not be reached", vendor)
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
			code, reason = engine.CodeUpstreamTimeout, fmt.Sprintf("%s did not answer in time", vendor)
		}
		p.refuseCode(w, r, tx, code, reason, err)
		return
	}
	defer resp.Body.Close()
	removeHopByHop(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("X-Pare-Decision-Id", tx.id)
	w.WriteHeader(resp.StatusCode)
	// Stream unbuffered: a response of unknown length (chunked, event
	// streams, long polls) is flushed after every read so it reaches the app
	// as it arrives. One with a Content-Length is copied straight through:
	// flushing each 32 KiB read of it only costs syscalls.
	stream := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	for {
		n, rerr := resp.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				break
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr != nil {
			break
		}
	}
	copyBufs.Put(bp)
	p.submitOutcome(tx, strconv.Itoa(resp.StatusCode), resp.StatusCode)
	p.finish(r, tx, strconv.Itoa(resp.StatusCode), resp.StatusCode, "forwarded", nil)
}

// finish records the outcome, counts and logs the request.
func (p *Proxy) finish(r *http.Request, tx *txn, outcome string, status int, metricOutcome string, cause error) {
	if tx.decision != nil && tx.reports != nil {
		removed := 0
		for _, rep := range tx.reports {
			if rep != nil {
				removed += rep.RemovedCount
			}
		}
		p.m.fieldsRemoved.WithLabelValues(p.vendorLabel(tx)).Add(float64(removed))
	}
	p.m.requests.WithLabelValues(p.vendorLabel(tx), p.purposeLabel(tx), metricOutcome).Inc()
	if metricOutcome == "forwarded" && tx.in != nil && tx.in.Purpose == "legal" {
		p.m.legal.WithLabelValues(p.vendorLabel(tx)).Inc()
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	if !p.log.Enabled(r.Context(), level) {
		return // building the attributes costs a dozen allocations per request
	}
	attrs := []any{
		"decision_id", tx.id, "method", r.Method, "outcome", outcome, "status", status,
		"duration_ms", float64(time.Since(tx.start).Microseconds()) / 1000,
	}
	if tx.in != nil {
		attrs = append(attrs, "host", tx.in.Host, "path", tx.in.Path, "purpose", tx.in.Purpose)
	}
	if tx.decision != nil {
		attrs = append(attrs, "vendor", tx.decision.Vendor, "revision", shortRev(tx.decision.Revision))
	}
	if tx.dryRun {
		attrs = append(attrs, "dry_run", true)
	}
	if cause != nil {
		attrs = append(attrs, "err", cause.Error())
	}
	p.log.Log(r.Context(), level, "egress", attrs...)
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

type refusalBody struct {
	Error      string `json:"error"`
	Reason     string `json:"reason"`
	DecisionID string `json:"decision_id"`
}

func (p *Proxy) refuseErr(w http.ResponseWriter, r *http.Request, tx *txn, err error) {
	var e *engine.Error
	if errors.As(err, &e) {
		p.refuseCode(w, r, tx, e.Code, e.Reason, e.Err)
		return
	}
	p.refuseCode(w, r, tx, engine.CodeEvalError, "the request could not be decided", err)
}

func (p *Proxy) refuseCode(w http.ResponseWriter, r *http.Request, tx *txn, code engine.Code, reason string, cause error) {
	p.refuse(w, r, tx, code.Status(), string(code), reason, cause)
}

// refuse answers the app and records the refusal; nothing was sent.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, tx *txn, status int, code, reason string, cause error) {
	switch {
	case tx.disclosed: // the vendor failed after the disclosure was recorded
		p.submitOutcome(tx, code, status)
	case code != string(engine.CodeLedgerError):
		p.recordEnd(r, tx, ledger.KindRefusal, code, status)
	}
	b, _ := json.Marshal(refusalBody{Error: code, Reason: reason, DecisionID: tx.id})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("X-Pare-Decision-Id", tx.id)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	p.finish(r, tx, code, status, code, cause)
}

// hopByHop headers belong to one connection, never forwarded (RFC 9110 7.6.1).
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

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
