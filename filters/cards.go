package filters

import (
	"encoding/binary"
	"math/bits"
)

// findCard returns the byte range [start, end) of the first card number in
// s at or after from, or start = -1. It runs on every outbound value, so it
// is one pass with no allocation: most bytes cost one comparison, and the
// Luhn sum is computed only for runs of the right length.
func findCard(s []byte, from int) (start, end int) {
	i := from
	for i < len(s) {
		if !isDigit(s[i]) {
			i++
			continue
		}
		// s[i] starts a maximal run: the byte before it is not a digit,
		// either because i == from == 0, or because the previous run or
		// non-digit ended there.
		var digits [19]byte
		n := 0
		j := i
		last := i
		for j < len(s) {
			c := s[j]
			if isDigit(c) {
				if n < len(digits) {
					digits[n] = c - '0'
				}
				n++
				last = j
				j++
				continue
			}
			if (c == ' ' || c == '-') && j+1 < len(s) && isDigit(s[j+1]) {
				j++
				continue
			}
			break
		}
		if n >= 13 && n <= 19 && luhn(digits[:n]) {
			return i, last + 1
		}
		i = last + 1
	}
	return -1, -1
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func luhn(d []byte) bool {
	sum := 0
	double := false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i])
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// hasCard reports whether s contains a card number.
func hasCard(s []byte) bool {
	if countDigits(s) < 13 {
		// The common case (names, emails, ids): too few digits in the
		// whole value for a card number, so the full scan is skipped.
		return false
	}
	start, _ := findCard(s, 0)
	return start >= 0
}

// countDigits counts the ASCII digits in s, eight bytes at a time.
func countDigits(s []byte) int {
	n := 0
	i := 0
	for ; i+8 <= len(s); i += 8 {
		// a has a byte below 10 exactly where s has a digit. Masking off
		// the high bit before adding keeps carries inside each byte, so
		// the flags are exact (unlike the borrow trick in specialBytes).
		a := binary.LittleEndian.Uint64(s[i:]) ^ (lsb * '0')
		ge10 := ((a &^ msb) + lsb*(0x80-10) | a) & msb
		n += bits.OnesCount64(^ge10 & msb)
	}
	for ; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n
}

// redactCards appends s to dst with every card number replaced.
func redactCards(dst, s []byte) []byte {
	from := 0
	for {
		start, end := findCard(s, from)
		if start < 0 {
			return append(dst, s[from:]...)
		}
		dst = append(dst, s[from:start]...)
		dst = append(dst, cardRedacted...)
		from = end
	}
}
