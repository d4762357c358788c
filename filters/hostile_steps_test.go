package filters

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The work budget of every filter: steps ≤ stepsPerByte·len(input) +
// stepsConst. A filter that rescans per nesting level, or copies a long
// prefix per member, exceeds it on the adversarial shapes at a few KiB
// already (the first case of issue 10 took 900 steps per byte).
const (
	stepsPerByte = 16
	stepsConst   = 12 << 10 // the report's own allowance (reportBudget) and a margin
)

func stepBudget(n int) int { return stepsPerByte*n + stepsConst }

// maxAmplification bounds the output per input byte: a transform writes at
// most 64 bytes (hmac) and its quotes and separator for a value of at least
// one byte and its separator; everything else writes at most what it read,
// or a little more for "[CARD REDACTED]" in place of 13 or more digits.
const maxAmplification = 34

// allocPerByte bounds the bytes a filter call allocates per input byte,
// beyond its output. The worst shapes are forms whose every pair is a new
// name (a report entry, and a counter per "[]" prefix, each a few tens of
// bytes for a few bytes of input); see BENCHMARKS.md.
const allocPerByte = 80

// TestHostileSteps filters every adversarial shape at several sizes and
// holds the steps counted to the budget, and their rate per byte to the
// same value at every size: the deterministic form of "the ns/B of
// BenchmarkHostile stay flat". It also bounds the bytes allocated.
func TestHostileSteps(t *testing.T) {
	sizes := []int{16 << 10, 128 << 10, 1 << 20}
	if testing.Short() {
		sizes = sizes[:2]
	}
	// The first size must be past the fixed structure of the deep shapes.
	for i := range hostileShapes {
		s := &hostileShapes[i]
		t.Run(s.name, func(t *testing.T) {
			m, err := s.mask()
			if err != nil {
				t.Fatal(err)
			}
			var rates []float64
			for _, n := range sizes {
				body := s.gen(n)
				// Once to fill the pools, then measured.
				_, _, _, err := s.run(m, nil, body)
				checkHostile(t, s, err)
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				out, rep, steps, err := s.run(m, nil, body)
				runtime.ReadMemStats(&after)
				checkHostile(t, s, err)
				alloc := int(after.TotalAlloc - before.TotalAlloc)
				rate := float64(steps) / float64(len(body))
				rates = append(rates, rate)
				t.Logf("%7d B: %5.2f steps/B, %5.2f B allocated/B, output %d B", len(body), rate, float64(alloc)/float64(len(body)), len(out))
				if steps > stepBudget(len(body)) {
					t.Errorf("%d B: %d steps, over the budget of %d", len(body), steps, stepBudget(len(body)))
				}
				if len(out) > maxAmplification*len(body)+1024 {
					t.Errorf("%d B: %d B of output", len(body), len(out))
				}
				if s.maxRate > 0 && rate > s.maxRate {
					t.Errorf("%d B: %.2f steps/B, over the %.2f of this shape", len(body), rate, s.maxRate)
				}
				// Allocation: the output (a large slice grows by a
				// quarter at a time: five times its size in all) and the
				// parser's state and report.
				if limit := 5*len(out) + allocPerByte*len(body) + 1<<20; alloc > limit {
					t.Errorf("%d B: allocated %d B, over %d", len(body), alloc, limit)
				}
				if rep != nil && rep.Truncated && s.name != "json/long-key-report" {
					t.Errorf("%d B: report truncated", len(body))
				}
			}
			// Flat: the rate at the largest size is within a quarter of the
			// rate at the smallest, plus what the constant parts weigh there.
			first, last := rates[0], rates[len(rates)-1]
			if last > 1.25*first+float64(stepsConst)/float64(sizes[0]) {
				t.Errorf("steps per byte grow with size: %.2f at %d B, %.2f at %d B", first, sizes[0], last, sizes[len(sizes)-1])
			}
		})
	}
}

var writeSeeds = flag.Bool("hostile.seeds", false, "TestWriteHostileSeeds: write the adversarial shapes as seeds of the fuzz targets under testdata/fuzz")

// TestWriteHostileSeeds writes every adversarial shape, at 4 KiB, into the
// seed corpus of FuzzJSON, FuzzForm or FuzzQuery, so that fuzzing starts
// from the bodies that used to cost too much (go test runs the seeds
// always, with the cost check of each target).
//
//	go test ./filters -run TestWriteHostileSeeds -hostile.seeds
func TestWriteHostileSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("writes testdata; run with -hostile.seeds")
	}
	for i := range hostileShapes {
		s := &hostileShapes[i]
		body := s.gen(4 << 10)
		spec := strings.Join(s.fields, "\n")
		for p, x := range s.xfs {
			spec += "\n" + p + "=" + x
		}
		spec = strings.TrimPrefix(spec, "\n")
		target := map[string]string{"json": "FuzzJSON", "form": "FuzzForm", "query": "FuzzQuery"}[s.kind]
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		if s.kind == "query" {
			fmt.Fprintf(&b, "string(%q)\nstring(%q)\n", body, strings.Join(s.allowed, ","))
		} else {
			fmt.Fprintf(&b, "[]byte(%q)\nstring(%q)\n", body, spec)
		}
		fmt.Fprintf(&b, "byte(%q)\n", rune(s.cards))
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		name := "hostile-" + strings.ReplaceAll(strings.TrimPrefix(s.name, s.kind+"/"), "/", "-")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
