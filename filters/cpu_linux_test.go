package filters

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// threadCPU returns the CPU time the calling OS thread has used.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD, Linux
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuThroughput runs the benchmark loop on one locked OS thread and also
// reports bytes per second of that thread's CPU time ("MB/cpu-s"): on a
// machine shared with other jobs, wall-clock throughput counts the time
// the benchmark waited for a core, CPU time does not.
func cpuThroughput(b *testing.B, bytes int64, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.SetBytes(bytes)
	start := threadCPU()
	for b.Loop() {
		f()
	}
	if d := threadCPU() - start; d > 0 {
		b.ReportMetric(float64(bytes)*float64(b.N)/d.Seconds()/1e6, "MB/cpu-s")
	}
}
