package filters

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"unicode/utf8"
)

type xfKind uint8

const (
	xfHMAC xfKind = iota + 1
	xfLast4
	xfRedact
	xfYear
	xfTruncate
)

// Transform is a parsed transform name. The zero value is invalid.
type Transform struct {
	kind xfKind
	n    int // truncate length in runes
}

// maxTruncate keeps "truncate:N" a length, not a way to smuggle a huge
// number into a contract.
const maxTruncate = 1 << 20

// ParseTransform parses one transform: "hmac" (HMAC-SHA256 hex with the
// vendor's key), "last4" (last four characters, the rest masked with "*"),
// "redact" (the string "[REDACTED]"), "year" (a date or timestamp reduced to
// "YYYY") or "truncate:N" (the first N characters, N ≥ 1). It is exported so
// the engine can reject a bad contract at load time, not per request.
func ParseTransform(s string) (Transform, error) {
	switch s {
	case "hmac":
		return Transform{kind: xfHMAC}, nil
	case "last4":
		return Transform{kind: xfLast4}, nil
	case "redact":
		return Transform{kind: xfRedact}, nil
	case "year":
		return Transform{kind: xfYear}, nil
	}
	if rest, ok := strings.CutPrefix(s, "truncate:"); ok {
		n, err := strconv.Atoi(rest)
		if err != nil || n < 1 || n > maxTruncate || rest[0] == '+' || rest[0] == '0' {
			return Transform{}, fmt.Errorf("bad length in %q (want truncate:N, 1 ≤ N ≤ %d)", s, maxTruncate)
		}
		return Transform{kind: xfTruncate, n: n}, nil
	}
	return Transform{}, fmt.Errorf("unknown transform %q (want hmac, last4, redact, year or truncate:N)", s)
}

func (t Transform) String() string {
	switch t.kind {
	case xfHMAC:
		return "hmac"
	case xfLast4:
		return "last4"
	case xfRedact:
		return "redact"
	case xfYear:
		return "year"
	case xfTruncate:
		return "truncate:" + strconv.Itoa(t.n)
	}
	return "invalid"
}

const (
	redacted     = "[REDACTED]"
	cardRedacted = "[CARD REDACTED]"
)

// xfState holds what one filter call reuses across values.
type xfState struct {
	key []byte
	mac hash.Hash
	// macKey is the key mac was made with: a pooled walker keeps its MAC
	// across calls (hmac.New costs three allocations) and only remakes it
	// when a call brings another key.
	macKey []byte
	sum    []byte
}

// apply appends the transformed value (unquoted, unescaped) to dst. ok is
// false when the transform cannot handle the value; the caller then sends
// "[REDACTED]".
func (t *Transform) apply(dst, v []byte, st *xfState) ([]byte, bool) {
	switch t.kind {
	case xfHMAC:
		if st.mac == nil || !bytes.Equal(st.macKey, st.key) {
			st.mac = hmac.New(sha256.New, st.key)
			st.macKey = append(st.macKey[:0], st.key...)
		}
		st.mac.Reset()
		st.mac.Write(v)
		st.sum = st.mac.Sum(st.sum[:0])
		return hex.AppendEncode(dst, st.sum), true
	case xfLast4:
		n := utf8.RuneCount(v)
		if n <= 4 {
			// Nothing would be masked: sending it as is defeats the purpose.
			return dst, false
		}
		for i := 0; i < n-4; i++ {
			_, size := utf8.DecodeRune(v)
			v = v[size:]
			dst = append(dst, '*')
		}
		return append(dst, v...), true
	case xfRedact:
		return append(dst, redacted...), true
	case xfYear:
		y, ok := parseYear(v)
		if !ok {
			return dst, false
		}
		return append(dst, y[:]...), true
	case xfTruncate:
		i, n := 0, 0
		for i < len(v) && n < t.n {
			_, size := utf8.DecodeRune(v[i:])
			i += size
			n++
		}
		return append(dst, v[:i]...), true
	}
	return dst, false
}

// parseYear accepts the date shapes of ISO 8601 / RFC 3339 that payloads
// use: YYYY, YYYY-MM, YYYY-MM-DD, optionally followed by "T" or " " and
// hh:mm[:ss[.fff]] with an optional "Z" or ±hh:mm offset. Anything else is
// redacted rather than guessed at. It is written out instead of looping over
// time.Parse layouts because every failed layout allocates an error, and
// year runs on every element of large arrays.
func parseYear(v []byte) ([4]byte, bool) {
	var y [4]byte
	num := func(i, n int) (int, bool) {
		if i+n > len(v) {
			return 0, false
		}
		x := 0
		for _, c := range v[i : i+n] {
			if !isDigit(c) {
				return 0, false
			}
			x = x*10 + int(c-'0')
		}
		return x, true
	}
	if _, ok := num(0, 4); !ok {
		return y, false
	}
	copy(y[:], v[:4])
	rest := v[4:]
	if len(rest) == 0 {
		return y, true
	}
	if len(rest) < 3 || rest[0] != '-' {
		return y, false
	}
	month, ok := num(5, 2)
	if !ok || month < 1 || month > 12 {
		return y, false
	}
	if len(v) == 7 {
		return y, true
	}
	if len(v) < 10 || v[7] != '-' {
		return y, false
	}
	day, ok := num(8, 2)
	year, _ := num(0, 4)
	if !ok || day < 1 || day > daysIn(month, year) {
		return y, false
	}
	t := v[10:]
	if len(t) == 0 {
		return y, true
	}
	if t[0] != 'T' && t[0] != 't' && t[0] != ' ' {
		return y, false
	}
	t = t[1:]
	if !clock(t[:min(len(t), 5)], 23) {
		return y, false
	}
	t = t[5:]
	if len(t) >= 3 && t[0] == ':' {
		if s, ok := twoDigits(t[1:]); !ok || s > 60 {
			return y, false
		}
		t = t[3:]
		if len(t) > 0 && (t[0] == '.' || t[0] == ',') {
			i := 1
			for i < len(t) && isDigit(t[i]) {
				i++
			}
			if i == 1 {
				return y, false
			}
			t = t[i:]
		}
	}
	switch {
	case len(t) == 0, len(t) == 1 && (t[0] == 'Z' || t[0] == 'z'):
		return y, true
	case (t[0] == '+' || t[0] == '-') && len(t) == 6 && clock(t[1:], 23):
		return y, true
	}
	return y, false
}

func twoDigits(b []byte) (int, bool) {
	if len(b) < 2 || !isDigit(b[0]) || !isDigit(b[1]) {
		return 0, false
	}
	return int(b[0]-'0')*10 + int(b[1]-'0'), true
}

// clock checks "hh:mm".
func clock(b []byte, maxHour int) bool {
	if len(b) != 5 || b[2] != ':' {
		return false
	}
	h, ok1 := twoDigits(b)
	m, ok2 := twoDigits(b[3:])
	return ok1 && ok2 && h <= maxHour && m <= 59
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
