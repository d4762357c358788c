package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/vendorstub"
	"github.com/pare-dev/pare/policies"
)

// Bodies live in pooled buffers: under concurrency, every vendor must still
// receive exactly its own request's body, never bytes of another request.
// Run with -race to check the buffers' reference counting too.
func TestPooledBodiesNeverCross(t *testing.T) {
	dir := t.TempDir()
	stub, err := vendorstub.Start([]string{"webinarco.zendesk.com"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	ctx := context.Background()
	pol, err := engine.Load(ctx, policies.FS, engine.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := engine.New(engine.Options{HMACKey: []byte("0123456789abcdef")})
	eng.Swap(pol)
	led, err := ledger.Open(filepath.Join(dir, "ledger.jsonl"), ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	px := newProxy(t, pipeline.Config{Engine: eng, Ledger: led, Service: "support", BodyMemory: 1 << 20},
		UpstreamOptions{Resolve: map[string]string{"webinarco.zendesk.com:443": stub.Addr}, ExtraCAs: []string{stub.CAFile}})
	srv := httptest.NewServer(px)
	defer srv.Close()

	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Sizes vary so buffers of one request are reused by others.
			subject := fmt.Sprintf("ticket-%d-%s", i, bytes.Repeat([]byte("x"), (i%7)*3000))
			body := fmt.Sprintf(`{"ticket":{"subject":%q,"priority":"low","metadata":{"ip":"10.0.0.%d"}}}`, subject, i%250)
			req, _ := http.NewRequest("POST", srv.URL+"/api/v2/tickets.json", bytes.NewReader([]byte(body)))
			req.Host = "webinarco.zendesk.com"
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Data-Purpose", "support")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("request %d: status %d", i, resp.StatusCode)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := stub.Received()
	if len(got) != n {
		t.Fatalf("the vendor received %d requests, want %d", len(got), n)
	}
	seen := map[string]bool{}
	for _, r := range got {
		var i int
		if _, err := fmt.Sscanf(string(r.Body), `{"ticket":{"subject":"ticket-%d-`, &i); err != nil {
			t.Fatalf("unexpected body %.80q", r.Body)
		}
		want := fmt.Sprintf(`{"ticket":{"subject":"ticket-%d-%s","priority":"low"}}`, i, bytes.Repeat([]byte("x"), (i%7)*3000))
		if string(r.Body) != want {
			t.Fatalf("request %d: the vendor received %.120q…, want %.120q…", i, r.Body, want)
		}
		seen[string(r.Body)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct bodies received, want %d", len(seen), n)
	}
}
