package filters

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
	exp := 0
	for ; i < len(lit) && isDigit(lit[i]); i++ {
		if exp < 1<<20 { // beyond, the value has no digit in reach of a window anyway
			exp = exp*10 + int(lit[i]-'0')
		}
	}
	if neg {
		exp = -exp
	}
	// The significant digits are a (integer part) then b (fraction), with
	// the leading zeros dropped; the decimal point falls after point of
	// them.
	a, b := lit[intS:intE], lit[fracS:fracE]
	point := len(a) + exp
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
// ASCII digit, so the digits mayHoldCard counts bound those of the unescaped
// values; but a number with an exponent can stand for more digits than it
// has (4111111e9), so a digit followed by 'e' or 'E' makes it a maybe too.
func jsonMayHoldCard(raw []byte) bool {
	if mayHoldCard(raw) {
		return true
	}
	for i := skipToDigit(raw, 0); i < len(raw); i = skipToDigit(raw, i+1) {
		if isDigit(raw[i]) && i+1 < len(raw) && raw[i+1]|0x20 == 'e' {
			return true
		}
	}
	return false
}
