package bench

import (
	"testing"
	"time"
)

// TestCPUGroups checks that parseTraces reads `go tool pprof -traces` and
// that each stack lands in the first group, in CPUGroups' order, with a
// frame in it: inner work wherever it was called from, the rest by its
// innermost frame.
func TestCPUGroups(t *testing.T) {
	const out = `File: proxy
Type: cpu
Duration: 3s, Total samples = 1.03s (34.32%)
-----------+-------------------------------------------------------
      10ms   runtime.funcdata (inline)
             google.golang.org/grpc.(*serverStream).RecvMsg
             github.com/pare-dev/pare/internal/extproc.(*Server).Process
-----------+-------------------------------------------------------
     1.20s   github.com/pare-dev/pare/filters.(*jsonWalker).hasCard (inline)
             github.com/pare-dev/pare/filters.(*jsonWalker).value
             github.com/pare-dev/pare/internal/pipeline.(*Exchange).Minimize
             net/http.(*conn).serve
-----------+-------------------------------------------------------
      30ms   syscall.Fsync
             os.(*File).Sync
             github.com/pare-dev/pare/internal/ledger.(*Ledger).run.func1
-----------+-------------------------------------------------------
      20ms   crypto/tls.(*Conn).Write
             net/http.(*http2clientStream).writeRequest
-----------+-------------------------------------------------------
      40ms   runtime.futex
             runtime.findRunnable
-----------+-------------------------------------------------------
      10ms   runtime.mallocgc
             strconv.Itoa (inline)
             github.com/pare-dev/pare/internal/extproc.(*stream).mutation
             github.com/pare-dev/pare/internal/extproc.(*Server).Process
             google.golang.org/grpc.(*Server).handleStream
`
	ts, err := parseTraces(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 6 || ts[1].value != 1200*time.Millisecond || ts[1].funcs[3] != "net/http.(*conn).serve" {
		t.Fatalf("parsed %+v", ts)
	}
	for _, tc := range []struct {
		trace int
		group string
	}{
		{0, "gRPC and protobuf (ext_proc transport)"},
		{1, "card guard"},
		{2, "ledger (encoding, write, fsync, chain, Merkle tree, checkpoints)"},
		{3, "vendor leg (HTTP client, TLS out)"},
		{4, "other (scheduler, network poller, metrics)"},
		{5, "pipeline and front-end code (input, outbound, records, answers)"},
	} {
		if got := CPUGroups[groupOf(ts[tc.trace].funcs)].Name; got != tc.group {
			t.Errorf("trace %d (%s): group %q, want %q", tc.trace, ts[tc.trace].funcs[0], got, tc.group)
		}
	}
	for _, bad := range []string{"", "File: proxy\n", "-----------+---\n      xyz   main.main\n"} {
		if _, err := parseTraces(bad); err == nil {
			t.Errorf("parseTraces(%q): no error", bad)
		}
	}
}
