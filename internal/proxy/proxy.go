package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pare-dev/pare/internal/ca"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
)

// Config holds what a Proxy needs; Pipeline is required.
type Config struct {
	Pipeline *pipeline.Pipeline
	Upstream UpstreamOptions
	// CA enables drop-in mode: CONNECT tunnels (HTTPS_PROXY) and the
	// transparent listener are intercepted with certificates it mints.
	// nil: CONNECT is refused.
	CA *ca.CA
	// Passthrough hosts may be tunnelled without inspection when no
	// contract names them: internal services that carry no personal data.
	Passthrough []string
	Tunnels     *TunnelMetrics // nil: not exported
	Limits      ServerLimits   // of the server inside intercepted TLS
	// MinBodyRate is the slowest a request body may arrive, in bytes per
	// second averaged since the request began, after BodyGrace: a slower
	// sender is cut off with 408 body_timeout and its body memory freed.
	// 0 means DefaultMinBodyRate; negative disables the check.
	MinBodyRate int64
	BodyGrace   time.Duration // 0 means DefaultBodyGrace
}

// Defaults for Config.
const (
	DefaultMinBodyRate = 64 << 10
	DefaultBodyGrace   = 5 * time.Second
)

// Proxy is the HTTP front end of the pipeline: the egress listener an app
// sends its vendor calls to, as an HTTP proxy (absolute-form requests) or
// by Host (origin-form requests).
type Proxy struct {
	cfg         Config
	pl          *pipeline.Pipeline
	transport   *http.Transport
	dialer      *net.Dialer
	it          *interceptor // nil without a CA
	passthrough map[string]bool
}

var _ http.Handler = (*Proxy)(nil)

// New builds the proxy and its upstream transport.
func New(cfg Config) (*Proxy, error) {
	if cfg.Pipeline == nil {
		return nil, errors.New("proxy: a pipeline is required")
	}
	if cfg.MinBodyRate == 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	if cfg.BodyGrace <= 0 {
		cfg.BodyGrace = DefaultBodyGrace
	}
	t, err := newTransport(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	p := &Proxy{cfg: cfg, pl: cfg.Pipeline, transport: t, dialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		passthrough: map[string]bool{}}
	for _, h := range cfg.Passthrough {
		p.passthrough[strings.TrimSuffix(strings.ToLower(h), ".")] = true
	}
	if cfg.CA != nil {
		p.it = newInterceptor(p)
	}
	return p, nil
}

// Close stops serving intercepted connections and releases idle upstream
// connections.
func (p *Proxy) Close() {
	if p.it != nil {
		p.it.ln.Close()
		_ = p.it.srv.Close()
	}
	p.transport.CloseIdleConnections()
}

// Shutdown drains the requests inside intercepted connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	if p.it == nil {
		return nil
	}
	p.it.ln.Close()
	return p.it.srv.Shutdown(ctx)
}

// target is where the app asked its request to go.
type target struct {
	scheme, host string
	port         int  // 0: the scheme's default
	transparent  bool // a redirected connection, not a CONNECT tunnel
}

// targetOf accepts absolute-form requests (the app set HTTP_PROXY) and
// origin-form requests routed by their Host header.
func targetOf(r *http.Request) (target, error) {
	t := target{scheme: "http"}
	hostport := r.Host
	if r.URL.IsAbs() {
		t.scheme = strings.ToLower(r.URL.Scheme)
		hostport = r.URL.Host
	}
	if t.scheme != "http" && t.scheme != "https" {
		return t, fmt.Errorf("scheme %q is not supported", t.scheme)
	}
	return t, t.setHost(hostport)
}

func (t *target) setHost(hostport string) error {
	if hostport == "" {
		return errors.New("the request names no host (absolute URL or Host header)")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	t.host = strings.TrimSuffix(strings.ToLower(host), ".")
	if t.host == "" {
		return errors.New("the request names no host")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad port %q", port)
		}
		t.port = n
	}
	return nil
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	t, err := targetOf(r)
	if err != nil {
		x := p.pl.Begin(&pipeline.Request{Via: "proxy", Method: r.Method, Header: r.Header})
		defer x.End()
		writeRefusal(w, x.Refuse(&engine.Error{Code: engine.CodeBadRequest, Reason: err.Error()}))
		return
	}
	p.serve(w, r, "proxy", t)
}

// RequestOf is the pipeline's view of an HTTP request sent to the proxy
// (absolute-form, or origin-form with a Host header): what `proxy
// explain` evaluates, exactly as the proxy would.
func RequestOf(r *http.Request) (*pipeline.Request, error) {
	t, err := targetOf(r)
	if err != nil {
		return nil, err
	}
	return requestOf(r, "proxy", t, r.Body), nil
}

func requestOf(r *http.Request, via string, t target, body io.Reader) *pipeline.Request {
	if body == http.NoBody {
		body = nil
	}
	return &pipeline.Request{
		Via:           via,
		Method:        pipeline.NormalizeMethod(r.Method),
		Scheme:        t.scheme,
		Host:          t.host,
		Port:          t.port,
		Path:          r.URL.EscapedPath(),
		RawQuery:      r.URL.RawQuery,
		Header:        r.Header,
		Body:          body,
		ContentLength: r.ContentLength,
		Streamable:    true,
	}
}

// serve runs r through the pipeline to t and writes the answer to w.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, via string, t target) {
	var body io.Reader
	if r.Body != nil && r.Body != http.NoBody {
		body = p.minRate(w, r.Body)
	}
	x := p.pl.Begin(requestOf(r, via, t, body))
	defer x.End()
	w.Header().Set("X-Pare-Decision-Id", x.ID())

	ctx := r.Context()
	out, err := x.Prepare(ctx)
	if err != nil {
		writeRefusal(w, x.Refuse(err))
		return
	}
	resp, sendErr := x.Send(ctx, p.transport, out)
	// The app hears nothing — neither the vendor's answer nor its failure —
	// before the disclosure record is durable.
	if err := x.Durable(ctx); err != nil {
		if sendErr == nil {
			resp.Body.Close()
		}
		writeRefusal(w, x.Refuse(err))
		return
	}
	if sendErr != nil {
		writeRefusal(w, x.Refuse(sendErr))
		return
	}
	defer resp.Body.Close()
	pipeline.RemoveHopByHop(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.Header().Set("X-Pare-Decision-Id", x.ID())
	w.WriteHeader(resp.StatusCode)
	copyResponse(w, resp)
	x.Complete(resp.StatusCode)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyResponse streams the vendor's answer unbuffered: a response of unknown
// length (chunked, event streams, long polls) is flushed after every read so
// it reaches the app as it arrives. One with a Content-Length is copied
// straight through: flushing each 32 KiB read of it only costs syscalls.
func copyResponse(w http.ResponseWriter, resp *http.Response) {
	stream := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		n, rerr := resp.Body.Read(*bp)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return
			}
			if stream {
				_ = rc.Flush()
			}
		}
		if rerr != nil {
			return
		}
	}
}

// minRate wraps a request body so that it must arrive at MinBodyRate on
// average after BodyGrace: before each read the connection's read deadline
// is set to when the bytes read so far would be too few. A sender that
// trickles a byte every few seconds (slowloris) is cut off, and the body
// memory it was charged for is freed for others.
func (p *Proxy) minRate(w http.ResponseWriter, body io.Reader) io.Reader {
	if p.cfg.MinBodyRate < 0 {
		return body
	}
	return &rateReader{r: body, rc: http.NewResponseController(w), start: time.Now(), grace: p.cfg.BodyGrace, rate: p.cfg.MinBodyRate}
}

type rateReader struct {
	r     io.Reader
	rc    *http.ResponseController
	start time.Time
	grace time.Duration
	rate  int64
	n     int64
}

func (r *rateReader) Read(b []byte) (int, error) {
	allowed := r.grace + time.Duration(float64(r.n)/float64(r.rate)*float64(time.Second))
	// Not every ResponseWriter supports deadlines (tests' recorders): then
	// the server's ReadTimeout is the only bound.
	_ = r.rc.SetReadDeadline(r.start.Add(allowed))
	n, err := r.r.Read(b)
	r.n += int64(n)
	return n, err
}

// writeRefusal answers the app with a refusal's JSON body.
func writeRefusal(w http.ResponseWriter, rf *pipeline.Refusal) {
	b := rf.JSON()
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Pare-Decision-Id", rf.DecisionID)
	w.WriteHeader(rf.Status)
	_, _ = w.Write(b)
}
