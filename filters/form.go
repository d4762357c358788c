package filters

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Form appends to dst the application/x-www-form-urlencoded body src
// reduced to the mask. Names use bracket nesting ("card[number]" is
// card/number, "items[0][sku]" is items/0/sku, "expand[]" is numbered by
// occurrence of its prefix). Kept pairs are copied in their original
// encoding and order, transformed or redacted values are re-encoded, and
// indices are kept as sent: unlike JSON arrays, nothing is compacted. On
// error dst is returned unchanged. Time and memory are linear in len(src)
// whatever it holds.
func (m *Mask) Form(dst, src []byte, opt *Options) ([]byte, *Report, error) {
	out, rep, _, err := m.formCounted(dst, src, opt)
	return out, rep, err
}

// formCounted is Form, also returning the work done in steps (see
// formState.steps).
func (m *Mask) formCounted(dst, src []byte, opt *Options) ([]byte, *Report, int, error) {
	if m == nil || m.root == nil {
		return dst, nil, 0, errors.New("filters: nil Mask")
	}
	var zero Options
	if opt == nil {
		opt = &zero
	}
	if m.usesHMAC && len(opt.HMACKey) == 0 {
		return dst, nil, 0, ErrNoHMACKey
	}
	if len(src) > maxInput {
		return dst, nil, 0, errTooLarge
	}
	opt = sanitize(opt)
	f := getFormState(opt)
	defer f.release()
	orig := len(dst)
	if opt.MaxOutput > 0 {
		f.maxOut = orig + opt.MaxOutput
	}
	out, err := f.run(dst, src, m.formPair)
	if err == nil && f.maxOut > 0 && len(out) > f.maxOut {
		err = ErrOutputTooLarge
	}
	if err != nil {
		return dst[:orig], nil, f.totalSteps(), err
	}
	rep := f.rep.build()
	rep.RemovedCount = len(f.concrete.spans[0])
	return out, rep, f.totalSteps(), nil
}

// Query filters a raw query string (without "?") to the parameters whose
// base name (before the first "[") is in allowed, compared
// case-insensitively. Kept pairs keep their encoding and order; values and
// names are card-guarded per opt.
func Query(rawQuery string, allowed []string, opt *Options) (string, *Report, error) {
	out, rep, _, err := queryCounted(rawQuery, allowed, opt)
	return out, rep, err
}

// queryCounted is Query, also returning the work done in steps.
func queryCounted(rawQuery string, allowed []string, opt *Options) (string, *Report, int, error) {
	if len(rawQuery) > maxInput {
		return "", nil, 0, errTooLarge
	}
	var zero Options
	if opt == nil {
		opt = &zero
	}
	opt = sanitize(opt)
	f := getFormState(opt)
	defer f.release()
	out, err := f.run(make([]byte, 0, len(rawQuery)), []byte(rawQuery), func(f *formState, p *pair) (pairAction, error) {
		base := f.segBytes(f.segs[0])
		f.steps += len(allowed) * len(base)
		for _, a := range allowed {
			if strings.EqualFold(a, string(base)) {
				f.reportSegs(listKept, 1)
				return keepRaw, nil
			}
		}
		f.reportRemoved(1)
		return drop, nil
	})
	if err != nil {
		return "", nil, f.totalSteps(), err
	}
	rep := f.rep.build()
	rep.RemovedCount = len(f.concrete.spans[0])
	return string(out), rep, f.totalSteps(), nil
}

type pairAction uint8

const (
	drop pairAction = iota
	keepRaw
	sendRedacted // send "[REDACTED]" as the value
	sendTransformed
)

// pair is one name=value of a form or query.
type pair struct {
	raw    []byte // the whole pair as sent
	rawKey []byte
	rawVal []byte
	xf     *Transform
}

// formSeg is one segment of a decoded name: a span of formState.key, or an
// index for "[]".
type formSeg struct {
	start, end int
	idx        int // >= 0 for "[]"
}

type formState struct {
	opt      *Options
	rep      reportBuilder
	concrete reportBuilder // distinct topmost removed paths, for RemovedCount
	xf       xfState
	key      []byte // decoded name
	val      []byte // decoded value
	segs     []formSeg
	tmp      []byte
	pathBuf  []byte
	num      [20]byte
	// prefixes interns the name prefixes that precede a "[]" as
	// (prefix, segment) pairs, and counters holds, by id, the next index
	// of the "[]" after each and the id of that prefix with the "[]".
	// Keyed by the prefix string instead, a name of many "[]" hashed each
	// of its prefixes: quadratic in its length.
	prefixes pathTable
	counters []prefixCounter
	offset   int
	// maxOut is the length dst may reach (Options.MaxOutput); 0: no bound.
	maxOut int
	// steps counts work as jsonWalker.steps does: each pass over a pair
	// or a name, report paths, interning.
	steps int
}

var formPool = sync.Pool{New: func() any { return new(formState) }}

func getFormState(opt *Options) *formState {
	f := formPool.Get().(*formState)
	f.opt = opt
	f.xf.key = opt.HMACKey
	f.maxOut = 0
	return f
}

func (f *formState) release() {
	f.opt = nil
	f.xf = xfState{sum: f.xf.sum, mac: f.xf.mac, macKey: f.xf.macKey}
	f.rep.reset()
	f.concrete.reset()
	f.key, f.val, f.segs, f.tmp = f.key[:0], f.val[:0], f.segs[:0], f.tmp[:0]
	f.counters, f.steps = f.counters[:0], 0
	if len(f.prefixes.ents) > 0 {
		f.prefixes.reset()
	}
	if cap(f.key) > maxPooledBuf || cap(f.val) > maxPooledBuf || cap(f.rep.buf) > maxPooledBuf || cap(f.concrete.buf) > maxPooledBuf ||
		cap(f.prefixes.keys) > maxPooledBuf || cap(f.prefixes.slots) > maxPooledBuf/4 || cap(f.counters) > maxPooledBuf/4 {
		return
	}
	formPool.Put(f)
}

func (f *formState) totalSteps() int {
	return f.steps + f.prefixes.steps + f.rep.written + f.concrete.written
}

func (f *formState) syntax(msg string) error {
	return &SyntaxError{Offset: int64(f.offset), Msg: msg}
}

func (f *formState) segBytes(s formSeg) []byte {
	if s.idx >= 0 {
		return strconv.AppendInt(f.num[:0], int64(s.idx), 10)
	}
	return f.key[s.start:s.end]
}

// appendSegs writes the path of the first n segments; norm writes indices
// and all-digit names as "*", matching JSON reports of the same data.
func (f *formState) appendSegs(b []byte, n int, norm bool) []byte {
	for i, s := range f.segs[:n] {
		if i > 0 {
			b = append(b, '/')
		}
		seg := f.segBytes(s)
		if norm && i > 0 && allDigits(seg) {
			b = append(b, '*')
			continue
		}
		b = appendSegment(b, seg)
	}
	return b
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) {
			return false
		}
	}
	return len(b) > 0
}

func (f *formState) reportSegs(k listKind, n int) {
	f.pathBuf = f.appendSegs(f.pathBuf[:0], n, true)
	// Writing, hashing and comparing the path.
	f.steps += 3 * len(f.pathBuf)
	f.rep.add(k, f.pathBuf)
}

func (f *formState) reportRemoved(n int) {
	f.reportSegs(listRemoved, n)
	f.pathBuf = f.appendSegs(f.pathBuf[:0], n, false)
	f.steps += 3 * len(f.pathBuf)
	f.concrete.add(0, f.pathBuf)
}

func (f *formState) cardError() error {
	f.pathBuf = f.appendSegs(f.pathBuf[:0], len(f.segs), false)
	return fmt.Errorf("filters: %w at %s", ErrCardNumber, errPath(f.pathBuf))
}

// run parses every pair of src, asks decide what to do with it and writes
// the survivors to dst.
func (f *formState) run(dst, src []byte, decide func(*formState, *pair) (pairAction, error)) ([]byte, error) {
	wrote := false
	for start := 0; start <= len(src); {
		if f.maxOut > 0 && len(dst) > f.maxOut {
			return dst, ErrOutputTooLarge
		}
		end := bytes.IndexByte(src[start:], '&')
		if end < 0 {
			end = len(src)
		} else {
			end += start
		}
		raw := src[start:end]
		// Finding the pair, its ';' check, and decoding it.
		f.steps += 3*len(raw) + 1
		f.offset = start
		start = end + 1
		if len(raw) == 0 {
			continue
		}
		if bytes.IndexByte(raw, ';') >= 0 {
			// Some servers split pairs on ";": what we checked as one value
			// could reach the vendor as a second parameter.
			return dst, f.syntax("';' in form or query")
		}
		p := pair{raw: raw, rawKey: raw}
		if eq := bytes.IndexByte(raw, '='); eq >= 0 {
			p.rawKey, p.rawVal = raw[:eq], raw[eq+1:]
		}
		var err error
		if f.key, err = f.decode(f.key[:0], p.rawKey); err != nil {
			return dst, err
		}
		if err := f.parseName(); err != nil {
			return dst, err
		}
		if f.val, err = f.decode(f.val[:0], p.rawVal); err != nil {
			return dst, err
		}
		act, err := decide(f, &p)
		if err != nil {
			return dst, err
		}
		if act == drop {
			continue
		}
		if f.opt.Cards != CardsAllow && f.hasCard(f.key) {
			if f.opt.Cards == CardsBlock {
				return dst, f.cardError()
			}
			// The name cannot be redacted without changing what it
			// addresses, so the pair goes.
			f.reportSegs(listCards, len(f.segs))
			continue
		}
		if wrote {
			dst = append(dst, '&')
		}
		wrote = true
		switch act {
		case keepRaw:
			if f.opt.Cards == CardsAllow || !f.hasCard(f.val) {
				dst = append(dst, raw...)
				break
			}
			if f.opt.Cards == CardsBlock {
				return dst, f.cardError()
			}
			f.reportSegs(listCards, len(f.segs))
			f.tmp = redactCards(f.tmp[:0], f.val)
			f.steps += len(f.val) + 3*len(f.tmp)
			dst = append(dst, p.rawKey...)
			dst = append(dst, '=')
			dst = appendQueryEscape(dst, f.tmp)
		case sendRedacted:
			dst = append(dst, p.rawKey...)
			dst = append(dst, '=')
			dst = append(dst, "%5BREDACTED%5D"...)
		case sendTransformed:
			var ok bool
			f.tmp, ok = p.xf.apply(f.tmp[:0], f.val, &f.xf)
			if !ok {
				f.tmp = append(f.tmp[:0], redacted...)
			}
			// As in jsonWalker.transform: the output is bounded per value.
			f.steps += len(f.val) + 1
			dst = append(dst, p.rawKey...)
			dst = append(dst, '=')
			dst = appendQueryEscape(dst, f.tmp)
		}
	}
	return dst, nil
}

// hasCard is hasCard, counting its scan.
func (f *formState) hasCard(s []byte) bool {
	f.steps += len(s)
	return hasCard(s)
}

// formPair walks the mask along the name of the current pair.
func (m *Mask) formPair(f *formState, p *pair) (pairAction, error) {
	n, keep := m.root, false
	var xf *Transform
	keepDepth, xfDepth := 0, 0
	for i, s := range f.segs {
		if n == nil {
			break
		}
		seg := f.segBytes(s)
		f.steps += len(seg) + 1
		c := n.lookup(seg)
		if c == nil && !keep {
			f.reportRemoved(i + 1)
			return drop, nil
		}
		n = c
		if c == nil {
			break
		}
		if c.keep && !keep {
			keep, keepDepth = true, i+1
		}
		if c.xf != nil {
			xf, xfDepth = c.xf, i+1
		}
	}
	if !keep {
		if !n.litPath {
			// Only "*" leads on from here, and a scalar has nothing to
			// expand it to (see node.litPath).
			f.reportRemoved(len(f.segs))
			return drop, nil
		}
		// The name stops above a path (a scalar where the mask expected
		// more): kept as json.filter keeps it, unless a transform lies
		// below.
		f.reportSegs(listKept, len(f.segs))
		if n.hasXf {
			f.reportSegs(listTransformed, len(f.segs))
			return sendRedacted, nil
		}
		return keepRaw, nil
	}
	f.reportSegs(listKept, keepDepth)
	if xf != nil {
		f.reportSegs(listTransformed, xfDepth)
		p.xf = xf
		return sendTransformed, nil
	}
	return keepRaw, nil
}

// parseName splits f.key into segments: base, then one per [...].
func (f *formState) parseName() error {
	key := f.key
	f.segs = f.segs[:0]
	i := bytes.IndexByte(key, '[')
	if i < 0 {
		i = len(key)
	}
	if i == 0 {
		return f.syntax("empty parameter name")
	}
	if bytes.IndexByte(key[:i], ']') >= 0 {
		return f.syntax("unbalanced ']' in parameter name")
	}
	// Finding the brackets is one pass over the name, and so is interning
	// its prefixes when it has a "[]".
	f.steps += 2*len(key) + 1
	f.segs = append(f.segs, formSeg{start: 0, end: i, idx: -1})
	// prefix is the interned id of the name up to i, pathNone until a
	// "[]" needs one.
	prefix := pathNone
	for i < len(key) {
		if len(f.segs) >= maxDepth {
			// As deep as JSON may nest; the segments of one name are
			// held at once.
			return f.syntax("parameter name nested too deep")
		}
		if key[i] != '[' {
			return f.syntax("text after ']' in parameter name")
		}
		j := bytes.IndexByte(key[i+1:], ']')
		if j < 0 {
			return f.syntax("unbalanced '[' in parameter name")
		}
		j += i + 1
		if bytes.IndexByte(key[i+1:j], '[') >= 0 {
			return f.syntax("nested '[' in parameter name")
		}
		if j == i+1 {
			if prefix == pathNone {
				prefix = f.internPrefix()
			}
			c := &f.counters[prefix]
			idx := int(c.next)
			c.next++
			f.segs = append(f.segs, formSeg{idx: idx})
			prefix = f.internEmpty(prefix)
		} else {
			f.segs = append(f.segs, formSeg{start: i + 1, end: j, idx: -1})
			if prefix != pathNone {
				prefix = f.intern(prefix, key[i+1:j])
			}
		}
		i = j + 1
	}
	return nil
}

// internPrefix interns the segments of the name parsed so far, none of
// them a "[]" (the first "[]" is what asks for it).
func (f *formState) internPrefix() int32 {
	if len(f.prefixes.ents) == 0 {
		f.prefixes.reset()
	}
	id := pathRoot
	for _, s := range f.segs {
		id = f.intern(id, f.key[s.start:s.end])
	}
	return id
}

// prefixCounter is what the form keeps per interned prefix.
type prefixCounter struct {
	next  int32 // the index of the next "[]" after the prefix
	empty int32 // the id of the prefix followed by "[]", or pathNone
}

// intern returns the id of prefix + seg, a named segment.
func (f *formState) intern(prefix int32, seg []byte) int32 {
	id := f.prefixes.intern(prefix, seg)
	for int(id) >= len(f.counters) {
		f.counters = append(f.counters, prefixCounter{})
	}
	return id
}

// internEmpty returns the id of prefix + "[]". These are found through
// their parent's entry instead of the hash table: runs of "[]" are the
// bulk of the prefixes of a hostile form, and a chain of ids allocated one
// after the other is read in order, where the table costs a cache miss
// per lookup once it outgrows the cache (4 times slower per byte at
// 4 MiB).
func (f *formState) internEmpty(prefix int32) int32 {
	if id := f.counters[prefix].empty; id != pathNone {
		return id
	}
	id := f.prefixes.add(prefix, nil)
	f.counters[prefix].empty = id
	f.counters = append(f.counters, prefixCounter{})
	return id
}

// decode appends the form-decoded s ("+" is a space) to dst.
func (f *formState) decode(dst, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			dst = append(dst, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, f.syntax("malformed percent-encoding")
			}
			dst = append(dst, byte(hexVal(s[i+1])<<4|hexVal(s[i+2])))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst, nil
}

// appendQueryEscape encodes like url.QueryEscape, without allocating.
func appendQueryEscape(dst, s []byte) []byte {
	const hexDigits = "0123456789ABCDEF"
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', isDigit(c), c == '-', c == '_', c == '.', c == '~':
			dst = append(dst, c)
		case c == ' ':
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return dst
}
