package pipeline

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/engine"
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
