package filters

import (
	"encoding/binary"
	"math/bits"
)

// The card guard's one-shot API: for values already in memory (a header
// value, a decoded path segment, a JSON string, a form value). The rules
// are in cardscan.go; CardWriter scans a stream.

// CardIndex returns the byte range [start, end) of the first card number
// in s, or -1, -1 when there is none. The first card number is the one
// whose last digit comes first (the longest, of those ending there); the
// range runs from its first digit to its last, separators included. It
// allocates nothing.
func CardIndex(s []byte) (start, end int) { return cardIndex(s) }

// CardIndexString is CardIndex for a string, without copying it.
func CardIndexString(s string) (start, end int) { return cardIndex(s) }

func cardIndex[T ~string | ~[]byte](s T) (int, int) {
	if !mayHoldCard(s) {
		return -1, -1 // most values: a few digits at most
	}
	i := longNumber(s)
	if i < 0 {
		return -1, -1 // only numbers too short for a card number
	}
	var st cardScan
	feed(&st, s[i:], int64(i), true)
	if !st.found {
		return -1, -1
	}
	return int(st.firstS), int(st.firstE)
}

// AppendRedactCards appends s to dst with every card number in it replaced
// by "[CARD REDACTED]", and returns the extended slice and how many were
// replaced. Card numbers that overlap (windows sharing digits, such as a
// 16-digit one inside a 19-digit one) are replaced together; separators
// around a card number are kept.
func AppendRedactCards(dst, s []byte) ([]byte, int) {
	if !mayHoldCard(s) || longNumber(s) < 0 {
		return append(dst, s...), 0
	}
	return appendRedact(dst, s)
}

// GuardCardsString applies the card guard g to a value about to leave (a
// header value, a decoded path segment). Under CardsBlock it returns
// ErrCardNumber, unwrapped, when s holds a card number: the caller adds
// where. Under CardsRedact it returns s with every card number replaced by
// "[CARD REDACTED]" and how many were. CardsAllow, or a value without a
// card number, returns s itself: nothing is allocated.
func GuardCardsString(s string, g CardGuard) (string, int, error) {
	if g == CardsAllow {
		return s, 0, nil
	}
	if start, _ := cardIndex(s); start < 0 {
		return s, 0, nil
	}
	if g != CardsRedact { // CardsBlock, and any value outside the three
		return s, 0, ErrCardNumber
	}
	out, n := appendRedact(make([]byte, 0, len(s)+len(cardRedacted)), s)
	return string(out), n, nil
}

func appendRedact[T ~string | ~[]byte](dst []byte, s T) ([]byte, int) {
	sink := appendSink[T]{dst: dst, src: s}
	st := cardScan{redact: true, sink: &sink}
	i := max(longNumber(s), 0)
	feed(&st, s[i:], int64(i), true)
	return append(sink.dst, s[sink.emitted:]...), st.cards
}

// appendSink copies src to dst, writing the placeholder for each card
// number the scan reports.
type appendSink[T ~string | ~[]byte] struct {
	dst     []byte
	src     T
	emitted int64
}

func (a *appendSink[T]) open(off int64) {
	a.dst = append(a.dst, a.src[a.emitted:off]...)
	a.dst = append(a.dst, cardRedacted...)
	a.emitted = off
}

func (a *appendSink[T]) extend(end int64) { a.emitted = end }

// hasCard reports whether s contains a card number.
func hasCard(s []byte) bool {
	start, _ := cardIndex(s)
	return start >= 0
}

// redactCards appends s to dst with every card number replaced.
func redactCards(dst, s []byte) []byte {
	dst, _ = AppendRedactCards(dst, s)
	return dst
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

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
