package filters

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// swarWords yields words made of bytes around the boundaries the word-wise
// tests care about, plus random ones.
func swarWords(t *testing.T, f func(b []byte)) {
	t.Helper()
	interesting := []byte{0, 1, 0x09, 0x0a, 0x1f, 0x20, 0x21, '"', '\\', '/', '0', '5', '9', ':', 'a', 0x7f, 0x80, 0x81, 0xa0, 0xff}
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 8)
	for range 200000 {
		for i := range b {
			if r.IntN(2) == 0 {
				b[i] = interesting[r.IntN(len(interesting))]
			} else {
				b[i] = byte(r.IntN(256))
			}
		}
		f(b)
	}
	// Every single special byte at every position in a plain word.
	for pos := range 8 {
		for c := range 256 {
			for i := range b {
				b[i] = 'x'
			}
			b[pos] = byte(c)
			f(b)
		}
	}
}

func TestSpecialBytes(t *testing.T) {
	swarWords(t, func(b []byte) {
		want := 8
		for i, c := range b {
			if !plain[c] {
				want = i
				break
			}
		}
		m := specialBytes(binary.LittleEndian.Uint64(b))
		got := 8
		if m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != want {
			t.Fatalf("specialBytes(%q): first special at %d, want %d", b, got, want)
		}
	})
}

func TestCountDigits(t *testing.T) {
	swarWords(t, func(b []byte) {
		for _, s := range [][]byte{b, append(b[:8:8], b[:5]...)} {
			want := 0
			for _, c := range s {
				if isDigit(c) {
					want++
				}
			}
			if got := countDigits(s); got != want {
				t.Fatalf("countDigits(%q) = %d, want %d", s, got, want)
			}
		}
	})
}

func TestAppendKeySegment(t *testing.T) {
	swarWords(t, func(b []byte) {
		for _, s := range [][]byte{b, b[3:], append([]byte("abcdefg"), b...), append(append([]byte{}, b...), "abcdefgh"...)} {
			want := string(appendSegment(nil, string(s)))
			if got := string(appendKeySegment(nil, s)); got != want {
				t.Fatalf("appendKeySegment(%q) = %q, want %q", s, got, want)
			}
		}
	})
}
