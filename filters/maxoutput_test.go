package filters

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
)

// hmacLeaves is {"a":[0,1,0,1...]} of about n bytes: with "a" under hmac,
// each two-byte element becomes a 67-byte string.
func hmacLeaves(n int) []byte {
	return append(repeatTo([]byte(`{"a":[0`), ",1", n, 2), "]}"...)
}

// hmacPairs is a=0&a=1... of about n bytes, the same for forms.
func hmacPairs(n int) []byte {
	return repeatTo([]byte("a=0"), "&a=1", n, 0)
}

// TestMaxOutput: Options.MaxOutput bounds what a filter writes, so that a
// transform that makes a body grow cannot make it grow without bound.
func TestMaxOutput(t *testing.T) {
	m, err := Compile(nil, map[string]string{"a": "hmac", "b": "redact"})
	if err != nil {
		t.Fatal(err)
	}
	run := func(kind string, dst, src []byte, max int) ([]byte, error) {
		opt := &Options{HMACKey: []byte("k"), MaxOutput: max}
		if kind == "form" {
			out, _, err := m.Form(dst, src, opt)
			return out, err
		}
		out, _, err := m.JSON(dst, src, opt)
		return out, err
	}
	tests := []struct {
		kind string
		body []byte
	}{
		{"json", hmacLeaves(4 << 10)},
		{"json", []byte(`{"b":[1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,0]}`)},
		{"json", []byte(`{"x":{"a":"0"},"a":{"y":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}}`)},
		{"form", hmacPairs(4 << 10)},
	}
	for _, tt := range tests {
		full, err := run(tt.kind, nil, tt.body, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(full) <= len(tt.body) {
			t.Fatalf("%s: output %d for input %d: the case does not grow", tt.kind, len(full), len(tt.body))
		}
		prefix := []byte("kept:")
		// At the bound and above it: the same output as without one.
		for _, max := range []int{len(full), len(full) + 1, 1 << 30} {
			out, err := run(tt.kind, prefix, tt.body, max)
			if err != nil || !bytes.Equal(out[len(prefix):], full) || !bytes.HasPrefix(out, prefix) {
				t.Errorf("%s, max %d (output %d): %v", tt.kind, max, len(full), err)
			}
		}
		// Below it: refused, dst unchanged.
		for _, max := range []int{len(full) - 1, len(tt.body), 1} {
			out, err := run(tt.kind, prefix, tt.body, max)
			if !errors.Is(err, ErrOutputTooLarge) || !bytes.Equal(out, prefix) {
				t.Errorf("%s, max %d (output %d): %q, %v; want ErrOutputTooLarge and dst unchanged", tt.kind, max, len(full), out, err)
			}
		}
	}
}

// TestMaxOutputBoundsMemory: the bound holds while the filter runs, not
// only at the end: filtering 1 MiB that would come out 33 MiB allocates
// about the bound, not the 33 MiB.
func TestMaxOutputBoundsMemory(t *testing.T) {
	m, err := Compile(nil, map[string]string{"a": "hmac"})
	if err != nil {
		t.Fatal(err)
	}
	const bound = 2 << 20
	for _, tt := range []struct {
		kind string
		body []byte
	}{{"json", hmacLeaves(1 << 20)}, {"form", hmacPairs(1 << 20)}} {
		t.Run(tt.kind, func(t *testing.T) {
			opt := &Options{HMACKey: []byte("k"), MaxOutput: bound}
			filter := func() error {
				var err error
				if tt.kind == "json" {
					_, _, err = m.JSON(nil, tt.body, opt)
				} else {
					_, _, err = m.Form(nil, tt.body, opt)
				}
				return err
			}
			_ = filter() // fill the pools
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := filter()
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrOutputTooLarge) {
				t.Fatalf("err %v", err)
			}
			// The output slice grows by doubling up to the bound (about
			// twice the bound in all), plus the parser's own state.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*bound+allocPerByte*uint64(len(tt.body))/8 {
				t.Errorf("allocated %d bytes for a %d-byte bound", alloc, bound)
			}
		})
	}
}
