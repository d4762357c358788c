//go:build !unix

package ca

import "testing"

// reportCPU is a no-op where getrusage is not available.
func reportCPU(*testing.B) func() { return func() {} }
