//go:build unix

package engine

import (
	"syscall"
	"testing"
	"time"
)

// ReportCPU adds a "cpu-ns/op" metric to b: the process's user and system
// CPU time per iteration. On a shared, loaded machine wall-clock ns/op
// counts the time the benchmark waited for a CPU; CPU time does not.
// Exported for the package's external tests (this is a _test.go file).
func ReportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
