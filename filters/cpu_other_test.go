//go:build !linux

package filters

import "testing"

// cpuThroughput is the plain benchmark loop where thread CPU time is not
// available (see cpu_linux_test.go).
func cpuThroughput(b *testing.B, bytes int64, f func()) {
	b.SetBytes(bytes)
	for b.Loop() {
		f()
	}
}
