// Package cputime measures the CPU time this process uses, for benchmarks
// on shared machines: wall-clock ns/op counts the time a benchmark waited
// for a CPU that other work held; CPU time does not.
package cputime

import (
	"testing"
)

// Report adds a "cpu-ns/op" metric to b: the process's user and system CPU
// time per iteration, from the call to the call of the function it
// returns (defer cputime.Report(b)()).
func Report(b *testing.B) func() {
	start := Process()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((Process()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}
