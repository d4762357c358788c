package pipeline

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/policies"
)

func testPipeline(t testing.TB, cfg Config) *Pipeline {
	t.Helper()
	eng, err := engine.New(engine.Options{HMACKey: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Engine = eng
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A client that declares a large body and sends one byte holds only what it
// sent (rounded up to the first read), not its declared length: others
// still get memory.
func TestBodyChargedAsItArrives(t *testing.T) {
	p := testPipeline(t, Config{BodyMemory: 4 << 20, MaxBody: 10 << 20, BodyWait: 200 * time.Millisecond})
	var slow []*Exchange
	stop := make(chan struct{})
	var done []chan error
	for range 20 { // 20 × 10 MiB declared: 50 times the budget
		x := p.Begin(&Request{Method: "POST", Body: &trickle{stop: stop}, ContentLength: 10 << 20})
		slow = append(slow, x)
		d := make(chan error, 1)
		done = append(done, d)
		go func() { d <- x.readBody(context.Background()) }()
	}
	t.Cleanup(func() {
		close(stop)
		for _, d := range done {
			<-d
		}
	})
	time.Sleep(50 * time.Millisecond) // let the readers block on their second read
	for _, x := range slow {
		if n := x.charged.n.Load(); n > bodyCost(firstRead) {
			t.Fatalf("a slow sender holds %d bytes of body memory, want at most %d", n, bodyCost(firstRead))
		}
	}
	// A normal request still fits.
	body := bytes.Repeat([]byte("x"), 100<<10)
	x := p.Begin(&Request{Method: "POST", Body: bytes.NewReader(body), ContentLength: int64(len(body))})
	defer x.End()
	if err := x.readBody(context.Background()); err != nil {
		t.Fatalf("a normal body next to 20 slow senders: %v", err)
	}
	if !bytes.Equal(x.body, body) {
		t.Fatal("the body read is not the body sent")
	}
}

// When memory stays in use, a request waits at most BodyWait and is then
// refused with 503 overloaded — and what it held is given back.
func TestBodyWaitOverloaded(t *testing.T) {
	p := testPipeline(t, Config{BodyMemory: 1 << 20, MaxBody: 10 << 20, BodyWait: 100 * time.Millisecond})
	big := bytes.Repeat([]byte("x"), 600<<10)
	hold := p.Begin(&Request{Method: "POST", Body: bytes.NewReader(big), ContentLength: -1})
	if err := hold.readBody(context.Background()); err != nil {
		t.Fatal(err)
	}
	x := p.Begin(&Request{Method: "POST", Body: bytes.NewReader(big), ContentLength: -1})
	err := x.readBody(context.Background())
	if engine.CodeOf(err) != engine.CodeOverloaded {
		t.Fatalf("second large body: %v, want overloaded", err)
	}
	x.End()
	hold.End()
	// Everything was given back: the whole budget can be charged again.
	if !p.budget.sem.TryAcquire(p.budget.total) {
		t.Fatal("body memory leaked: the budget is not whole after every exchange ended")
	}
}

func TestBodyLimits(t *testing.T) {
	p := testPipeline(t, Config{MaxBody: 1000})
	for name, r := range map[string]*Request{
		"declared": {Method: "POST", Body: strings.NewReader("x"), ContentLength: 1001},
		"chunked":  {Method: "POST", Body: strings.NewReader(strings.Repeat("x", 1001)), ContentLength: -1},
		"lying":    {Method: "POST", Body: strings.NewReader(strings.Repeat("x", 5000)), ContentLength: 10},
	} {
		x := p.Begin(r)
		err := x.readBody(context.Background())
		if name == "lying" {
			// net/http stops a body at its Content-Length; a reader that
			// does not is still cut at the limit.
			if err == nil && len(x.body) > 1000 {
				t.Errorf("%s: read %d bytes past the limit", name, len(x.body))
			}
		} else if engine.CodeOf(err) != engine.CodeBodyTooLarge {
			t.Errorf("%s: %v, want body_too_large", name, err)
		}
		x.End()
	}
	if !p.budget.sem.TryAcquire(p.budget.total) {
		t.Fatal("body memory leaked")
	}
}

// A read deadline from the front end (a sender below the minimum rate) is
// 408 body_timeout.
func TestBodyTimeout(t *testing.T) {
	p := testPipeline(t, Config{})
	x := p.Begin(&Request{Method: "POST", Body: timeoutReader{}, ContentLength: -1})
	defer x.End()
	if err := x.readBody(context.Background()); engine.CodeOf(err) != engine.CodeBodyTimeout {
		t.Fatalf("readBody = %v, want body_timeout", err)
	}
}

// trickle sends one byte, then nothing until stop is closed.
type trickle struct {
	sent bool
	stop chan struct{}
}

func (r *trickle) Read(b []byte) (int, error) {
	if !r.sent {
		r.sent = true
		b[0] = '{'
		return 1, nil
	}
	<-r.stop
	return 0, io.EOF
}

type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, errTimeout{} }

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

// A body that transforms make grow is filtered in memory charged first: the
// charge covers the filtered body whatever its size, up to what a body of
// MaxBody may become; beyond, 413 body_too_large. Either way the memory is
// given back at the end.
func TestFilteredGrowthCharged(t *testing.T) {
	pol, err := engine.Load(context.Background(), policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events := func(n int) []byte {
		b := []byte(`{"events":[{"type":"webinar.joined","attendee_ref":[0`)
		for len(b)+4 <= n {
			b = append(b, ",1"...)
		}
		return append(b, "]}]}"...)
	}
	for _, tt := range []struct {
		name    string
		maxBody int64
		body    []byte
		code    engine.Code
	}{
		{"grows 33 times", 10 << 20, events(64 << 10), ""},
		{"would outgrow what max-body may become", 1 << 20, events(64 << 10), engine.CodeBodyTooLarge},
		{"would outgrow the whole body memory", 10 << 20, events(256 << 10), engine.CodeBodyTooLarge},
		{"ordinary", 10 << 20, []byte(`{"events":[{"type":"webinar.joined","attendee_ref":"att_1"}]}`), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// 4 MiB of body memory: a body of 10 MiB could not be read
			// whole either; the filtered form of 256 KiB of one-digit
			// values under hmac would be 8.4 MiB.
			p := testPipeline(t, Config{Service: "analytics", MaxBody: tt.maxBody, BodyMemory: 4 << 20})
			p.cfg.Engine.Swap(pol)
			x := p.Begin(&Request{Method: "POST", Scheme: "http", Host: "ingest.webinar-group.example", Path: "/v1/events",
				Header: http.Header{"Content-Type": {"application/json"}, "X-Data-Purpose": {"processing"}},
				Body:   bytes.NewReader(tt.body), ContentLength: int64(len(tt.body))})
			if err := x.Decide(context.Background()); err != nil {
				t.Fatal(err)
			}
			out, err := x.Minimize(context.Background())
			if tt.code != "" {
				if engine.CodeOf(err) != tt.code || !strings.Contains(err.Error(), "transforms") {
					t.Fatalf("err %v, want %s", err, tt.code)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				// The body and its filtered form are both in memory:
				// at least what was charged as the body was read, and
				// at least the two of them.
				n := int64(len(tt.body))
				if charged := x.charged.n.Load(); charged < bodyCost(n) || charged < n+int64(len(out.Body)) {
					t.Errorf("charged %d bytes for a %d-byte body filtered to %d", charged, len(tt.body), len(out.Body))
				}
			}
			x.End()
			if !p.budget.sem.TryAcquire(p.budget.total) {
				t.Fatal("the body memory was not given back")
			}
			p.budget.sem.Release(p.budget.total)
		})
	}
}

// Large uploads that all arrive together all finish: none waits for more
// memory while holding a share that the others need. Growing by doubling,
// 24 uploads of 1 MiB next to a budget of three each took a share, each
// waited for more, and every one was refused 503 when BodyWait ran out
// (the bench's memory check met it with 64 uploads of 10 MiB).
func TestBodiesArrivingTogetherAllFinish(t *testing.T) {
	const n, size = 24, 1 << 20
	p := testPipeline(t, Config{BodyMemory: 3 * bodyCost(size+1), MaxBody: 10 << 20, BodyWait: 2 * time.Second})
	body := bytes.Repeat([]byte("x"), size)
	gate := newGate(n)
	errs := make(chan error, n)
	for range n {
		x := p.Begin(&Request{Method: "POST", Body: &gatedReader{r: bytes.NewReader(body), gate: gate, after: firstRead}, ContentLength: size})
		go func() {
			err := x.readBody(context.Background())
			if err == nil && len(x.body) != size {
				err = io.ErrShortBuffer
			}
			x.End()
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("an upload next to %d others: %v", n-1, err)
		}
	}
	if !p.budget.sem.TryAcquire(p.budget.total) {
		t.Fatal("body memory leaked")
	}
}

// gate lets its readers through once all of them have arrived (or a
// second has passed), so that every upload holds its first buffer before
// any asks for more.
type gate struct {
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func newGate(n int) *gate {
	g := &gate{waiting: n, open: make(chan struct{})}
	time.AfterFunc(time.Second, func() { g.release() })
	return g
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) arrive() {
	g.mu.Lock()
	g.waiting--
	last := g.waiting == 0
	g.mu.Unlock()
	if last {
		g.release()
	}
	<-g.open
}

// gatedReader reads r, stopping at the gate once after the first `after`
// bytes.
type gatedReader struct {
	r     io.Reader
	gate  *gate
	after int
	read  int
	gated bool
}

func (g *gatedReader) Read(b []byte) (int, error) {
	if !g.gated && g.read >= g.after {
		g.gated = true
		g.gate.arrive()
	}
	if !g.gated && len(b) > g.after-g.read {
		b = b[:g.after-g.read]
	}
	n, err := g.r.Read(b)
	g.read += n
	return n, err
}
