package filters

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxDepth bounds nesting so that a hostile body cannot grow the stack
// without limit; real payloads nest a handful of levels.
const maxDepth = 10000

// dupMapMin is the object size from which duplicate keys are found with a
// map instead of a scan, keeping huge objects linear without allocating for
// ordinary ones.
const dupMapMin = 32

// JSON appends to dst the JSON document src reduced to the mask, and
// reports what it kept and removed. On error dst is returned unchanged:
// partial output is never handed out as a result.
//
// See the package documentation for the semantics; in short: json.filter's
// result for wildcard-free masks, compact output, numbers and strings copied
// byte for byte unless transformed or card-redacted, and duplicate keys,
// invalid UTF-8, trailing data or nesting deeper than 10000 rejected with a
// *SyntaxError.
func (m *Mask) JSON(dst, src []byte, opt *Options) ([]byte, *Report, error) {
	if m == nil || m.root == nil {
		return dst, nil, errors.New("filters: nil Mask")
	}
	var zero Options
	if opt == nil {
		opt = &zero
	}
	if m.usesHMAC && len(opt.HMACKey) == 0 {
		return dst, nil, ErrNoHMACKey
	}
	opt = sanitize(opt)
	w := walkerPool.Get().(*jsonWalker)
	defer w.release()
	w.src, w.pos, w.dst, w.opt = src, 0, dst, opt
	w.xf.key = opt.HMACKey

	w.ws()
	if w.pos >= len(src) {
		return dst, nil, &SyntaxError{Offset: int64(w.pos), Msg: "empty body"}
	}
	var err error
	if c := src[w.pos]; c == '{' || c == '[' {
		_, err = w.value(m.root, true, false, nil, 0)
	} else if _, err = w.value(nil, false, false, nil, 0); err == nil {
		err = ErrNotContainer
	}
	if err == nil {
		w.ws()
		if w.pos < len(src) {
			err = w.syntax("data after the top-level value")
		}
	}
	if err != nil {
		return dst, nil, err
	}
	return w.dst, w.rep.build(), nil
}

var walkerPool = sync.Pool{New: func() any { return new(jsonWalker) }}

// jsonWalker is the state of one JSON filter call. It is pooled so that its
// scratch buffers are reused across requests.
type jsonWalker struct {
	src []byte
	pos int
	dst []byte
	opt *Options

	rep reportBuilder
	xf  xfState

	segs    []pathSeg // path to the value being parsed
	arrays  int       // array-index segments in segs
	keys    []keyRef  // keys of every open object, for duplicate detection
	arena   []byte    // unescaped keys that contained escapes
	scratch []byte    // unescaped string values
	tmp     []byte    // transform output
	pathBuf []byte
	num     [20]byte
}

type keyRef struct {
	start, end int
	arena      bool // in w.arena (unescaped), else in w.src (had no escapes)
	// first and last byte, so that the duplicate scan rarely touches the
	// bytes of a key that differs
	first, last byte
}

type pathSeg struct {
	idx int // array index, or -1 for an object key
	key keyRef
}

// maxPooledBuf keeps one huge request from pinning its buffers in the pool.
const maxPooledBuf = 1 << 20

func (w *jsonWalker) release() {
	w.src, w.dst, w.opt = nil, nil, nil
	w.xf = xfState{sum: w.xf.sum}
	w.rep.reset()
	w.segs, w.keys, w.arrays = w.segs[:0], w.keys[:0], 0
	w.arena, w.scratch, w.tmp = w.arena[:0], w.scratch[:0], w.tmp[:0]
	if cap(w.arena) > maxPooledBuf || cap(w.scratch) > maxPooledBuf || cap(w.rep.buf) > maxPooledBuf ||
		cap(w.keys) > maxPooledBuf/16 || cap(w.segs) > maxPooledBuf/16 {
		return
	}
	walkerPool.Put(w)
}

func (w *jsonWalker) syntax(msg string) error {
	return &SyntaxError{Offset: int64(w.pos), Msg: msg}
}

func (w *jsonWalker) keyBytes(k keyRef) []byte {
	if k.arena {
		return w.arena[k.start:k.end]
	}
	return w.src[k.start:k.end]
}

// appendPath writes the current path; norm writes array indices as "*".
func (w *jsonWalker) appendPath(b []byte, norm bool) []byte {
	for i, s := range w.segs {
		if i > 0 {
			b = append(b, '/')
		}
		switch {
		case s.idx < 0:
			b = appendSegment(b, w.keyBytes(s.key))
		case norm:
			b = append(b, '*')
		default:
			b = strconv.AppendInt(b, int64(s.idx), 10)
		}
	}
	return b
}

func (w *jsonWalker) report(k listKind) {
	w.pathBuf = w.appendPath(w.pathBuf[:0], true)
	if w.arrays == 0 {
		// Without an array on the way the path is concrete, and duplicate
		// keys are rejected, so it cannot have been reported before; nor
		// can an array path equal it, since its first array-index segment
		// sits where this path has an object key.
		w.rep.addUnique(k, w.pathBuf)
		return
	}
	w.rep.add(k, w.pathBuf)
}

func (w *jsonWalker) cardError() error {
	w.pathBuf = w.appendPath(w.pathBuf[:0], false)
	return fmt.Errorf("filters: %w at %s", ErrCardNumber, w.pathBuf)
}

func (w *jsonWalker) ws() {
	i, src := w.pos, w.src
	if i < len(src) && src[i] > ' ' {
		return
	}
	for i < len(src) && (src[i] == ' ' || src[i] == '\n' || src[i] == '\t' || src[i] == '\r') {
		i++
	}
	w.pos = i
}

// decide says how the member whose path is on top of w.segs is sent. c is
// the mask node matching it (nil if none). It reports nothing, so that a
// caller can still veto the member.
func decide(keep bool, xf *Transform, c *node) (emit, ckeep bool, cxf *Transform, cn *node) {
	if keep {
		cxf = xf
		if c != nil {
			if c.xf != nil {
				cxf = c.xf
			}
			if !c.hasXf {
				// Nothing more specific below: copy the subtree raw.
				c = nil
			}
		}
		return true, true, cxf, c
	}
	if c == nil {
		return false, false, nil, nil
	}
	return true, c.keep, c.xf, c
}

// speculation remembers where a member began, for members whose node is
// reached only through "*" (see node.litPath): whether the document holds
// anything such a path selects is known only after the member was read.
type speculation struct {
	dst   int
	wrote bool
	rep   reportMark
}

func needSpeculation(parentKeep, emit bool, c *node) bool {
	return !parentKeep && emit && !c.keep && !c.litPath
}

func (w *jsonWalker) speculate(wrote bool) speculation {
	return speculation{dst: len(w.dst), wrote: wrote, rep: w.rep.mark()}
}

// takeBack removes a speculatively written member that produced nothing and
// reports it as removed instead. It returns the container's earlier wrote.
func (w *jsonWalker) takeBack(sp speculation) bool {
	w.dst = w.dst[:sp.dst]
	w.rep.rollback(sp.rep)
	w.report(listRemoved)
	w.rep.count++
	return sp.wrote
}

// reportMember records the outcome of decide for the current path.
func (w *jsonWalker) reportMember(parentKeep, emit bool, c *node) {
	if !emit {
		w.report(listRemoved)
		w.rep.count++
		return
	}
	if c == nil {
		return
	}
	if !parentKeep && c.keep {
		w.report(listKept)
	}
	if c.xf != nil {
		w.report(listTransformed)
	}
}

// value parses one value at w.pos. emit writes it to w.dst; keep means the
// whole subtree is sent; n is the mask node here (nil when nothing more
// specific applies); xf is the transform in force. produced is false when
// an emitted value turned out to hold nothing a path selects, so that the
// caller must take it back (see node.litPath); it is only meaningful when
// emit is set.
func (w *jsonWalker) value(n *node, emit, keep bool, xf *Transform, depth int) (produced bool, err error) {
	w.ws()
	if w.pos >= len(w.src) {
		return false, w.syntax("unexpected end of input")
	}
	switch c := w.src[w.pos]; c {
	case '{':
		return w.object(n, emit, keep, xf, depth+1)
	case '[':
		return w.array(n, emit, keep, xf, depth+1)
	case '"':
		return w.str(n, emit, keep, xf)
	case 't':
		return w.literal("true", n, emit, keep, xf)
	case 'f':
		return w.literal("false", n, emit, keep, xf)
	case 'n':
		return w.literal("null", n, emit, keep, xf)
	default:
		if c == '-' || isDigit(c) {
			return w.number(n, emit, keep, xf)
		}
		return false, w.syntax("invalid character")
	}
}

func (w *jsonWalker) object(n *node, emit, keep bool, xf *Transform, depth int) (bool, error) {
	if depth > maxDepth {
		return false, w.syntax("nesting too deep")
	}
	w.pos++
	if emit {
		w.dst = append(w.dst, '{')
	}
	// On error the walker is abandoned, so only the success paths need to
	// pop this object's keys.
	keysStart, arenaStart := len(w.keys), len(w.arena)
	var seen map[string]struct{}
	wrote := false
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == '}' {
		w.pos++
		if emit {
			w.dst = append(w.dst, '}')
		}
		w.keys, w.arena = w.keys[:keysStart], w.arena[:arenaStart]
		return keep || (n != nil && n.litPath), nil
	}
	for {
		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != '"' {
			return false, w.syntax("expected a string key")
		}
		rawStart := w.pos
		esc, err := w.scanString()
		if err != nil {
			return false, err
		}
		rawEnd := w.pos
		kr := keyRef{start: rawStart + 1, end: rawEnd - 1}
		kb := w.src[kr.start:kr.end]
		if esc {
			a := len(w.arena)
			w.arena = unescape(w.arena, kb)
			kr = keyRef{start: a, end: len(w.arena), arena: true}
			kb = w.arena[a:]
		}
		if len(kb) > 0 {
			kr.first, kr.last = kb[0], kb[len(kb)-1]
		}

		// Duplicate keys are checked even in removed subtrees: the policy
		// may have read the body, and it must have read what was sent.
		dup := false
		if seen != nil {
			_, dup = seen[string(kb)]
			seen[string(kb)] = struct{}{}
		} else {
			for _, k := range w.keys[keysStart:] {
				if k.end-k.start == len(kb) && k.first == kr.first && k.last == kr.last && string(w.keyBytes(k)) == string(kb) {
					dup = true
					break
				}
			}
			if len(w.keys)-keysStart >= dupMapMin {
				seen = make(map[string]struct{}, 2*dupMapMin)
				for _, k := range w.keys[keysStart:] {
					seen[string(w.keyBytes(k))] = struct{}{}
				}
				seen[string(kb)] = struct{}{}
			}
		}
		w.keys = append(w.keys, kr)
		w.segs = append(w.segs, pathSeg{idx: -1, key: kr})
		if dup {
			w.pathBuf = w.appendPath(w.pathBuf[:0], false)
			w.pos = rawStart
			return false, w.syntax("duplicate key at " + string(w.pathBuf))
		}

		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != ':' {
			return false, w.syntax("expected ':' after object key")
		}
		w.pos++

		cemit, ckeep, cxf, cn := false, false, (*Transform)(nil), (*node)(nil)
		var sp speculation
		var spec bool
		if emit {
			var c *node
			if n != nil {
				c = n.lookup(kb)
			}
			full := c
			cemit, ckeep, cxf, cn = decide(keep, xf, c)
			if cemit && w.opt.Cards != CardsAllow && hasCard(kb) {
				// A key cannot be partly redacted without risking a
				// duplicate, so the member goes.
				if w.opt.Cards == CardsBlock {
					return false, w.cardError()
				}
				w.report(listCards)
				cemit = false
			}
			if spec = needSpeculation(keep, cemit, full); spec {
				sp = w.speculate(wrote)
			}
			w.reportMember(keep, cemit, full)
			if cemit {
				if wrote {
					w.dst = append(w.dst, ',')
				}
				wrote = true
				w.dst = append(w.dst, w.src[rawStart:rawEnd]...)
				w.dst = append(w.dst, ':')
			}
		}
		produced, err := w.value(cn, cemit, ckeep, cxf, depth)
		if err != nil {
			return false, err
		}
		if spec && !produced {
			wrote = w.takeBack(sp)
		}
		w.segs = w.segs[:len(w.segs)-1]

		w.ws()
		if w.pos >= len(w.src) {
			return false, w.syntax("unterminated object")
		}
		switch w.src[w.pos] {
		case ',':
			w.pos++
		case '}':
			w.pos++
			if emit {
				w.dst = append(w.dst, '}')
			}
			w.keys, w.arena = w.keys[:keysStart], w.arena[:arenaStart]
			return keep || wrote || (n != nil && n.litPath), nil
		default:
			return false, w.syntax("expected ',' or '}' in object")
		}
	}
}

func (w *jsonWalker) array(n *node, emit, keep bool, xf *Transform, depth int) (bool, error) {
	if depth > maxDepth {
		return false, w.syntax("nesting too deep")
	}
	w.pos++
	if emit {
		w.dst = append(w.dst, '[')
	}
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == ']' {
		w.pos++
		if emit {
			w.dst = append(w.dst, ']')
		}
		return keep || (n != nil && n.litPath), nil
	}
	wrote := false
	w.arrays++
	for idx := 0; ; idx++ {
		w.segs = append(w.segs, pathSeg{idx: idx})
		cemit, ckeep, cxf, cn := false, false, (*Transform)(nil), (*node)(nil)
		var sp speculation
		var spec bool
		if emit {
			var c *node
			if n != nil {
				if n.children != nil {
					c = n.lookup(strconv.AppendInt(w.num[:0], int64(idx), 10))
				} else {
					c = n.wild
				}
			}
			cemit, ckeep, cxf, cn = decide(keep, xf, c)
			if spec = needSpeculation(keep, cemit, c); spec {
				sp = w.speculate(wrote)
			}
			w.reportMember(keep, cemit, c)
			if cemit {
				if wrote {
					w.dst = append(w.dst, ',')
				}
				wrote = true
			}
		}
		produced, err := w.value(cn, cemit, ckeep, cxf, depth)
		if err != nil {
			return false, err
		}
		if spec && !produced {
			wrote = w.takeBack(sp)
		}
		w.segs = w.segs[:len(w.segs)-1]
		w.ws()
		if w.pos >= len(w.src) {
			return false, w.syntax("unterminated array")
		}
		switch w.src[w.pos] {
		case ',':
			w.pos++
		case ']':
			w.pos++
			if emit {
				w.dst = append(w.dst, ']')
			}
			w.arrays--
			return keep || wrote || (n != nil && n.litPath), nil
		default:
			return false, w.syntax("expected ',' or ']' in array")
		}
	}
}

// scalarPrelude handles what all scalars share once emitted. done means the
// value has been written: it was a scalar where the mask expected a
// container, with a transform configured below, so it is redacted.
func (w *jsonWalker) scalarPrelude(n *node, keep bool) (done bool) {
	if keep {
		return false
	}
	if !n.litPath {
		// Reached only through "*", which a scalar does not expand: the
		// caller takes the member back.
		return true
	}
	// A scalar reached by a path that goes deeper is kept, as json.filter
	// does.
	w.report(listKept)
	if n != nil && n.hasXf {
		w.report(listTransformed)
		w.dst = append(w.dst, '"')
		w.dst = append(w.dst, redacted...)
		w.dst = append(w.dst, '"')
		return true
	}
	return false
}

func (w *jsonWalker) transform(t *Transform, v []byte) {
	var ok bool
	w.tmp, ok = t.apply(w.tmp[:0], v, &w.xf)
	if !ok {
		w.tmp = append(w.tmp[:0], redacted...)
	}
	w.dst = appendJSONString(w.dst, w.tmp)
}

func (w *jsonWalker) str(n *node, emit, keep bool, xf *Transform) (bool, error) {
	start := w.pos
	esc, err := w.scanString()
	if err != nil || !emit {
		return false, err
	}
	if w.scalarPrelude(n, keep) {
		return keep || n.litPath, nil
	}
	raw := w.src[start:w.pos]
	content := raw[1 : len(raw)-1]
	if xf == nil && w.opt.Cards == CardsAllow {
		w.dst = append(w.dst, raw...)
		return true, nil
	}
	if esc {
		w.scratch = unescape(w.scratch[:0], content)
		content = w.scratch
	}
	if xf != nil {
		w.transform(xf, content)
		return true, nil
	}
	if !hasCard(content) {
		w.dst = append(w.dst, raw...)
		return true, nil
	}
	if w.opt.Cards == CardsBlock {
		return false, w.cardError()
	}
	w.report(listCards)
	w.tmp = redactCards(w.tmp[:0], content)
	w.dst = appendJSONString(w.dst, w.tmp)
	return true, nil
}

func (w *jsonWalker) number(n *node, emit, keep bool, xf *Transform) (bool, error) {
	start := w.pos
	if err := w.scanNumber(); err != nil || !emit {
		return false, err
	}
	if w.scalarPrelude(n, keep) {
		return keep || n.litPath, nil
	}
	lit := w.src[start:w.pos]
	if xf != nil {
		w.transform(xf, lit)
		return true, nil
	}
	if w.opt.Cards != CardsAllow && hasCard(lit) {
		if w.opt.Cards == CardsBlock {
			return false, w.cardError()
		}
		// A number cannot hold a placeholder, so the whole number goes.
		w.report(listCards)
		w.dst = append(w.dst, '"')
		w.dst = append(w.dst, cardRedacted...)
		w.dst = append(w.dst, '"')
		return true, nil
	}
	w.dst = append(w.dst, lit...)
	return true, nil
}

func (w *jsonWalker) literal(lit string, n *node, emit, keep bool, xf *Transform) (bool, error) {
	if len(w.src)-w.pos < len(lit) || string(w.src[w.pos:w.pos+len(lit)]) != lit {
		return false, w.syntax("invalid literal")
	}
	w.pos += len(lit)
	if !emit {
		return false, nil
	}
	if w.scalarPrelude(n, keep) {
		return keep || n.litPath, nil
	}
	if xf != nil && lit != "null" {
		w.transform(xf, w.src[w.pos-len(lit):w.pos])
		return true, nil
	}
	w.dst = append(w.dst, lit...)
	return true, nil
}

func (w *jsonWalker) scanNumber() error {
	src, i := w.src, w.pos
	if i < len(src) && src[i] == '-' {
		i++
	}
	switch {
	case i < len(src) && src[i] == '0':
		i++
	case i < len(src) && src[i] >= '1' && src[i] <= '9':
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	default:
		w.pos = i
		return w.syntax("invalid number")
	}
	if i < len(src) && src[i] == '.' {
		i++
		if i >= len(src) || !isDigit(src[i]) {
			w.pos = i
			return w.syntax("invalid number")
		}
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	if i < len(src) && (src[i] == 'e' || src[i] == 'E') {
		i++
		if i < len(src) && (src[i] == '+' || src[i] == '-') {
			i++
		}
		if i >= len(src) || !isDigit(src[i]) {
			w.pos = i
			return w.syntax("invalid number")
		}
		for i < len(src) && isDigit(src[i]) {
			i++
		}
	}
	w.pos = i
	return nil
}

// plain marks bytes that need no attention inside a JSON string.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string at w.pos and moves past it. esc reports
// whether it contains escapes (and so differs from its content).
func (w *jsonWalker) scanString() (esc bool, err error) {
	src := w.src
	i := w.pos + 1
	for {
		for i < len(src) && plain[src[i]] {
			i++
		}
		if i >= len(src) {
			w.pos = i
			return esc, w.syntax("unterminated string")
		}
		switch c := src[i]; {
		case c == '"':
			w.pos = i + 1
			return esc, nil
		case c == '\\':
			esc = true
			if i+1 >= len(src) {
				w.pos = i
				return esc, w.syntax("unterminated string")
			}
			switch src[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(src) || !isHex(src[i+2]) || !isHex(src[i+3]) || !isHex(src[i+4]) || !isHex(src[i+5]) {
					w.pos = i
					return esc, w.syntax("invalid \\u escape")
				}
				i += 6
			default:
				w.pos = i
				return esc, w.syntax("invalid escape")
			}
		case c < 0x20:
			w.pos = i
			return esc, w.syntax("control character in string")
		default:
			r, size := utf8.DecodeRune(src[i:])
			if r == utf8.RuneError && size == 1 {
				w.pos = i
				return esc, w.syntax("invalid UTF-8 in string")
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(c byte) rune {
	switch {
	case isDigit(c):
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	default:
		return rune(c - 'A' + 10)
	}
}

func hex4(s []byte) rune {
	return hexVal(s[0])<<12 | hexVal(s[1])<<8 | hexVal(s[2])<<4 | hexVal(s[3])
}

// unescape appends the content of an already validated JSON string (without
// quotes) to dst. Unpaired surrogates become U+FFFD, as in encoding/json, so
// keys compare the way a typical vendor decodes them.
func unescape(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16IsSurrogate(r) {
				r2 := rune(-1)
				if r < 0xDC00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = hex4(s[i+2:])
				}
				if r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, s[i+1])
		}
		i += 2
	}
	return dst
}

func utf16IsSurrogate(r rune) bool { return r >= 0xD800 && r < 0xE000 }

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD
// so that the output is valid whatever a transform produced.
func appendJSONString(dst, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c >= 0x80 {
			r, size := utf8.DecodeRune(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
