package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
)

// Recorder is where the pipeline records what it does. Write puts a record
// in the ledger and returns a wait for its durability: the disclosure is
// written before the request goes to the vendor and made durable (fsync,
// group commit) while the vendor answers; an error from Write means "do not
// send". Append returns only once the record is durable (refusals). Submit
// queues a record without waiting (the outcome that follows a disclosure
// already on disk, so the app's connection is not held for a second fsync).
type Recorder interface {
	Append(ctx context.Context, r *ledger.Record) error
	Write(ctx context.Context, r *ledger.Record) (wait func(context.Context) error, err error)
	Submit(r *ledger.Record) error
}

// Config holds what a Pipeline needs. Engine is required; Ledger is required
// for anything that sends (Disclose fails without it), and may be nil for a
// pipeline that only explains (proxy explain).
type Config struct {
	Engine   *engine.Engine
	Ledger   Recorder
	Consents consent.Source // nil: no consent source, every subject has none
	Metrics  *Metrics       // nil: collectors that are not registered anywhere
	Logger   *slog.Logger   // nil: discard
	Service  string         // the workload identity: input.source.service
	MaxBody  int64          // bytes; 0 means DefaultMaxBody
	// BodyMemory bounds the body bytes all requests hold at once; 0 means
	// DefaultBodyMemory. See body.go for how a request is charged.
	BodyMemory int64
	// BodyWait bounds how long a request waits for body memory before it is
	// refused with 503 overloaded; 0 means DefaultBodyWait.
	BodyWait time.Duration
	DryRun   bool
	// PathKey keys the hash of request paths in the ledger (PathKey derives
	// it from the hmac master key); nil means a random key per process.
	PathKey []byte
}

// Defaults for Config.
const (
	DefaultMaxBody    = 10 << 20
	DefaultBodyMemory = 256 << 20
	DefaultBodyWait   = 10 * time.Second
)

// Pipeline runs requests through the stages. It is safe for concurrent use;
// each request is one Exchange.
type Pipeline struct {
	cfg     Config
	budget  *budget
	log     *slog.Logger
	m       *Metrics
	vocab   vocabCache
	pathKey []byte
}

// New validates cfg and returns the pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Engine == nil {
		return nil, errors.New("pipeline: an engine is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.BodyMemory <= 0 {
		cfg.BodyMemory = DefaultBodyMemory
	}
	if cfg.BodyWait <= 0 {
		cfg.BodyWait = DefaultBodyWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := cfg.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	key := cfg.PathKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("pipeline: path key: %w", err)
		}
	}
	return &Pipeline{cfg: cfg, budget: newBudget(cfg.BodyMemory), log: cfg.Logger, m: m, pathKey: key}, nil
}

// Metrics returns the pipeline's collectors, for front ends that count
// their own events beside them.
func (p *Pipeline) Metrics() *Metrics { return p.m }

// MaxBody is the largest request body accepted.
func (p *Pipeline) MaxBody() int64 { return p.cfg.MaxBody }

// Logger returns the pipeline's logger.
func (p *Pipeline) Logger() *slog.Logger { return p.log }

// Request is an outbound request as a front end received it, before anything
// was decided. The pipeline never modifies it.
type Request struct {
	// Via names the front end ("proxy", "connect", "transparent",
	// "extproc"), for logs.
	Via    string
	Method string
	// Scheme is how the app addressed the vendor (http or https). It is part
	// of the policy input; how the vendor is reached is the decision's.
	Scheme string
	Host   string // as the app named it, without the port
	Port   int    // as the app named it; 0: the scheme's default
	// Path is the request target's path as sent, still percent-encoded;
	// RawQuery the query string without '?'.
	Path     string
	RawQuery string
	Header   http.Header
	// Body is the request body; nil for none. ContentLength is its declared
	// length, -1 when unknown.
	Body          io.Reader
	ContentLength int64
	// Streamable says the front end sends the request itself and reads the
	// body as it goes (the HTTP front ends): an opaque body then streams to
	// the vendor through the card guard instead of being read whole.
	Streamable bool
}

// Exchange is one request on its way through the pipeline. Its methods are
// the stages, to be called in order by one goroutine: Decide, Minimize,
// Disclose (Prepare runs the three), the send (the front end's, or Send),
// Durable, then Complete — or Refuse at any point, with the stage's error.
// End must always be called (defer it right after Begin).
type Exchange struct {
	p     *Pipeline
	req   *Request
	id    string
	start time.Time

	path     string // the checked, decoded path the policy saw and the vendor gets
	in       *engine.Input
	policy   *engine.Policy
	decision *engine.Decision

	body     []byte // the request body as read (nil when streamed or none)
	bodyRead bool
	reports  [3]*filters.Report // body, query, headers
	dryRun   bool
	bytesIn  int64
	bytesOut int64

	held    *heldBufs // pooled buffers this exchange and its sends hold
	charged *charge   // this request's share of the body memory budget
	release func()    // gives it back

	durable   func(context.Context) error // waits for the disclosure record's fsync
	disclosed bool                        // the disclosure record is written: the end is an outcome, not a refusal
	ended     bool                        // Complete or Refuse has run
}

// Begin starts an exchange for req.
func (p *Pipeline) Begin(req *Request) *Exchange {
	p.m.inFlight.Inc()
	x := &Exchange{p: p, req: req, id: newID(), start: time.Now(), held: &heldBufs{}}
	x.held.refs.Store(1)
	return x
}

// ID is the decision id: the key of the request's ledger records, returned
// to the app in X-Pare-Decision-Id.
func (x *Exchange) ID() string { return x.id }

// Decision is the policy's decision, nil before Decide got one.
func (x *Exchange) Decision() *engine.Decision { return x.decision }

// Input is the policy input, nil before Decide built it.
func (x *Exchange) Input() *engine.Input { return x.in }

// DecidesOnBody reports whether the current policy reads input.body: a
// front end that receives the body after the headers (ext_proc) must then
// wait for it before Decide.
func (p *Pipeline) DecidesOnBody() bool {
	pol := p.cfg.Engine.Policy()
	return pol != nil && pol.NeedsBody()
}

// SetBody gives the exchange its request body, for front ends that receive
// it after the headers (ext_proc). It must be called before the stage that
// reads the body (Decide for a policy that reads input.body, else
// Minimize).
func (x *Exchange) SetBody(body io.Reader, n int64) {
	x.req.Body, x.req.ContentLength = body, n
}

// Prepare runs every stage before the send: Decide, Minimize, Disclose. On
// an error nothing may leave: pass it to Refuse.
func (x *Exchange) Prepare(ctx context.Context) (*Outbound, error) {
	if err := x.Decide(ctx); err != nil {
		return nil, err
	}
	out, err := x.Minimize(ctx)
	if err != nil {
		return nil, err
	}
	if err := x.Disclose(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// Decide checks the request, builds the policy input (with the subject's
// consents) and asks the engine. A refusal is returned as an
// *engine.Error. The body is read here only when the policy itself reads
// input.body; otherwise a refusal never costs reading it.
func (x *Exchange) Decide(ctx context.Context) error {
	path, err := x.check()
	if err != nil {
		return err
	}
	x.path = path
	x.in = x.p.input(x.req, path)
	x.policy = x.p.cfg.Engine.Policy()
	pol := x.policy
	if pol == nil {
		return &engine.Error{Code: engine.CodeNoPolicy, Reason: "no valid policy is loaded"}
	}
	if src := x.p.cfg.Consents; src != nil && x.in.Subject != "" && pol.NeedsConsents() {
		cs, err := src.Lookup(ctx, x.in.Subject)
		if err != nil {
			x.p.m.consentErrors.Inc()
			x.p.log.Warn("consent lookup failed", "decision_id", x.id, "err", err)
			x.in.ConsentErr = "consent source unavailable"
		}
		for _, c := range cs {
			x.in.Consents = append(x.in.Consents, engine.Consent{
				Purpose: c.Purpose, Status: c.Status, Time: c.Time,
				Evidence: engine.Evidence{Action: c.Evidence.Action, Where: c.Evidence.Where, PolicyVersion: c.Evidence.PolicyVersion},
			})
		}
	}
	var bodyVal ast.Value
	if pol.NeedsBody() {
		if err := x.readBody(ctx); err != nil {
			return err
		}
		if bodyVal, err = engine.ParseBody(x.req.Header.Get("Content-Type"), x.body); err != nil {
			return err
		}
	}
	decStart := time.Now()
	d, err := x.p.cfg.Engine.Decide(ctx, pol, x.in, bodyVal)
	x.p.m.decisionSeconds.Observe(time.Since(decStart).Seconds())
	if err != nil {
		return err
	}
	x.decision = d
	// Dry run relaxes masking only: a refusal (unknown vendor, missing
	// consent, a blocked card number, a malformed body) is enforced in dry
	// run too, because dry run exists to try a contract's field list on a
	// vendor the app already talks to, not to open the proxy.
	if !d.Allow {
		return d.Refusal()
	}
	return nil
}

// Minimize reads the body (if Decide did not) and cuts the request down to
// what the decision allows: query, headers and body, each card-guarded
// (cards.go). In dry run the original payload is what leaves, unless the
// card guard finds a card number anywhere in it. An opaque body from a
// front end that can stream it is not read here: it is guarded as it
// streams to the vendor.
func (x *Exchange) Minimize(ctx context.Context) (*Outbound, error) {
	d := x.decision
	if d == nil || !d.Allow {
		return nil, errors.New("pipeline: Minimize before an allowing decision")
	}
	if err := guardPath(d, x.path); err != nil {
		return nil, err
	}
	hasBody := x.req.Body != nil && x.req.ContentLength != 0
	stream := d.Body == engine.BodyOpaque && x.req.Streamable && !x.bodyRead && hasBody
	if stream && x.req.ContentLength > x.p.cfg.MaxBody {
		return nil, &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is %d bytes; the limit is %d", x.req.ContentLength, x.p.cfg.MaxBody)}
	}
	if !x.bodyRead && !stream {
		if err := x.readBody(ctx); err != nil {
			return nil, err
		}
	}
	x.bytesIn = int64(len(x.body))
	var dst []byte
	if len(x.body) > 0 && d.Body == engine.BodyFilter {
		// Charged with the body as it was read (bodyCost).
		b := getBuf(int(filteredCap(int64(len(x.body)))))
		x.held.add(b)
		dst = *b
	}
	m, err := minimize(dst, d, x.req.Header, x.req.RawQuery, x.body)
	if err != nil {
		return nil, err
	}
	if d.Body == engine.BodyOpaque && !stream {
		if err := guardOpaque(d, x.body); err != nil {
			return nil, err
		}
	}
	x.reports = [3]*filters.Report{m.BodyReport, m.QueryReport, m.HeaderReport}
	// In dry run the original leaves and the ledger records what would have
	// been removed — unless the card guard finds a card number anywhere in
	// it: card data reaches a vendor not entitled to it in no mode.
	x.dryRun = (x.p.cfg.DryRun || d.DryRun) && len(m.BodyReport.Cards) == 0
	if x.dryRun && d.CardGuard() != filters.CardsAllow &&
		originalHasCard(x.req.Header.Get("Content-Type"), x.req.RawQuery, original(x.req.Header), x.body) {
		x.dryRun = false
	}
	if x.dryRun {
		m.Query, m.Header, m.Body = x.req.RawQuery, original(x.req.Header), x.body
	}
	// The framing of the body Pare sends is Pare's: the body's checked
	// media type, whatever the contract lists (cards.go).
	m.Header.Del("Content-Type")
	if len(m.Body) > 0 || stream {
		if ct := sentContentType(x.req.Header.Get("Content-Type")); ct != "" {
			m.Header.Set("Content-Type", ct)
		}
	}
	if err := guardHeaders(d, m.Header, m.HeaderReport); err != nil {
		return nil, err
	}
	out := x.outbound(m)
	x.bytesOut = int64(len(out.Body))
	if stream {
		sr := &scanReader{src: x.req.Body, max: x.p.cfg.MaxBody, tmp: make([]byte, 32<<10)}
		if g := d.CardGuard(); g != filters.CardsAllow {
			// Opaque bodies are refused, not redacted: rewriting bytes
			// would corrupt the object (and its declared length).
			sr.cw = filters.NewCardWriter(&sr.buf, filters.CardsBlock)
		}
		out.stream, out.ContentLength = sr, x.req.ContentLength
		x.bytesIn, x.bytesOut = max(x.req.ContentLength, 0), max(x.req.ContentLength, 0)
	}
	return out, nil
}

// Disclose writes the record of what is about to leave. It is in the ledger
// file before the first byte goes to the vendor, and durable (fsync) before
// the app hears anything back (Durable): no disclosure without a record.
func (x *Exchange) Disclose(ctx context.Context) error {
	if x.p.cfg.Ledger == nil {
		return &engine.Error{Code: engine.CodeLedgerError, Reason: "this pipeline has no ledger, so nothing is sent"}
	}
	rec := x.record(ledger.KindDisclosure, "pending", 0)
	wait, err := x.p.cfg.Ledger.Write(context.WithoutCancel(ctx), rec)
	if err != nil {
		x.p.m.ledgerErrors.Inc()
		return &engine.Error{Code: engine.CodeLedgerError, Reason: "the disclosure ledger cannot be written, so nothing is sent", Err: err}
	}
	x.disclosed = true
	x.durable = wait
	return nil
}

// Send sends out through rt, for front ends that originate the request to
// the vendor themselves. A failure to reach the vendor is returned as an
// *engine.Error (vendor_unreachable or vendor_timeout).
func (x *Exchange) Send(ctx context.Context, rt http.RoundTripper, out *Outbound) (*http.Response, error) {
	upStart := time.Now()
	resp, err := rt.RoundTrip(out.HTTPRequest(ctx))
	x.p.m.upstreamSeconds.WithLabelValues(x.vendorLabel()).Observe(time.Since(upStart).Seconds())
	if sr := out.stream; sr != nil {
		// The outcome record says what streamed: a body of unknown length
		// was recorded as 0 bytes in the disclosure.
		o := sr.outcome()
		x.bytesIn, x.bytesOut = o.in, o.out
		// A streamed body that met a card number or the body limit was
		// cut short, or broke off on the app's side: that, not the vendor,
		// is why the request failed.
		switch {
		case o.found != nil:
			if err == nil {
				resp.Body.Close()
			}
			return nil, x.decision.CardRefusal("the body", o.found)
		case errors.Is(o.end, errBodyTooLarge):
			if err == nil {
				resp.Body.Close()
			}
			return nil, &engine.Error{Code: engine.CodeBodyTooLarge, Reason: fmt.Sprintf("the body is larger than the limit of %d bytes", x.p.cfg.MaxBody)}
		case err != nil && o.end != nil && o.end != io.EOF:
			return nil, bodyReadError(o.end)
		}
	}
	if err != nil {
		return nil, upstreamError(x.decision.Vendor, err)
	}
	return resp, nil
}

// Durable waits until the disclosure record is durable. The app hears
// nothing — neither the vendor's answer nor its failure — before it
// returns nil.
func (x *Exchange) Durable(ctx context.Context) error {
	if x.durable == nil {
		return nil
	}
	err := x.durable(context.WithoutCancel(ctx))
	if err == nil {
		return nil
	}
	x.p.m.ledgerErrors.Inc()
	// The request may have reached the vendor: this log line is the record
	// of last resort an operator reconciles the ledger with.
	x.p.log.Error("ledger: a disclosure may have left without a durable record",
		"decision_id", x.id, "vendor", x.decision.Vendor, "host", x.in.Host,
		"path", x.recordedPath(x.p.vocab.of(x.policy)), "path_hash", PathHash(x.p.pathKey, x.in.Path),
		"purpose", x.in.Purpose, "err", err)
	return &engine.Error{Code: engine.CodeLedgerError, Reason: "the disclosure record could not be made durable, so the vendor's answer is withheld", Err: err}
}

// Complete records the vendor's answer: status is what it returned.
func (x *Exchange) Complete(status int) {
	if x.ended {
		return
	}
	x.ended = true
	outcome := fmt.Sprint(status)
	x.submitOutcome(outcome, status)
	x.finish(outcome, status, "forwarded", nil)
}

// Refusal is what a front end tells the app when nothing was sent (or the
// vendor's answer is withheld).
type Refusal struct {
	Status     int
	Code       engine.Code
	Reason     string
	DecisionID string
}

// JSON is the body every front end answers a refusal with:
// {"error": code, "reason": ..., "decision_id": ...} and a newline.
func (r *Refusal) JSON() []byte {
	b, _ := json.Marshal(struct {
		Error      string `json:"error"`
		Reason     string `json:"reason"`
		DecisionID string `json:"decision_id"`
	}{string(r.Code), r.Reason, r.DecisionID})
	return append(b, '\n')
}

// Refuse ends the exchange with err, the error of a stage: it records the
// refusal (or, after Disclose, the outcome), counts and logs it, and returns
// what the front end must answer.
func (x *Exchange) Refuse(err error) *Refusal {
	var e *engine.Error
	if !errors.As(err, &e) {
		e = &engine.Error{Code: engine.CodeEvalError, Reason: "the request could not be decided", Err: err}
	}
	r := &Refusal{Status: e.Code.Status(), Code: e.Code, Reason: e.Reason, DecisionID: x.id}
	if x.ended {
		return r
	}
	x.ended = true
	switch {
	case x.disclosed: // the vendor failed, or its answer is withheld, after the disclosure was recorded
		x.submitOutcome(string(e.Code), r.Status)
	case e.Code != engine.CodeLedgerError && x.p.cfg.Ledger != nil:
		x.recordRefusal(string(e.Code), r.Status)
	}
	x.finish(string(e.Code), r.Status, string(e.Code), e.Err)
	return r
}

// End releases what the exchange holds. An exchange that neither completed
// nor was refused (its front end gave up, e.g. the app went away) is
// recorded as refused with bad_request.
func (x *Exchange) End() {
	if !x.ended {
		x.Refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: "the request ended before it was answered"})
	}
	x.held.release()
	if x.release != nil {
		x.release()
	}
	x.p.m.inFlight.Dec()
}

// TunnelVendor asks the policy which vendor host names, for a front end
// about to intercept a TLS connection to it. When no contract covers the
// host it returns the policy's refusal (unknown_vendor): the contracts'
// host matching lives in the Rego only. Nothing is recorded.
func (p *Pipeline) TunnelVendor(ctx context.Context, host string, port int) (string, error) {
	if err := checkHost(host); err != nil {
		return "", err
	}
	pol := p.cfg.Engine.Policy()
	if pol == nil {
		return "", &engine.Error{Code: engine.CodeNoPolicy, Reason: "no valid policy is loaded"}
	}
	in := &engine.Input{Method: "CONNECT", Scheme: "https", Host: host, Port: port, Path: "/",
		Headers: map[string]string{}, Service: p.cfg.Service}
	if in.Port == 0 {
		in.Port = 443
	}
	d, err := p.cfg.Engine.Decide(ctx, pol, in, nil)
	if err != nil {
		return "", err
	}
	if d.Vendor == "" {
		if d.Allow {
			return "", &engine.Error{Code: engine.CodeUnknownVendor, Reason: "no contract covers host " + host}
		}
		return "", d.Refusal()
	}
	return d.Vendor, nil
}

// RefuseTunnel records the refusal of a tunnel (CONNECT or a redirected TLS
// connection) to host, and returns what to answer.
func (p *Pipeline) RefuseTunnel(via, host string, port int, err error) *Refusal {
	x := p.Begin(&Request{Via: via, Method: "CONNECT", Scheme: "https", Host: host, Port: port, Path: "/"})
	defer x.End()
	return x.Refuse(err)
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
