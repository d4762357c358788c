package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestQuick builds cmd/bench and cmd/proxy and runs the quick mode for
// every row but 4, the 413 check and the tunnel check: it proves the
// harness works, that every request of the workload gets the answer it
// should (200, or Pare's refusal where the mix expects one) and that Pare's
// three front ends send the vendor the same bytes, and asserts nothing
// about speed. Row 4 needs an OPA binary (a minute or two to build the
// first time): CI runs it with `go run ./cmd/bench --quick`.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the proxy; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the harness reads /proc")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	self := filepath.Join(dir, "bench")
	if err := goBuild(ctx, repo, self, "./cmd/bench"); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := Run(ctx, Config{
		Quick:      true,
		Rows:       []int{RowFloor, RowReverseProxy, RowPare, RowExtProc, RowRealistic, RowTunnel, RowDropIn},
		PayloadDir: filepath.Join("testdata", "payloads"),
		RepoDir:    repo,
		SelfBin:    self,
		WorkDir:    work,
		Checks:     true,
		Log:        &log,
	})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []int{RowPare, RowExtProc, RowDropIn} {
		if na, ok := res.RowNA[row]; ok {
			t.Fatalf("%s did not run: %s", RowName(row), na)
		}
	}
	if f := res.Failures(); len(f) > 0 {
		t.Fatalf("failures:\n%s", strings.Join(f, "\n"))
	}
	for _, w := range res.Workloads {
		for _, row := range res.Rows {
			if row == RowRealistic && w.Mix == nil {
				continue
			}
			c := res.Cell(row, w.Name, res.Concurrency[0])
			if c == nil || c.Sample == nil || len(c.Sample.Latencies) != c.Sample.Requests || c.Sample.Requests == 0 {
				t.Fatalf("%s / %s: no clean sample: %+v", RowName(row), w.Name, c)
			}
			got := c.Sample.VendorBytes / int64(c.Sample.Requests)
			pare := enforces(row)
			switch {
			case w.Mix != nil && pare:
				// Refusals send nothing, filters remove: less than sent.
				if got >= int64(w.Size()) {
					t.Errorf("%s / %s: the stub received %d bytes per request, the mix sends %d on average: nothing was removed", RowName(row), w.Name, got, w.Size())
				}
			case w.Mix != nil:
				// The bodies differ from request to request: the mean holds over whole turns of the mix only.
			case !pare && got != int64(w.Size()):
				t.Errorf("%s / %s: the stub received %d bytes per request, want the %d sent", RowName(row), w.Name, got, w.Size())
			case pare && got >= int64(w.Size()):
				t.Errorf("%s / %s: the stub received %d bytes per request of %d sent: nothing was removed", RowName(row), w.Name, got, w.Size())
			case pare:
				// One pipeline behind every front end: the same bytes leave.
				if p := res.Cell(RowPare, w.Name, c.Conc).Sample; got != p.VendorBytes/int64(p.Requests) {
					t.Errorf("%s / %s: the stub received %d bytes per request, through row 3 %d", RowName(row), w.Name, got, p.VendorBytes/int64(p.Requests))
				}
			}
		}
	}
	if !res.Limit.OK() {
		t.Errorf("413 check: %+v", res.Limit)
	}
	if !res.Tunnel.OK() {
		t.Errorf("tunnel check: %+v", res.Tunnel)
	}
	if md := res.Markdown("latency.svg"); !strings.Contains(md, "checkout.json") {
		t.Errorf("markdown lacks the payloads:\n%s", md)
	}
	if svg := res.SVG(); !strings.HasPrefix(svg, "<svg") {
		t.Errorf("no plot: %q", svg)
	}
}

// TestPayloadCopies checks testdata/payloads against shared/payloads when
// the shared directory is present.
func TestPayloadCopies(t *testing.T) {
	shared := filepath.Join("..", "..", "shared", "payloads")
	if _, err := os.Stat(shared); err != nil {
		t.Skip("no shared/payloads beside the repository")
	}
	for _, name := range []string{"attendee.json", "checkout.form", "checkout.json", "ticket.json"} {
		want, err := os.ReadFile(filepath.Join(shared, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("testdata/payloads/%s differs from shared/payloads/%s", name, name)
		}
	}
}

func TestAttendeeArray(t *testing.T) {
	a := []byte(`{"email":"a@example.org"}`)
	for _, size := range []int{1, 100, 1 << 10, 64 << 10} {
		b := attendeeArray(a, size)
		if len(b) > size && size >= 2*len(a) {
			t.Errorf("size %d: body of %d bytes", size, len(b))
		}
		if !bytes.HasPrefix(b, []byte(`{"attendees":[{`)) || !bytes.HasSuffix(b, []byte(`}]}`)) {
			t.Errorf("size %d: %s", size, b)
		}
	}
}

func TestSampleQuantile(t *testing.T) {
	s := &Sample{}
	for i := 1; i <= 1000; i++ {
		s.Latencies = append(s.Latencies, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 500 * time.Millisecond, 0.99: 990 * time.Millisecond, 0.999: 999 * time.Millisecond, 1: time.Second} {
		if got := s.Quantile(q); got != want {
			t.Errorf("q%.3f = %s, want %s", q, got, want)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	p := filepath.Join(t.TempDir(), "B.md")
	if err := os.WriteFile(p, []byte("# head\n\n"+MarkBegin+"\nold\n"+MarkEnd+"\n\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(p, "new"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if want := "# head\n\n" + MarkBegin + "\nnew\n" + MarkEnd + "\n\ntail\n"; string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}
