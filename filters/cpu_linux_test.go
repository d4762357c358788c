package filters

import (
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// threadCPU returns the CPU time the calling OS thread has used, from
// CLOCK_THREAD_CPUTIME_ID: the scheduler's own count, to the nanosecond
// (getrusage's is sampled at clock ticks on this kind of machine).
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
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
