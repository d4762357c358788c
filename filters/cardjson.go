package filters

import "math/bits"

// The card guard on JSON numbers. A card number can leave as a number: as
// written (4111111111111111), with a fraction or an exponent that keeps its
// digits in the text (4111111111111111.0, 4.111111111111111e15,
// 41111111111111110e-1), or with an exponent that supplies some of them
// (411111111111111e1 is 4111111111111110, the value a vendor's parser
// reads). The first kinds are found by scanning the literal as text: '.'
// and '-' are separators, so "4.111111111111111" is one number of 16
// digits. The last kind needs the value written out.

// zeroDigits supplies the trailing zeros of a number's value: a window
// ends at most maxCardLen-1 digits after the last significant one.
var zeroDigits = []byte("000000000000000000")

// numberHasCard reports whether the JSON number lit (already validated)
// holds a card number, in its text or in its value.
func numberHasCard(lit []byte) bool {
	exp := false
	for _, c := range lit {
		exp = exp || c|0x20 == 'e'
	}
	if !exp && len(lit) < minCardLen {
		return false // the common case: too few digits, as written and as a value
	}
	if hasCard(lit) {
		return true
	}
	i := 0
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	intS := i
	for i < len(lit) && isDigit(lit[i]) {
		i++
	}
	intE := i
	fracS, fracE := i, i
	if i < len(lit) && lit[i] == '.' {
		i++
		fracS = i
		for i < len(lit) && isDigit(lit[i]) {
			i++
		}
		fracE = i
	}
	if i >= len(lit) || (lit[i] != 'e' && lit[i] != 'E') {
		if fracE == fracS || lit[fracE-1] != '0' {
			return false // the text is the value, scanned above
		}
		// Zeros ending the fraction are not part of the value: the value
		// is scanned below without them.
	} else {
		i++
	}
	neg := false
	if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
		neg = lit[i] == '-'
		i++
	}
	e := 0
	for ; i < len(lit) && isDigit(lit[i]); i++ {
		if e < 1<<20 { // beyond, the value has no digit in reach of a window anyway
			e = e*10 + int(lit[i]-'0')
		}
	}
	if neg {
		e = -e
	}
	// The significant digits are a (integer part) then b (fraction), with
	// the leading zeros dropped; the decimal point falls after point of
	// them.
	a, b := lit[intS:intE], lit[fracS:fracE]
	point := len(a) + e
	for len(a) > 0 && a[0] == '0' {
		a, point = a[1:], point-1
	}
	if len(a) == 0 {
		for len(b) > 0 && b[0] == '0' {
			b, point = b[1:], point-1
		}
	}
	// Zeros at the end of the fraction are not part of the value.
	for len(b) > 0 && b[len(b)-1] == '0' && len(a)+len(b) > max(point, 0) {
		b = b[:len(b)-1]
	}
	for len(b) == 0 && len(a) > 0 && a[len(a)-1] == '0' && len(a) > max(point, 0) {
		a = a[:len(a)-1]
	}
	sig := len(a) + len(b)
	if sig == 0 {
		return false // zero
	}
	var st cardScan
	switch {
	case point <= 0 || point >= sig:
		// 0.000ddd or ddd000: one group.
		feed(&st, a, 0, false)
		feed(&st, b, 0, false)
		if point > sig {
			feed(&st, zeroDigits[:min(point-sig, len(zeroDigits))], 0, false)
		}
	case point <= len(a):
		feed(&st, a[:point], 0, false)
		feed(&st, ".", 0, false)
		feed(&st, a[point:], 0, false)
		feed(&st, b, 0, false)
	default:
		feed(&st, a, 0, false)
		feed(&st, b[:point-len(a)], 0, false)
		feed(&st, ".", 0, false)
		feed(&st, b[point-len(a):], 0, false)
	}
	feed(&st, "", 0, true)
	return st.found
}

// jsonMayHoldCard reports whether the raw JSON text of a subtree can hold
// a card number, so that a subtree sent whole is only walked value by
// value when it can. An escaped digit (\u0034) still shows at least one
// ASCII digit, so the digits mayHoldCard counts bound those of the
// unescaped values; but a number with an exponent can stand for more
// digits than it has (4111111e9), so a digit followed by 'e' or 'E' makes
// it a maybe too. One pass, eight bytes at a time, as mayHoldCard.
func jsonMayHoldCard(raw []byte) bool {
	w := 0
	var carry uint64 // the previous word's last byte was a digit (as bit 7)
	i := 0
	for ; i+8 <= len(raw); i += 8 {
		x := load64(raw, i)
		a := x ^ (lsb * '0')
		d := ^((a &^ msb) + lsb*(0x80-10) | a) & msb // ASCII digits
		if d|carry|x&msb == 0 {
			continue // the common word: letters, punctuation
		}
		w += 2 * bits.OnesCount64(d)
		if h := x & msb; h != 0 {
			w += bits.OnesCount64(h)
		}
		// Bytes equal to 'e' or 'E' (the zero bytes of y; the borrow may
		// also flag bytes above one, which only errs towards a walk).
		y := (x | lsb*0x20) ^ (lsb * 'e')
		if w >= 2*minCardLen || (d<<8|carry)&zeroBytes(y) != 0 {
			return true
		}
		carry = d >> 56
	}
	prevDigit := carry != 0
	for ; i < len(raw); i++ {
		c := raw[i]
		w += int(cardWeight[c])
		if prevDigit && c|0x20 == 'e' {
			return true
		}
		prevDigit = isDigit(c)
	}
	return w >= 2*minCardLen
}
