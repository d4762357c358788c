//go:build unix

package ca

import (
	"syscall"
	"testing"
	"time"
)

// reportCPU adds a "cpu-ns/op" metric to b: the process's user and system
// CPU time per iteration from the call to the returned function's call. On
// a shared, loaded machine wall-clock ns/op counts the time the benchmark
// waited for a CPU; CPU time does not.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
		}
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
