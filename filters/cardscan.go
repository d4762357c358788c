package filters

import (
	"math/bits"
	"unicode/utf8"
)

// The card guard's detector. The rules (doc.go, "Card guard", says them
// in prose; the slow reference in cardref_test.go says them again in
// another way, and the fuzz tests hold the two together):
//
//   - A number is a maximal sequence of digits (any unicode.Nd digit,
//     read as its value) in which two consecutive digits are separated by
//     at most maxSpacers spacers and at most maxInvisibles invisible
//     characters (cardrunes.go).
//   - A group is a part of a number between spacers: invisible characters
//     do not split groups.
//   - A window is 13 to 19 consecutive digits of a number. It is a card
//     number when it starts at a segment start (the first digit of a
//     group, or the digit after a card number found earlier in the same
//     number) or after nothing but zeros since one; when it spans groups,
//     its last digit ends a group; its first six digits are in the IIN
//     table for its length; and it passes the Luhn check.
//
// Windows are what finds a card number with its expiry and CVV typed after
// it ("4111 1111 1111 1111 12/29 123"), with them glued on
// ("41111111111111111229"), or padded with zeros. The corpus in
// testdata/cards decided where they may start and end (TestCardWindowRules
// and BENCHMARKS.md, "Card guard"): starting anywhere makes every long id,
// IBAN and nanosecond timestamp hold some Luhn-valid window with a
// scheme's prefix (9.6% of the look-alikes flagged), and ending anywhere
// does it to IBANs printed in groups (2.5%); with the rule above, 2.0%.
// Letting digits follow a card number inside its group (2.0% rather than
// 0.7% with windows aligned to groups at both ends) is what finds a CVV
// typed onto one; it flags about one in ten ids of 20 digits or more
// written without separators. A card number glued after other digits
// ("12344111111111111111") is not found: people do not write card numbers
// that way, and nothing can stop someone who means to hide one.

const (
	minCardLen    = 13
	maxCardLen    = 19
	maxSpacers    = 4 // "4111 - 1111", several spaces, a tab and a space
	maxInvisibles = 5 // UTF-16: one NUL after each digit and each of 4 spacers
	// redactLag is how many digits a redacting scan keeps unsettled: a
	// card number ending at the last digit starts up to maxCardLen-1
	// before it, and the zeros padding it up to maxCardLen-1 before that.
	redactLag = 2 * maxCardLen
	ringSize  = 64 // > redactLag, a power of two
)

// cardDigit is one digit of the current number.
type cardDigit struct {
	off    int64 // byte offset of its first byte
	size   uint8 // its UTF-8 length
	val    uint8
	s0, s1 uint8 // the number's Luhn sums before this digit (see cardScan)
	start  bool  // a window may start here
	first  bool  // the first digit of a group
	iin    uint8 // lengths the IIN table allows from here, once iinOK
	iinOK  bool
	marked bool // inside a card number found (redaction)
	joined bool // a card number found covers this digit and the one before
}

// cardSink receives the card numbers of a redacting scan as they become
// final: open is called at the offset of the first byte of a card number,
// extend with the end of each of its digits. Card numbers that overlap
// (share a digit) are reported as one.
type cardSink interface {
	open(off int64)
	extend(end int64)
}

// cardScan is the detector's state between two pieces of input: it can be
// fed a whole value at once or a stream in chunks of any size, and finds
// the same card numbers either way.
type cardScan struct {
	ring [ringSize]cardDigit
	n    int // digits of the current number; 0 outside a number
	// fin is the first digit of the current number that a window ending
	// later could still include: digits before it are final.
	fin int
	// group is the index of the first digit of the current group.
	group int
	// sureS and condS are 1 + the starts of the longest card numbers
	// ending at the last digit that lie in its group (sure) or span groups
	// (cond, counted only if that digit ends its group), or 0 for none.
	sureS, condS int
	// sum0 and sum1 are the Luhn sums of the number so far, mod 10, with
	// the digits at even (sum0) or odd (sum1) positions doubled. The Luhn
	// sum of the window [s, e] is the difference of the sums after e and
	// before s that doubles the positions of e's parity plus one.
	sum0, sum1     uint8
	spacers, invis uint8
	zeros          bool // every digit since the segment start is 0
	redact         bool // mark and report to sink; otherwise stop at the first card
	sink           cardSink
	found          bool
	firstS, firstE int64 // byte range of the first card number found
	inSeq          bool  // redact: the last final digit was marked
	pend           [utf8.UTFMax]byte
	npend          int   // bytes of an unfinished UTF-8 sequence at the end of a chunk
	pendOff        int64 // its offset
	cards          int   // card numbers reported to the sink
}

// done reports whether scanning further can change the result.
func (st *cardScan) done() bool { return st.found && !st.redact }

// luhnDouble[v] is 2v with its digits summed.
var luhnDouble = [10]uint8{0, 2, 4, 6, 8, 1, 3, 5, 7, 9}

func addMod10(a, b uint8) uint8 {
	a += b
	if a >= 10 {
		a -= 10
	}
	return a
}

// digit feeds one digit of value v, encoded in size bytes at off.
func (st *cardScan) digit(v uint8, off int64, size uint8) {
	n := st.n
	if n == 0 || st.spacers > 0 {
		st.zeros = true // a new group
		st.group = n
	} else if st.condS > 0 || st.sureS > 0 {
		// The digit before this one is glued to it: only windows that lie
		// in one group may end there.
		st.commit(st.sureS)
	}
	st.spacers, st.invis = 0, 0
	d := &st.ring[n&(ringSize-1)]
	*d = cardDigit{off: off, size: size, val: v, s0: st.sum0, s1: st.sum1, start: st.zeros, first: st.group == n}
	if n&1 == 0 {
		st.sum0 = addMod10(st.sum0, luhnDouble[v])
		st.sum1 = addMod10(st.sum1, v)
	} else {
		st.sum0 = addMod10(st.sum0, v)
		st.sum1 = addMod10(st.sum1, luhnDouble[v])
	}
	st.zeros = st.zeros && v == 0
	n++
	st.n = n
	if n >= minCardLen {
		st.windows(n)
	}
	if st.redact {
		for st.fin < n-redactLag {
			st.finalize(st.fin)
			st.fin++
		}
	}
}

// windows finds the card numbers that end at the digit just fed, longest
// first. Whether they count depends on what comes next (the rule in the
// package comment): one that lies in the digit's group (sureS) counts in
// any case, one that spans groups (condS) only if the digit ends its group.
// They are settled by commit at the next spacer, digit or end of number.
func (st *cardScan) windows(n int) {
	sum := st.sum0
	if n&1 == 1 {
		sum = st.sum1
	}
	st.sureS, st.condS = 0, 0
	for l := min(n, maxCardLen); l >= minCardLen; l-- {
		s := n - l
		d := &st.ring[s&(ringSize-1)]
		if !d.start {
			continue
		}
		if !d.iinOK {
			p := int32(0)
			for k := s; k < s+6; k++ {
				p = p*10 + int32(st.ring[k&(ringSize-1)].val)
			}
			d.iin, d.iinOK = iinLengths(p), true
		}
		if d.iin&(1<<(l-minCardLen)) == 0 {
			continue
		}
		before := d.s0
		if n&1 == 1 {
			before = d.s1
		}
		if sum != before {
			continue // Luhn: the window's sum is not 0 mod 10
		}
		if s >= st.group {
			// Longer windows come first: the shorter ones ending here
			// are inside this one.
			st.sureS = s + 1
			return
		}
		if st.condS == 0 {
			st.condS = s + 1
		}
	}
}

// groupEnd settles the windows ending at the last digit once it is known
// to end its group.
func (st *cardScan) groupEnd() {
	if st.condS > 0 {
		st.commit(st.condS)
	} else {
		st.commit(st.sureS)
	}
}

// commit records the card number from digit s1-1 to the last digit fed
// (s1 == 0: none) and clears the windows waiting.
func (st *cardScan) commit(s1 int) {
	st.sureS, st.condS = 0, 0
	if s1 == 0 {
		return
	}
	s, e := s1-1, st.n-1
	if !st.found {
		first, last := &st.ring[s&(ringSize-1)], &st.ring[e&(ringSize-1)]
		st.found = true
		st.firstS, st.firstE = first.off, last.off+int64(last.size)
	}
	st.zeros = true // the next digit starts a segment
	if !st.redact {
		return
	}
	// Zeros glued before the card number (it was padded) go with it when
	// there are fewer than maxCardLen of them: left in front of the
	// placeholder, the last of them would end its group in what is sent,
	// and could end a card number that was not one in what was received.
	// maxCardLen zeros or more cannot be the end of a card number that
	// starts in an earlier group.
	z := 0
	for z < maxCardLen && s-z > 0 && !st.ring[(s-z)&(ringSize-1)].first {
		p := &st.ring[(s-z-1)&(ringSize-1)]
		if p.marked || p.val != 0 {
			break
		}
		z++
	}
	if z == maxCardLen {
		z = 0
	}
	for k := s - z; k <= e; k++ {
		d := &st.ring[k&(ringSize-1)]
		d.marked = true
		d.joined = d.joined || k > s-z
	}
}

// finalize settles digit k of the current number for redaction: no window
// found later can include it.
func (st *cardScan) finalize(k int) {
	d := &st.ring[k&(ringSize-1)]
	if !d.marked {
		st.inSeq = false
		return
	}
	if !st.inSeq || !d.joined {
		// A card number that only touches the one before it (no window
		// covers both) gets a placeholder of its own.
		st.inSeq = true
		st.cards++
		st.sink.open(d.off)
	}
	st.sink.extend(d.off + int64(d.size))
}

// separator feeds a spacer or invisible character.
func (st *cardScan) separator(class uint8) {
	if st.n == 0 {
		return
	}
	if class == classSpacer {
		if st.spacers == 0 {
			st.groupEnd()
		}
		st.spacers++
		if st.spacers > maxSpacers {
			st.end()
		}
		return
	}
	st.invis++
	if st.invis > maxInvisibles {
		st.end()
	}
}

// end closes the current number.
func (st *cardScan) end() {
	if st.n == 0 {
		return
	}
	st.groupEnd()
	if st.redact {
		for ; st.fin < st.n; st.fin++ {
			st.finalize(st.fin)
		}
		st.inSeq = false
	}
	st.n, st.fin = 0, 0
	st.sum0, st.sum1 = 0, 0
	st.spacers, st.invis = 0, 0
	st.zeros = true
}

// pending returns the offset of the first byte that a card number found
// later could still cover (the first digit that is not final, or an
// unfinished UTF-8 sequence), or -1 when there is none.
func (st *cardScan) pending() int64 {
	if st.n > 0 {
		k := max(0, st.n-maxCardLen)
		if st.redact {
			k = st.fin
		}
		return st.ring[k&(ringSize-1)].off
	}
	if st.npend > 0 {
		return st.pendOff
	}
	return -1
}

// feed scans s, whose first byte is at offset base of the input. With
// final, s is the end of the input: an unfinished UTF-8 sequence at its
// end is invalid; otherwise it is kept for the next call.
func feed[T ~string | ~[]byte](st *cardScan, s T, base int64, final bool) {
	i := 0
	if st.npend > 0 {
		i = feedPending(st, s, final)
		if st.npend > 0 || st.done() {
			return
		}
	}
	for i < len(s) {
		if st.n == 0 {
			// Outside a number only a digit matters.
			if i = nextNumber(s, i, final); i >= len(s) {
				return
			}
		}
		c := s[i]
		if c < utf8.RuneSelf {
			cl := asciiClass[c]
			switch cl & classMask {
			case classDigit:
				st.digit(cl&0x0f, base+int64(i), 1)
				if st.done() {
					return
				}
			case classOther:
				st.end()
			default:
				st.separator(cl & classMask)
			}
			i++
			continue
		}
		if !final && len(s)-i < utf8.UTFMax && !utf8.FullRune(asBytesPrefix(s, i)) {
			// An unfinished sequence at the end of a chunk: decide it with
			// the next one.
			st.npend = copy(st.pend[:], s[i:])
			st.pendOff = base + int64(i)
			return
		}
		r, size := decodeRune(s, i)
		if st.n == 0 && (r == utf8.RuneError || runeClass(r)&classMask != classDigit) {
			i += size // outside a number only a digit matters
			continue
		}
		st.rune(r, base+int64(i), size)
		if st.done() {
			return
		}
		i += size
	}
	if final {
		st.end()
	}
}

// asBytesPrefix returns up to utf8.UTFMax bytes of s from i, for
// utf8.FullRune; a string's are copied into a small array.
func asBytesPrefix[T ~string | ~[]byte](s T, i int) []byte {
	var b [utf8.UTFMax]byte
	n := copy(b[:], s[i:])
	return b[:n]
}

// rune feeds a decoded non-ASCII rune (or utf8.RuneError).
func (st *cardScan) rune(r rune, off int64, size int) {
	cl := uint8(classOther)
	if r != utf8.RuneError || size > 1 {
		cl = runeClass(r)
	}
	switch cl & classMask {
	case classDigit:
		st.digit(cl&0x0f, off, uint8(size))
	case classOther:
		st.end()
	default:
		st.separator(cl & classMask)
	}
}

// feedPending completes the UTF-8 sequence left unfinished by the previous
// chunk with the first bytes of s, and returns the index in s where the
// caller goes on. If s is too short to complete it, s is added to the
// unfinished sequence.
func feedPending[T ~string | ~[]byte](st *cardScan, s T, final bool) int {
	var buf [2 * utf8.UTFMax]byte
	np := st.npend
	copy(buf[:], st.pend[:np])
	m := copy(buf[np:], s)
	total := np + m
	base := st.pendOff
	st.npend = 0
	k := 0
	for k < np {
		if !final && m == len(s) && !utf8.FullRune(buf[k:total]) {
			st.npend = copy(st.pend[:], buf[k:total])
			st.pendOff = base + int64(k)
			return len(s)
		}
		r, size := decodeRune(buf[:total], k)
		st.rune(r, base+int64(k), size)
		if st.done() {
			return len(s)
		}
		k += size
	}
	return k - np
}

// digitOrLead flags (with its high bit) each byte of x that is an ASCII
// digit, exactly, and each that may be the lead byte of a non-ASCII digit:
// 0xD9, 0xDB, 0xDF (and 0xDD), 0xE0, 0xE1, 0xEA, 0xEF, 0xF0 are the lead
// bytes of every unicode.Nd digit (TestDigitOrLead holds this to the
// tables), and a byte above one flagged may be flagged too; the caller
// checks the bytes flagged against digitLead. Binary data, half of it
// bytes >= 0x80, is then skipped word by word too.
func digitOrLead(x uint64) uint64 {
	// As in countDigits: a has a byte below 10 exactly where x has an
	// ASCII digit.
	a := x ^ (lsb * '0')
	d := ^((a &^ msb) + lsb*(0x80-10) | a) & msb
	if x&msb == 0 {
		return d
	}
	return d | leadBytes(x)
}

func leadBytes(x uint64) uint64 {
	return zeroBytes((x&(lsb*0xF9))^(lsb*0xD9)) | zeroBytes((x&(lsb*0xFE))^(lsb*0xE0)) |
		zeroBytes(x^(lsb*0xEA)) | zeroBytes(x^(lsb*0xEF)) | zeroBytes(x^(lsb*0xF0))
}

// zeroBytes flags the zero bytes of v: exactly the lowest, and perhaps
// bytes above a zero byte (the borrow), never a byte below every zero byte.
func zeroBytes(v uint64) uint64 { return (v - lsb) &^ v & msb }

// load64 reads s[i:i+8] little-endian; the compiler turns it into one load.
func load64[T ~string | ~[]byte](s T, i int) uint64 {
	b := s[i : i+8] // one bounds check; the compiler knows len(b)
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// mayHoldCard reports whether s can hold a card number by a cheap upper
// bound of its digits: its ASCII digits plus half its other non-ASCII bytes
// (a non-ASCII digit takes two to four). Most values (names, emails, ids)
// have fewer digits than a card number, most are even shorter than one,
// and are then never scanned.
func mayHoldCard[T ~string | ~[]byte](s T) bool {
	n := len(s)
	if n < minCardLen {
		return false
	}
	w := 0 // twice the digits, plus the non-ASCII bytes
	i := 0
	for ; i+8 <= n; i += 8 {
		w += cardWeight8(load64(s, i), ^uint64(0))
		if w >= 2*minCardLen {
			return true
		}
	}
	if i < n {
		// The last bytes: one load that overlaps bytes already counted,
		// which the mask drops (n >= 8 here).
		w += cardWeight8(load64(s, n-8), ^uint64(0)<<(8*(i-(n-8))))
	}
	return w >= 2*minCardLen
}

// cardWeight8 is mayHoldCard's count for the bytes of x that keep selects.
func cardWeight8(x, keep uint64) int {
	a := x ^ (lsb * '0')
	d := ^((a &^ msb) + lsb*(0x80-10) | a) & msb & keep
	w := 2 * bits.OnesCount64(d)
	if h := x & msb & keep; h != 0 {
		w += bits.OnesCount64(h)
	}
	return w
}

// cardWeight is 2 for an ASCII digit and 1 for a byte >= 0x80.
var cardWeight = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = 2
		case c >= utf8.RuneSelf:
			t[c] = 1
		}
	}
	return t
}()

// shortNumber is the common case of a number in text (a date, an order
// number, a phone number): it reads the ASCII number starting at s[i] and,
// if it ends within s with fewer digits than a card number, returns the
// index after it and true. Skipping such a number leaves the scan's state
// exactly as feeding it digit by digit would. Otherwise (a non-ASCII byte
// that may begin a digit or separator, enough digits, or the end of a
// chunk that is not the last) it returns false and the caller feeds the
// number to the state machine.
func shortNumber[T ~string | ~[]byte](s T, i int, final bool) (int, bool) {
	digits, spacers, invis := 0, 0, 0
	for j := i; j < len(s); j++ {
		c := s[j]
		if c >= utf8.RuneSelf {
			if digitLead[c] || joinLead[c] {
				return 0, false
			}
			return j, true // a character that is no digit or separator
		}
		switch asciiClass[c] & classMask {
		case classDigit:
			digits++
			if digits >= minCardLen {
				return 0, false
			}
			spacers, invis = 0, 0
		case classSpacer:
			spacers++
			if spacers > maxSpacers {
				return j + 1, true
			}
		case classInvisible:
			invis++
			if invis > maxInvisibles {
				return j + 1, true
			}
		default:
			return j, true
		}
	}
	return len(s), final
}

// longNumber returns the index of the first number in s that may hold a
// card number, or -1: most values have none, and are then checked without
// setting up the state machine.
func longNumber[T ~string | ~[]byte](s T) int {
	if i := nextNumber(s, 0, true); i < len(s) {
		return i
	}
	return -1
}

// nextNumber returns the index of the first byte at or after i where an
// idle scan needs its state machine: the first digit of a number that may
// hold a card number (one of 13 digits or more, or with a non-ASCII digit
// or separator), or an unfinished UTF-8 sequence at the end of a chunk
// that is not the last; len(s) if there is none. What it skips (bytes that
// begin no digit, other characters, numbers too short for a card number)
// would leave an idle scan idle.
func nextNumber[T ~string | ~[]byte](s T, i int, final bool) int {
	for {
		// Eight bytes at a time, to a byte that may begin a digit.
		for i+8 <= len(s) {
			// digitOrLead, written out so that it is inlined.
			x := load64(s, i)
			a := x ^ (lsb * '0')
			m := ^((a &^ msb) + lsb*(0x80-10) | a) & msb
			if x&msb != 0 {
				m |= leadBytes(x)
			}
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i+8 > len(s) {
			for i < len(s) && !digitLead[s[i]] {
				i++
			}
			if i >= len(s) {
				return len(s)
			}
		} else if !digitLead[s[i]] {
			i++ // flagged, but no lead byte (see digitOrLead)
			continue
		}
		if s[i] < utf8.RuneSelf {
			j, ok := shortNumber(s, i, final)
			if !ok {
				return i
			}
			i = j
			continue
		}
		if !final && len(s)-i < utf8.UTFMax && !utf8.FullRune(asBytesPrefix(s, i)) {
			return i
		}
		r, size := decodeRune(s, i)
		if r != utf8.RuneError && runeClass(r)&classMask == classDigit {
			return i
		}
		i += size
	}
}
