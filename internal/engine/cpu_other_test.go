//go:build !unix

package engine

import "testing"

// ReportCPU is a no-op where getrusage is not available.
func ReportCPU(*testing.B) func() { return func() {} }
