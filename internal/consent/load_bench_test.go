package consent

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/cputime"
)

// writeConsents writes a consents file of n subjects in format ("json" or
// "yaml"), each with a consent history of its own: one to four events over
// marketing, support and analytics, grants with their evidence, some
// withdrawn later. It returns the path and the file's size.
func writeConsents(tb testing.TB, dir string, n int, format string) (string, int64) {
	tb.Helper()
	path := filepath.Join(dir, fmt.Sprintf("consents-%d.%s", n, format))
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	purposes := []string{"marketing", "support", "analytics"}
	actions := []string{"checked 'Send me product news'", "ticked 'Keep me informed'", "accepted analytics cookies"}
	wheres := []string{"signup form /register", "webinar registration", "account settings"}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if format == "json" {
		w.WriteString("{\"subjects\": {\n")
	} else {
		w.WriteString("subjects:\n")
	}
	for i := range n {
		events := 1 + rng.IntN(4)
		if format == "json" {
			if i > 0 {
				w.WriteString(",\n")
			}
			fmt.Fprintf(w, "  \"u-%07d\": [", i)
		} else {
			fmt.Fprintf(w, "  u-%07d:\n", i)
		}
		for j := range events {
			p := purposes[rng.IntN(len(purposes))]
			at := base.Add(time.Duration(rng.IntN(365*24*3600)) * time.Second).Format(time.RFC3339)
			status, action, where := "granted", actions[rng.IntN(len(actions))], wheres[rng.IntN(len(wheres))]
			if j > 0 && rng.IntN(3) == 0 {
				status, action, where = "withdrawn", "clicked unsubscribe", "newsletter footer"
			}
			if format == "json" {
				if j > 0 {
					w.WriteString(",")
				}
				fmt.Fprintf(w, "\n    {\"purpose\": %q, \"status\": %q, \"time\": %q, \"evidence\": {\"action\": %q, \"where\": %q, \"policy_version\": \"2026-09\"}}",
					p, status, at, action, where)
			} else {
				fmt.Fprintf(w, "    - {purpose: %s, status: %s, time: %q, evidence: {action: %q, where: %q, policy_version: \"2026-09\"}}\n",
					p, status, at, action, where)
			}
		}
		if format == "json" {
			w.WriteString("]")
		}
	}
	if format == "json" {
		w.WriteString("\n}}\n")
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return path, info.Size()
}

// peakRSS resets the kernel's peak-RSS mark and returns a function giving
// how far the process's peak RSS rose above its RSS at the reset (Linux;
// elsewhere 0).
func peakRSS() func() int64 {
	rss := func(field string) int64 {
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, field+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	runtime.GC()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return func() int64 { return 0 }
	}
	start := rss("VmRSS")
	return func() int64 { return rss("VmHWM") - start }
}

// BenchmarkLoadFile is the consent file's load at 10k, 100k and 1M subjects
// (generated, JSON; YAML up to 100k): time to a ready File (and the CPU time
// it took, which a busy machine does not inflate), and memory as multiples
// of the file's size: peak (the process's peak RSS over its RSS before the
// load) and kept (the heap the loaded state holds). The 1M
// subjects (~190 MB of JSON) run only with -benchtime=1x and PARE_BENCH_1M=1:
//
//	PARE_BENCH_1M=1 go test -run XXX -bench LoadFile -benchtime 1x ./internal/consent/
func BenchmarkLoadFile(b *testing.B) {
	dir := b.TempDir()
	for _, bc := range []struct {
		n      int
		format string
	}{{10_000, "json"}, {100_000, "json"}, {1_000_000, "json"}, {10_000, "yaml"}, {100_000, "yaml"}} {
		b.Run(fmt.Sprintf("%s/%d", bc.format, bc.n), func(b *testing.B) {
			if bc.n >= 1_000_000 && os.Getenv("PARE_BENCH_1M") == "" {
				b.Skip("set PARE_BENCH_1M=1")
			}
			path, size := writeConsents(b, dir, bc.n, bc.format)
			var kept int64
			var peak int64
			var cpu time.Duration
			for b.Loop() {
				var before runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				rise := peakRSS()
				cpu0 := cputime.Process()
				f, err := OpenFile(path, nil)
				if err != nil {
					b.Fatal(err)
				}
				cpu += cputime.Process() - cpu0
				peak = max(peak, rise())
				b.StopTimer()
				var after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&after)
				kept = int64(after.HeapAlloc) - int64(before.HeapAlloc)
				if got := len(*f.state.Load()); got != bc.n {
					b.Fatalf("%d subjects loaded, want %d", got, bc.n)
				}
				runtime.KeepAlive(f)
				b.StartTimer()
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			b.ReportMetric(float64(size)/(1<<20), "file-MiB")
			b.ReportMetric(float64(peak)/float64(size), "peak/file")
			b.ReportMetric(float64(kept)/float64(size), "kept/file")
		})
	}
}

// TestLoadIsLinear: the JSON scanner examines each byte of a file a bounded
// number of times (counted, not timed: the machine may be shared), and
// loading ten times the subjects costs about ten times the allocations in
// either format. The reader this scanner replaced counted every token's line
// from the start of the file: quadratic, 40,000 subjects took minutes.
func TestLoadIsLinear(t *testing.T) {
	dir := t.TempDir()
	for _, format := range []string{"json", "yaml"} {
		cost := func(n int) float64 {
			path, size := writeConsents(t, dir, n, format)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if format == "json" {
				if _, steps, err := scanJSON(path, data); err != nil || steps > 2*int(size) {
					t.Errorf("%d subjects: %d steps over %d bytes (err %v)", n, steps, size, err)
				}
			}
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			if _, err := parseFile(path, format, data); err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&m1)
			return float64(m1.Mallocs - m0.Mallocs)
		}
		small, large := cost(2_000), cost(20_000)
		t.Logf("%s: allocations %.0f -> %.0f (x%.1f)", format, small, large, large/small)
		if large > 15*small {
			t.Errorf("%s: 10x the subjects cost %.1fx the allocations", format, large/small)
		}
	}
}
