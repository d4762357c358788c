package filters

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the card guard. A rune's entry in runeClasses is
// its class in the high nibble and, for a digit, its value in the low one.
const (
	classOther     = 0x00
	classDigit     = 0x10 // unicode.Nd, value in the low nibble
	classSpacer    = 0x20 // may separate digit groups: spaces, dashes, dots, slashes
	classInvisible = 0x30 // may sit between digits without being seen: NUL, zero-width and format characters
	classMask      = 0xf0
)

// spacerRunes are the non-ASCII separators people put (or paste) between
// the groups of a card number, besides unicode.Zs (spaces, including
// no-break, figure, narrow and ideographic ones) and unicode.Pd (dashes).
// Line breaks are deliberately absent: a number per line is a list, not
// one number, and joining lines would turn every column of figures in an
// upload into candidates.
var spacerRunes = []rune{
	'\u2212', // minus sign
	'\uFE52', // small full stop
	'\uFF0E', // fullwidth full stop (CJK input methods)
	'\uFF0F', // fullwidth solidus
	'\u2215', // division slash
	'\u2044', // fraction slash
}

// invisibleRunes render as nothing: a card number with one of them between
// its digits looks whole on screen and to whoever copies it. NUL is here
// because UTF-16 text read as bytes (an opaque upload from a Windows tool)
// puts one after every ASCII character.
var invisibleRunes = []rune{
	0x0000,   // NUL
	'\u00AD', // soft hyphen
	'\u200B', // zero width space
	'\u200C', // zero width non-joiner
	'\u200D', // zero width joiner
	'\u2060', // word joiner
	'\uFEFF', // zero width no-break space (BOM)
}

// runePages and runePage map a rune to its class in two loads: the page
// index of r>>8, then the entry of r&0xff in that page. Page 0 (all
// classOther) is shared by every page without a digit or separator, so the
// table is a few KiB. It is built from the unicode package's tables rather
// than written out so that it follows the Unicode version of the Go
// release; TestRuneClasses checks it against unicode.Is for every rune.
var (
	runePages [(unicode.MaxRune >> 8) + 1]uint8
	runePage  [][256]uint8
	// digitLead marks the bytes that can begin the UTF-8 encoding of a
	// digit: ASCII digits and the lead bytes of the scripts that have
	// digits. Outside a number every other byte is skipped unread.
	digitLead [256]bool
	// joinLead marks the bytes >= 0x80 that can begin a spacer or an
	// invisible character: any other one ends a number.
	joinLead [256]bool
	// asciiClass is page 0's ASCII half, for the common case.
	asciiClass [128]uint8
)

func init() {
	runePage = make([][256]uint8, 1, 64)
	set := func(r rune, c uint8) {
		if r >= utf8.RuneSelf && c&classMask != classDigit {
			var b [utf8.UTFMax]byte
			utf8.EncodeRune(b[:], r)
			joinLead[b[0]] = true
		}
		p := runePages[r>>8]
		if p == 0 {
			runePage = append(runePage, [256]uint8{})
			p = uint8(len(runePage) - 1)
			runePages[r>>8] = p
		}
		runePage[p][r&0xff] = c
	}
	// Page 0 must exist as a page of its own before anything is set,
	// because index 0 doubles as "no page".
	runePage = append(runePage, [256]uint8{})
	runePages[0] = 1
	eachRune(unicode.Zs, func(r rune) { set(r, classSpacer) })
	eachRune(unicode.Pd, func(r rune) { set(r, classSpacer) })
	for _, r := range spacerRunes {
		set(r, classSpacer)
	}
	for _, r := range []rune{'\t', '.', '/'} {
		set(r, classSpacer)
	}
	for _, r := range invisibleRunes {
		set(r, classInvisible)
	}
	// Unicode keeps every decimal digit set in a contiguous, ascending
	// block of ten starting at its zero (a stability policy), and the Nd
	// table merges adjacent blocks into one range: so a digit's value is
	// its distance from the range's start, mod 10. TestRuneClasses checks
	// that every range is whole blocks.
	for _, rg := range unicode.Nd.R16 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			setDigit(set, r, uint8((r-rune(rg.Lo))%10))
		}
	}
	for _, rg := range unicode.Nd.R32 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			setDigit(set, r, uint8((r-rune(rg.Lo))%10))
		}
	}
	copy(asciiClass[:], runePage[1][:128])
	for c := '0'; c <= '9'; c++ {
		digitLead[c] = true
	}
}

func setDigit(set func(rune, uint8), r rune, v uint8) {
	set(r, classDigit|v)
	var b [utf8.UTFMax]byte
	utf8.EncodeRune(b[:], r)
	digitLead[b[0]] = true
}

func eachRune(t *unicode.RangeTable, f func(rune)) {
	for _, rg := range t.R16 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			f(r)
		}
	}
	for _, rg := range t.R32 {
		for r := rune(rg.Lo); r <= rune(rg.Hi); r += rune(rg.Stride) {
			f(r)
		}
	}
}

// runeClass returns the class (and digit value) of r; r must be valid.
func runeClass(r rune) uint8 {
	return runePage[runePages[r>>8]][r&0xff]
}

// decodeRune is utf8.DecodeRune for a string or a byte slice, from s[i]:
// one function for both so that header values and path segments are
// scanned as strings without a copy. Invalid or truncated input decodes
// as (utf8.RuneError, 1), exactly as the utf8 package does
// (TestDecodeRune).
func decodeRune[T ~string | ~[]byte](s T, i int) (rune, int) {
	n := len(s) - i
	b0 := s[i]
	switch {
	case b0 < utf8.RuneSelf:
		return rune(b0), 1
	case b0 < 0xC2:
		return utf8.RuneError, 1
	case b0 < 0xE0:
		if n < 2 || s[i+1]&0xC0 != 0x80 {
			return utf8.RuneError, 1
		}
		return rune(b0&0x1F)<<6 | rune(s[i+1]&0x3F), 2
	case b0 < 0xF0:
		if n < 3 {
			return utf8.RuneError, 1
		}
		lo, hi := byte(0x80), byte(0xBF)
		switch b0 {
		case 0xE0:
			lo = 0xA0 // overlong
		case 0xED:
			hi = 0x9F // surrogates
		}
		if b1 := s[i+1]; b1 < lo || b1 > hi || s[i+2]&0xC0 != 0x80 {
			return utf8.RuneError, 1
		}
		return rune(b0&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
	case b0 < 0xF5:
		if n < 4 {
			return utf8.RuneError, 1
		}
		lo, hi := byte(0x80), byte(0xBF)
		switch b0 {
		case 0xF0:
			lo = 0x90 // overlong
		case 0xF4:
			hi = 0x8F // beyond U+10FFFF
		}
		if b1 := s[i+1]; b1 < lo || b1 > hi || s[i+2]&0xC0 != 0x80 || s[i+3]&0xC0 != 0x80 {
			return utf8.RuneError, 1
		}
		return rune(b0&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F), 4
	}
	return utf8.RuneError, 1
}
