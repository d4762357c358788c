package filters

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostileSizes are the body sizes of the benchmarks: a linear filter costs
// the same per byte at each.
var hostileSizes = []int{64 << 10, 1 << 20, 4 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

// checkHostile fails unless err is what shape s expects.
func checkHostile(tb testing.TB, s *hostileShape, err error) {
	tb.Helper()
	var se *SyntaxError
	switch {
	case s.rejected && !errors.As(err, &se):
		tb.Fatalf("%s: want a *SyntaxError, got %v", s.name, err)
	case !s.rejected && err != nil:
		tb.Fatalf("%s: %v", s.name, err)
	}
}

// BenchmarkHostile filters each adversarial shape at 64 KiB, 1 MiB and
// 4 MiB and reports ns/B (time per input byte) and steps/B (the work
// counter): both must be flat across sizes. TestHostileTable prints the
// ratios.
func BenchmarkHostile(b *testing.B) {
	for i := range hostileShapes {
		s := &hostileShapes[i]
		for _, n := range hostileSizes {
			b.Run(s.name+"/"+sizeName(n), func(b *testing.B) {
				body := s.gen(n)
				m, err := s.mask()
				if err != nil {
					b.Fatal(err)
				}
				dst := make([]byte, 0, 2*len(body))
				steps := 0
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					var err error
					dst, _, steps, err = s.run(m, dst[:0], body)
					checkHostile(b, s, err)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(body)), "ns/B")
				b.ReportMetric(float64(steps)/float64(len(body)), "steps/B")
			})
		}
	}
}

var (
	hostileTable  = flag.Bool("hostile.table", false, "TestHostileTable: measure every adversarial shape and print the table of ns/B and its ratios between sizes")
	hostileRounds = flag.Int("hostile.rounds", 3, "TestHostileTable: rounds per shape and size (the median is kept)")
	hostileOnly   = flag.String("hostile.only", "", "TestHostileTable: only shapes whose name contains this")
	hostileSkip   = flag.String("hostile.skip", "", "TestHostileTable: comma-separated shapes to leave out")
	hostileMax    = flag.Int("hostile.max", 4<<20, "TestHostileTable: skip sizes above this many bytes (for versions where a shape is too costly)")
)

// TestHostileTable prints, with -hostile.table, the markdown table of
// BENCHMARKS.md: ns per input byte of each shape at each size (median of
// -hostile.rounds rounds, sizes taking turns so that the machine's drift
// hits them alike) and the ratios 1 MiB / 64 KiB and 4 MiB / 64 KiB, which
// must stay near 1. Time is printed, never asserted: the steps counter is
// what tests assert on (TestHostileSteps).
//
//	go test ./filters -run TestHostileTable -hostile.table -v
func TestHostileTable(t *testing.T) {
	if !*hostileTable {
		t.Skip("measures for minutes; run with -hostile.table")
	}
	var rows []string
	for i := range hostileShapes {
		s := &hostileShapes[i]
		if !strings.Contains(s.name, *hostileOnly) || slices.Contains(strings.Split(*hostileSkip, ","), s.name) {
			continue
		}
		m, err := s.mask()
		if err != nil {
			t.Fatal(err)
		}
		var bodies [][]byte
		for _, n := range hostileSizes {
			if n <= *hostileMax {
				bodies = append(bodies, s.gen(n))
			}
		}
		nsPerB := make([][]float64, len(hostileSizes))
		stepsPerB := make([]float64, len(hostileSizes))
		for range *hostileRounds {
			for j, body := range bodies {
				dst := make([]byte, 0, 2*len(body))
				runs, start := 0, time.Now()
				// At least 200 ms per measurement, and at least one run.
				for runs == 0 || time.Since(start) < 200*time.Millisecond {
					_, _, steps, err := s.run(m, dst[:0], body)
					checkHostile(t, s, err)
					stepsPerB[j] = float64(steps) / float64(len(body))
					runs++
				}
				nsPerB[j] = append(nsPerB[j], float64(time.Since(start).Nanoseconds())/float64(runs)/float64(len(body)))
			}
		}
		row := "| " + s.name
		var ns []float64
		for j := range hostileSizes {
			if j >= len(bodies) {
				row += " | –"
				continue
			}
			slices.Sort(nsPerB[j])
			ns = append(ns, nsPerB[j][len(nsPerB[j])/2])
			row += fmt.Sprintf(" | %.2f", ns[j])
		}
		for j := 1; j < len(hostileSizes); j++ {
			if j >= len(ns) {
				row += " | –"
				continue
			}
			row += fmt.Sprintf(" | %.2f", ns[j]/ns[0])
		}
		row += " |"
		for j := range ns {
			if j > 0 {
				row += " /"
			}
			row += fmt.Sprintf(" %.1f", stepsPerB[j])
		}
		rows = append(rows, row+" |")
		t.Log(rows[len(rows)-1])
	}
	fmt.Println("| shape | ns/B 64 KiB | ns/B 1 MiB | ns/B 4 MiB | 1 MiB ÷ 64 KiB | 4 MiB ÷ 64 KiB | steps/B 64 KiB / 1 MiB / 4 MiB |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Println(r)
	}
}
