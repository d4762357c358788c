package filters

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// CardWriter applies the card guard to a byte stream, such as an opaque
// request body on its way to a vendor, without holding the stream in
// memory: it passes each Write on to the underlying writer at once, except
// the last bytes that a card number found later could still include (the
// digits of an unfinished number, at most a few hundred bytes, and an
// unfinished UTF-8 sequence). A card number split across Writes, even
// inside a multi-byte digit or separator, is found as if the stream had
// been written at once (FuzzCardWriter).
//
// Under CardsBlock, Write returns an error wrapping ErrCardNumber as soon
// as a card number is complete, and none of its digits has reached the
// underlying writer: the caller must abort what it was sending (the vendor
// has then received only bytes that came before the card number). Under
// CardsRedact each card number is replaced by "[CARD REDACTED]", so the
// stream's length changes: a Content-Length computed before is wrong.
// CardsAllow passes everything through. The input need not be UTF-8: bytes
// that are not are neither digits nor separators.
//
// With a nil writer, CardWriter only scans: it holds nothing back, and
// Found and Cards tell the result once Close returns.
type CardWriter struct {
	w     io.Writer
	guard CardGuard
	st    cardScan
	off   int64 // stream offset of the next byte written to c
	// The stream from emitted on has not been passed on: hold has the
	// bytes [holdOff, curOff), cur (during a Write) those from curOff.
	emitted int64
	hold    []byte
	holdOff int64
	cur     []byte
	curOff  int64
	err     error
	holdBuf [maxHold]byte
}

// maxHold bounds what a CardWriter holds back: the digits a redacting scan
// keeps unsettled, each of up to 4 bytes followed by the longest gap (4
// three-byte spacers, 5 three-byte invisible characters), and an
// unfinished UTF-8 sequence. TestCardWriterHoldsLittle checks it.
const maxHold = redactLag*(utf8.UTFMax+maxSpacers*3+maxInvisibles*3) + utf8.UTFMax

var _ io.WriteCloser = (*CardWriter)(nil)

// cardRedactedBytes is the placeholder, converted once (writers must not
// modify what they are given).
var cardRedactedBytes = []byte(cardRedacted)

// NewCardWriter returns a CardWriter that passes what is written to it on
// to w (which may be nil) with the guard g applied; a g other than the
// three defined ones is CardsBlock.
func NewCardWriter(w io.Writer, g CardGuard) *CardWriter {
	c := &CardWriter{}
	c.Reset(w, g)
	return c
}

// Reset makes c a new CardWriter to w with guard g, so that one can be
// reused for another stream.
func (c *CardWriter) Reset(w io.Writer, g CardGuard) {
	if g > CardsAllow {
		g = CardsBlock
	}
	c.w, c.guard = w, g
	c.st = cardScan{redact: g == CardsRedact}
	if g == CardsRedact {
		c.st.sink = c
	}
	c.off, c.emitted, c.holdOff, c.curOff = 0, 0, 0, 0
	c.hold, c.cur, c.err = c.holdBuf[:0], nil, nil
}

// Write scans p and passes on what can no longer be part of a card number.
func (c *CardWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.guard == CardsAllow {
		if c.w == nil {
			return len(p), nil
		}
		n, err := c.w.Write(p)
		if err != nil {
			c.err = err
		}
		return n, err
	}
	c.cur, c.curOff = p, c.off
	feed(&c.st, p, c.off, false)
	c.off += int64(len(p))
	if err := c.settle(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends the stream: it scans what was held back and passes it on. It
// returns the error of a Write, or, under CardsBlock, the card number
// found at the very end. It does not close the underlying writer.
func (c *CardWriter) Close() error {
	if c.err != nil || c.guard == CardsAllow {
		return c.err
	}
	c.cur, c.curOff = nil, c.off
	feed(&c.st, []byte(nil), c.off, true)
	return c.settle()
}

// settle turns the state after a scan into an error or output.
func (c *CardWriter) settle() error {
	defer func() { c.cur = nil }()
	if c.err != nil {
		return c.err
	}
	if c.guard == CardsBlock && c.st.found {
		c.err = fmt.Errorf("filters: %w at byte %d", ErrCardNumber, c.st.firstS)
		c.hold = c.hold[:0]
		return c.err
	}
	if c.w == nil {
		return nil
	}
	safe := c.off
	if p := c.st.pending(); p >= 0 {
		safe = p
	}
	if c.st.inSeq {
		// The separators after a redacted digit go with it if the next
		// digit is redacted too.
		safe = min(safe, c.emitted)
	}
	c.emitTo(safe)
	if c.err != nil {
		return c.err
	}
	// Keep [emitted, off) for the next Write.
	var n int
	if c.emitted < c.curOff {
		n = copy(c.hold, c.hold[c.emitted-c.holdOff:])
	}
	c.hold = c.hold[:n]
	if c.emitted < c.off && len(c.cur) > 0 {
		c.hold = append(c.hold, c.cur[max(c.emitted, c.curOff)-c.curOff:]...)
	}
	c.holdOff = c.emitted
	return nil
}

// emitTo passes the stream on up to offset x.
func (c *CardWriter) emitTo(x int64) {
	if c.err != nil || x <= c.emitted {
		return
	}
	if c.emitted < c.curOff {
		end := min(x, c.curOff)
		c.write(c.hold[c.emitted-c.holdOff : end-c.holdOff])
		c.emitted = end
	}
	if x > c.emitted {
		c.write(c.cur[c.emitted-c.curOff : x-c.curOff])
		c.emitted = x
	}
}

func (c *CardWriter) write(b []byte) {
	if c.err != nil || len(b) == 0 {
		return
	}
	if _, err := c.w.Write(b); err != nil {
		c.err = err
	}
}

// open and extend make CardWriter the scan's sink under CardsRedact.
func (c *CardWriter) open(off int64) {
	if c.w == nil {
		return
	}
	c.emitTo(off)
	c.write(cardRedactedBytes)
}

func (c *CardWriter) extend(end int64) {
	if c.w == nil {
		return
	}
	c.emitted = end
}

// Found reports whether a card number was found so far.
func (c *CardWriter) Found() bool { return c.st.found }

// Cards returns how many card numbers were replaced (CardsRedact; a number
// is counted once it can no longer grow, so after Close for the last one),
// or 1 once one was found under CardsBlock.
func (c *CardWriter) Cards() int {
	if c.guard == CardsBlock && c.st.found {
		return 1
	}
	return c.st.cards
}
