package filters

// The card detector as it was before issue 9, kept as the baseline of the
// card guard's benchmarks (BENCHMARKS.md, "Card guard"): it tested each
// whole run of ASCII digits joined by single spaces or dashes.

func oldFindCard(s []byte, from int) (start, end int) {
	i := from
	for i < len(s) {
		if !isDigit(s[i]) {
			i++
			continue
		}
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
		if n >= 13 && n <= 19 && oldLuhn(digits[:n]) {
			return i, last + 1
		}
		i = last + 1
	}
	return -1, -1
}

func oldLuhn(d []byte) bool {
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

func oldHasCard(s []byte) bool {
	if countDigits(s) < 13 {
		return false
	}
	start, _ := oldFindCard(s, 0)
	return start >= 0
}
