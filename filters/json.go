package filters

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxDepth bounds nesting (see "Limits" in the package documentation). The
// walk recurses, and each level costs about a kilobyte of goroutine stack:
// at 10000 levels a 20 KB body took 8 MiB of stack. Linearity does not rest
// on it: every level is walked a bounded number of times (see fastRetry).
const maxDepth = 1000

// maxInput is the largest input a filter takes: offsets and counts into it
// are kept in 32 bits, where a few of them are held per key.
const maxInput = 1<<31 - 1

// errTooLarge is the error of an input over maxInput.
var errTooLarge = &SyntaxError{Msg: "input larger than 2 GiB"}

// fastRetry is how many levels below a kept container that had to be walked
// (see value) may still try the light walker. Each try rescans what it
// covers, so without a bound a deep body would be rescanned once per level.
const fastRetry = 2

// dupMapMin is the object size from which duplicate keys are found with
// the walker's dupTable instead of a scan, keeping huge objects linear
// without hashing every key of ordinary ones.
const dupMapMin = 32

// dupMaxCompares is how many keys of an object may be compared byte for
// byte (they got past the length and end bytes filter) before the object
// switches to the dupTable early: keys made alike would otherwise be
// compared with up to dupMapMin others each.
const dupMaxCompares = 8

// JSON appends to dst the JSON document src reduced to the mask, and
// reports what it kept and removed. On error dst is returned unchanged:
// partial output is never handed out as a result.
//
// See the package documentation for the semantics; in short: json.filter's
// result for wildcard-free masks, compact output, numbers and strings copied
// byte for byte unless transformed or card-redacted, and duplicate keys,
// invalid UTF-8, trailing data or nesting deeper than 1000 rejected with a
// *SyntaxError. Time and memory are linear in len(src) whatever it holds.
func (m *Mask) JSON(dst, src []byte, opt *Options) ([]byte, *Report, error) {
	out, rep, _, err := m.jsonCounted(dst, src, opt)
	return out, rep, err
}

// jsonCounted is JSON, also returning the work done in steps (see
// jsonWalker.steps).
func (m *Mask) jsonCounted(dst, src []byte, opt *Options) (_ []byte, _ *Report, steps int, _ error) {
	if m == nil || m.root == nil {
		return dst, nil, 0, errors.New("filters: nil Mask")
	}
	if opt == nil {
		opt = &zeroOptions
	}
	if m.usesHMAC && len(opt.HMACKey) == 0 {
		return dst, nil, 0, ErrNoHMACKey
	}
	if len(src) > maxInput {
		return dst, nil, 0, errTooLarge
	}
	opt = sanitize(opt)
	w := walkerPool.Get().(*jsonWalker)
	defer w.release()
	w.src, w.pos, w.dst, w.opt, w.fastStop = src, 0, dst, opt, maxDepth
	w.maxOut = 0
	if opt.MaxOutput > 0 {
		w.maxOut = len(dst) + opt.MaxOutput
	}
	w.xf.key = opt.HMACKey
	w.rep.budget = reportBudget(len(src))
	// The forward moves of pos are work too: rewinds add what they undo
	// to steps, so the final pos completes the count.
	defer func() { steps = w.steps + w.pos + w.paths.steps + w.dups.steps + w.rep.written }()

	w.ws()
	if w.pos >= len(src) {
		return dst, nil, steps, &SyntaxError{Offset: int64(w.pos), Msg: "empty body"}
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
	if err == nil && w.over() {
		err = ErrOutputTooLarge
	}
	if err != nil {
		return dst, nil, steps, err
	}
	return w.dst, w.rep.buildShared(&m.lastPaths), steps, nil
}

// zeroOptions stands in for a nil *Options. It is never written; a local
// would escape through the pooled walker and cost an allocation per call.
var zeroOptions Options

var walkerPool = sync.Pool{New: func() any {
	w := new(jsonWalker)
	w.paths.linked = true
	w.paths.reset()
	return w
}}

// jsonWalker is the state of one JSON filter call. It is pooled so that its
// scratch buffers are reused across requests.
type jsonWalker struct {
	src []byte
	pos int
	dst []byte
	opt *Options

	rep   reportBuilder
	paths pathTable // report paths below an array, interned
	xf    xfState

	segs    []pathSeg     // path to the value being parsed
	arrays  int           // array-index segments in segs
	noSkip  bool          // skipValue failed: describe the error with value
	keys    []keyRef      // keys of every open object, for duplicate detection
	dups    dupTable      // duplicate detection in large objects
	specs   []speculation // open speculations, innermost last
	arena   []byte        // unescaped keys that contained escapes
	scratch []byte        // unescaped string values
	tmp     []byte        // transform output
	pathBuf []byte
	num     [20]byte

	// fastStop is the deepest level at which value may try the light
	// walker on a kept container (see fastRetry).
	fastStop int
	// maxOut is the length dst may reach (Options.MaxOutput); 0: no bound.
	maxOut int
	// steps counts the work of the call that is not a forward move of
	// pos: rescans, second passes over a span (digit counts, unescaping,
	// card scans, hashing keys, compaction, transforms), duplicate-key
	// comparisons and report paths. Tests hold it to a constant per input
	// byte, which catches super-linear work deterministically, where a
	// timed test would flake. It is counted per span or per item, never
	// per byte inside the scanning loops, so production pays an addition
	// per token at most: within the noise of BenchmarkJSONMask (see
	// BENCHMARKS.md).
	steps int
}

// keyRef has at most four fields so that the compiler keeps it in
// registers: a struct built in memory field by field and then copied as a
// whole stalls on store forwarding, once per key.
type keyRef struct {
	start, end int
	// ends holds the first and last byte, so that the duplicate scan
	// rarely touches the bytes of a key that differs.
	ends  uint16
	arena bool // in w.arena (unescaped), else in w.src (had no escapes)
}

// pathSeg is kept small (it is pushed for every member): an object key is
// referred to by its index in w.keys.
type pathSeg struct {
	idx int   // array index, or -1-i for the object key w.keys[i]
	id  int32 // interned normalised path up to here, or pathNone until needed
	// prev is the id of the previous member of the same object that was
	// interned, or pathNone: the member after it last time is the likely
	// next one, since array elements tend to have the same keys in the
	// same order.
	prev int32
}

// maxPooledBuf keeps one huge request from pinning its buffers in the pool.
const maxPooledBuf = 1 << 20

func (w *jsonWalker) release() {
	w.src, w.dst, w.opt, w.steps = nil, nil, nil, 0
	w.xf = xfState{sum: w.xf.sum, mac: w.xf.mac, macKey: w.xf.macKey}
	w.rep.reset()
	w.paths.reset()
	w.segs, w.keys, w.specs, w.arrays, w.noSkip = w.segs[:0], w.keys[:0], w.specs[:0], 0, false
	w.dups.reset()
	w.arena, w.scratch, w.tmp = w.arena[:0], w.scratch[:0], w.tmp[:0]
	if cap(w.arena) > maxPooledBuf || cap(w.scratch) > maxPooledBuf || cap(w.rep.buf) > maxPooledBuf ||
		cap(w.keys) > maxPooledBuf/16 || cap(w.segs) > maxPooledBuf/16 ||
		cap(w.paths.keys) > maxPooledBuf || cap(w.paths.slots) > maxPooledBuf/4 ||
		cap(w.specs) > maxPooledBuf/128 {
		return
	}
	walkerPool.Put(w)
}

// maxErrPath is the most of a path an error message quotes: the keys of a
// hostile body can be megabytes long, and the message reaches the client,
// the logs and the ledger.
const maxErrPath = 256

// errPath returns p for an error message, cut at maxErrPath bytes (on a
// UTF-8 boundary) with the length of the whole.
func errPath(p []byte) string {
	if len(p) <= maxErrPath {
		return string(p)
	}
	cut := maxErrPath
	for cut > 0 && !utf8.RuneStart(p[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes)", p[:cut], len(p))
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
			b = appendKeySegment(b, w.keyBytes(w.keys[-1-s.idx]))
		case norm:
			b = append(b, '*')
		default:
			b = strconv.AppendInt(b, int64(s.idx), 10)
		}
	}
	return b
}

func (w *jsonWalker) report(k listKind) {
	r := &w.rep
	if r.truncated {
		return
	}
	if w.arrays == 0 {
		// Without an array on the way the path is concrete, and duplicate
		// keys are rejected, so it cannot have been reported before; nor
		// can an array path equal it, since its first array-index segment
		// sits where this path has an object key.
		start := len(r.buf)
		r.buf = w.appendPath(r.buf, true)
		if r.charge(start) {
			r.spans[k] = append(r.spans[k], span{start: start, end: len(r.buf)})
		}
		return
	}
	// Below an array the same normalised path comes back for every
	// element: look it up by id, and write it out only the first time.
	id := w.segs[len(w.segs)-1].id
	if id == pathNone {
		id = w.pathID()
	}
	e := &w.paths.links[id]
	if i := int(e.spans[k]) - 1; i >= 0 && i < len(r.spans[k]) && r.spans[k][i].owner == id {
		return
	}
	start := len(r.buf)
	r.buf = w.appendPath(r.buf, true)
	if !r.charge(start) {
		return
	}
	r.spans[k] = append(r.spans[k], span{start: start, end: len(r.buf), owner: id})
	e.spans[k] = int32(len(r.spans[k]))
}

// starSeg is the interned segment of an array index.
var starSeg = []byte{'*'}

// pathID interns the current normalised path, reusing the ids already
// known for its prefix.
func (w *jsonWalker) pathID() int32 {
	segs := w.segs
	i := len(segs)
	for i > 0 && segs[i-1].id == pathNone {
		i--
	}
	id := pathRoot
	if i > 0 {
		id = segs[i-1].id
	}
	t := &w.paths
	for ; i < len(segs); i++ {
		s := &segs[i]
		if s.idx >= 0 {
			id = t.intern(id, starSeg)
		} else {
			id = t.internPredicted(id, w.keyBytes(w.keys[-1-s.idx]), s.prev)
		}
		s.id = id
	}
	return id
}

func (w *jsonWalker) cardError() error {
	w.pathBuf = w.appendPath(w.pathBuf[:0], false)
	return fmt.Errorf("filters: %w at %s", ErrCardNumber, errPath(w.pathBuf))
}

func (w *jsonWalker) ws() {
	i, src := w.pos, w.src
	if i < len(src) && src[i] > ' ' {
		return
	}
	for i < len(src) && isSpace[src[i]] {
		i++
	}
	w.pos = i
}

// isSpace marks JSON whitespace: one load per byte instead of four
// comparisons, for the indentation runs of pretty-printed bodies.
var isSpace = [256]bool{' ': true, '\n': true, '\t': true, '\r': true}

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

// speculate pushes a speculation for the member about to be read; they
// live on a stack in the walker rather than in the member loops, which
// would otherwise zero a large struct for every member.
func (w *jsonWalker) speculate(wrote bool) {
	w.specs = append(w.specs, speculation{dst: len(w.dst), wrote: wrote, rep: w.rep.mark()})
}

// settle pops the speculation of a member that has been read. If it
// produced nothing, it is removed from the output and reported as removed
// instead, and the container's earlier wrote is returned.
func (w *jsonWalker) settle(produced, wrote bool) bool {
	sp := &w.specs[len(w.specs)-1]
	w.specs = w.specs[:len(w.specs)-1]
	if produced {
		return wrote
	}
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
	c := w.src[w.pos]
	if !emit && !w.noSkip && (c == '{' || c == '[') {
		// A removed container: validate it without the bookkeeping of
		// the emitting walk. Only a body in error walks it twice: the
		// second walk must not skip again, or every level of a deeply
		// nested bad body would rescan the rest of it.
		start, keys, arena := w.pos, len(w.keys), len(w.arena)
		if w.skipValue(depth) {
			return false, nil
		}
		w.steps += w.pos - start
		w.pos, w.keys, w.arena = start, w.keys[:keys], w.arena[:arena]
		w.noSkip = true
	}
	if keep && xf == nil && (n == nil || !n.hasXf) && !w.noSkip && depth <= w.fastStop && (c == '{' || c == '[') {
		// A container sent whole, with no transform in or below it: the
		// emitting walk would copy every token as it is and report
		// nothing (paths below a kept one are not reported), so validate
		// it with the light walker and copy it in one go. The card guard
		// would have nothing to do when the whole subtree cannot hold a
		// card number (jsonMayHoldCard); otherwise it must walk the
		// subtree after all.
		start, keys, arena := w.pos, len(w.keys), len(w.arena)
		if w.skipValue(depth) {
			raw := w.src[start:w.pos]
			if w.opt.Cards == CardsAllow || !w.mayHoldCard(raw) {
				w.steps += len(raw)
				w.dst = appendCompact(w.dst, raw)
				return true, nil
			}
			w.steps += w.pos - start
			w.pos, w.keys, w.arena = start, w.keys[:keys], w.arena[:arena]
			if depth+fastRetry < w.fastStop {
				// Most of a kept record has no digits: its members may
				// still be copied in one go, but a failed try rescans
				// its subtree, so only a few levels down from here
				// (each byte is scanned at most fastRetry+1 times).
				stop := w.fastStop
				w.fastStop = depth + fastRetry
				produced, err := w.container(c, n, emit, keep, xf, depth)
				w.fastStop = stop
				return produced, err
			}
		} else {
			w.steps += w.pos - start
			w.pos, w.keys, w.arena = start, w.keys[:keys], w.arena[:arena]
			w.noSkip = true
		}
	}
	switch c {
	case '{', '[':
		return w.container(c, n, emit, keep, xf, depth)
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

func (w *jsonWalker) container(c byte, n *node, emit, keep bool, xf *Transform, depth int) (bool, error) {
	if c == '{' {
		return w.object(n, emit, keep, xf, depth+1)
	}
	return w.array(n, emit, keep, xf, depth+1)
}

// appendCompact appends the valid JSON value raw without the whitespace
// between its tokens, which is what the emitting walk would write for it.
func appendCompact(dst, raw []byte) []byte {
	start := 0
	for i := 0; i < len(raw); {
		switch c := raw[i]; {
		case c == '"':
			// Valid, so the first quote not escaped ends the string.
			for i++; raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
			i++
		case isSpace[c]:
			dst = append(dst, raw[start:i]...)
			for i++; i < len(raw) && isSpace[raw[i]]; i++ {
			}
			start = i
		default:
			i++
		}
	}
	return append(dst, raw[start:]...)
}

// dupKeys is the duplicate-key state of one open object besides its keys
// in w.keys.
type dupKeys struct {
	tag int32 // the object's tag in w.dups once it uses it, else 0
	// compares counts the keys compared byte for byte in the scan.
	compares int32
	// filter has a bit per hash of length, first and last byte of each
	// key so far: most keys differ from all earlier ones there, and skip
	// the scan.
	filter uint64
}

// pushKey records the key scanned at src[rawStart:rawEnd] (quotes
// included) in w.keys and returns its unescaped bytes, and whether the
// object opened at keysStart already had it.
//
// Duplicate keys are checked even in removed subtrees: the policy may have
// read the body, and it must have read what was sent.
func (w *jsonWalker) pushKey(rawStart, rawEnd int, esc bool, keysStart int, d *dupKeys) (kb []byte, dup bool) {
	kStart, kEnd := rawStart+1, rawEnd-1
	kb = w.src[kStart:kEnd]
	if esc {
		w.steps += len(kb)
		kStart = len(w.arena)
		w.arena = unescape(w.arena, kb)
		kEnd = len(w.arena)
		kb = w.arena[kStart:]
	}
	var ends uint16
	if len(kb) > 0 {
		ends = uint16(kb[0])<<8 | uint16(kb[len(kb)-1])
	}
	w.keys = append(w.keys, keyRef{start: kStart, end: kEnd, ends: ends, arena: esc})
	if d.tag != 0 {
		return kb, w.dups.insert(d.tag, len(w.keys)-1, kb, w)
	}
	bit := uint64(1) << ((uint(len(kb)) ^ uint(ends)<<1 ^ uint(ends)>>5) & 63)
	if d.filter&bit != 0 {
		prev := w.keys[keysStart : len(w.keys)-1]
		w.steps += len(prev)
		for _, k := range prev {
			if k.end-k.start == len(kb) && k.ends == ends {
				w.steps += len(kb)
				d.compares++
				if string(w.keyBytes(k)) == string(kb) {
					return kb, true
				}
			}
		}
	}
	d.filter |= bit
	if len(w.keys)-keysStart > dupMapMin || d.compares > dupMaxCompares {
		// Known to be free of duplicates: each key is inserted once.
		d.tag = w.dups.newTag()
		for i := keysStart; i < len(w.keys); i++ {
			w.dups.insert(d.tag, i, w.keyBytes(w.keys[i]), w)
		}
	}
	return kb, false
}

// skipValue validates the value at w.pos and moves past it, for removed
// subtrees: no output, no report and no path to maintain. It only says
// whether the value is valid; on false the caller rewinds and parses the
// value again with value, which finds the same problem and describes it
// (offset, message, path of a duplicate key). It is exactly as strict as
// value, so that removing a member never changes what is accepted.
func (w *jsonWalker) skipValue(depth int) bool {
	w.ws()
	if w.pos >= len(w.src) {
		return false
	}
	switch c := w.src[w.pos]; c {
	case '{':
		return w.skipObject(depth + 1)
	case '[':
		return w.skipArray(depth + 1)
	case '"':
		_, err := w.scanString()
		return err == nil
	case 't':
		return w.skipLiteral("true")
	case 'f':
		return w.skipLiteral("false")
	case 'n':
		return w.skipLiteral("null")
	default:
		if c == '-' || isDigit(c) {
			return w.scanNumber() == nil
		}
		return false
	}
}

func (w *jsonWalker) skipLiteral(lit string) bool {
	if len(w.src)-w.pos < len(lit) || string(w.src[w.pos:w.pos+len(lit)]) != lit {
		return false
	}
	w.pos += len(lit)
	return true
}

func (w *jsonWalker) skipObject(depth int) bool {
	if depth > maxDepth {
		return false
	}
	w.pos++
	keysStart, arenaStart := len(w.keys), len(w.arena)
	var dk dupKeys
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == '}' {
		w.pos++
		return true
	}
	for {
		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != '"' {
			return false
		}
		rawStart := w.pos
		esc, err := w.scanString()
		if err != nil {
			return false
		}
		if _, dup := w.pushKey(rawStart, w.pos, esc, keysStart, &dk); dup {
			return false
		}
		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != ':' {
			return false
		}
		w.pos++
		if !w.skipValue(depth) {
			return false
		}
		w.ws()
		if w.pos >= len(w.src) {
			return false
		}
		switch w.src[w.pos] {
		case ',':
			w.pos++
		case '}':
			w.pos++
			w.keys, w.arena = w.keys[:keysStart], w.arena[:arenaStart]
			if dk.tag != 0 {
				w.dups.closeTag()
			}
			return true
		default:
			return false
		}
	}
}

func (w *jsonWalker) skipArray(depth int) bool {
	if depth > maxDepth {
		return false
	}
	w.pos++
	w.ws()
	if w.pos < len(w.src) && w.src[w.pos] == ']' {
		w.pos++
		return true
	}
	for {
		if !w.skipValue(depth) {
			return false
		}
		w.ws()
		if w.pos >= len(w.src) {
			return false
		}
		switch w.src[w.pos] {
		case ',':
			w.pos++
		case ']':
			w.pos++
			return true
		default:
			return false
		}
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
	var dk dupKeys
	wrote := false
	prev := pathNone
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
		kb, dup := w.pushKey(rawStart, rawEnd, esc, keysStart, &dk)
		w.segs = append(w.segs, pathSeg{idx: -len(w.keys), prev: prev})
		if dup {
			w.pathBuf = w.appendPath(w.pathBuf[:0], false)
			w.steps += len(w.pathBuf) + w.pos - rawStart
			w.pos = rawStart
			return false, w.syntax("duplicate key at " + errPath(w.pathBuf))
		}

		w.ws()
		if w.pos >= len(w.src) || w.src[w.pos] != ':' {
			return false, w.syntax("expected ':' after object key")
		}
		w.pos++

		cemit, ckeep, cxf, cn := false, false, (*Transform)(nil), (*node)(nil)
		var spec bool
		if emit {
			var c *node
			if n != nil {
				w.steps += len(kb)
				c = n.lookup(kb)
			}
			full := c
			cemit, ckeep, cxf, cn = decide(keep, xf, c)
			if cemit && w.opt.Cards != CardsAllow && w.hasCard(kb) {
				// A key cannot be partly redacted without risking a
				// duplicate, so the member goes.
				if w.opt.Cards == CardsBlock {
					return false, w.cardError()
				}
				w.report(listCards)
				cemit = false
			}
			if spec = needSpeculation(keep, cemit, full); spec {
				w.speculate(wrote)
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
		if w.over() {
			return false, ErrOutputTooLarge
		}
		if spec {
			wrote = w.settle(produced, wrote)
		}
		if id := w.segs[len(w.segs)-1].id; id != pathNone {
			prev = id
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
			if dk.tag != 0 {
				w.dups.closeTag()
			}
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
	// Every element has the same normalised path: once one element
	// interned it, the others start from its id.
	star := pathNone
	for idx := 0; ; idx++ {
		w.segs = append(w.segs, pathSeg{idx: idx, id: star})
		cemit, ckeep, cxf, cn := false, false, (*Transform)(nil), (*node)(nil)
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
				w.speculate(wrote)
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
		if w.over() {
			return false, ErrOutputTooLarge
		}
		if spec {
			wrote = w.settle(produced, wrote)
		}
		star = w.segs[len(w.segs)-1].id
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

// over reports whether the output is past Options.MaxOutput.
func (w *jsonWalker) over() bool { return w.maxOut > 0 && len(w.dst) > w.maxOut }

func (w *jsonWalker) transform(t *Transform, v []byte) {
	var ok bool
	w.tmp, ok = t.apply(w.tmp[:0], v, &w.xf)
	if !ok {
		w.tmp = append(w.tmp[:0], redacted...)
	}
	// What a transform writes is bounded per value (64 bytes for hmac),
	// not by the input: steps count the value read and one for the rest,
	// and tests bound the output on its own (maxAmplification).
	w.steps += len(v) + 1
	w.dst = appendJSONString(w.dst, w.tmp)
}

// hasCard, mayHoldCard and numberHasCard are the card guard's, counting
// their scans.
func (w *jsonWalker) hasCard(s []byte) bool {
	w.steps += len(s)
	return hasCard(s)
}

func (w *jsonWalker) mayHoldCard(s []byte) bool {
	w.steps += len(s)
	return jsonMayHoldCard(s)
}

func (w *jsonWalker) numberHasCard(s []byte) bool {
	w.steps += len(s)
	return numberHasCard(s)
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
		w.steps += len(content)
		w.scratch = unescape(w.scratch[:0], content)
		content = w.scratch
	}
	if xf != nil {
		w.transform(xf, content)
		return true, nil
	}
	if !w.hasCard(content) {
		w.dst = append(w.dst, raw...)
		return true, nil
	}
	if w.opt.Cards == CardsBlock {
		return false, w.cardError()
	}
	w.report(listCards)
	w.tmp = redactCards(w.tmp[:0], content)
	w.steps += len(content) + len(w.tmp)
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
	if w.opt.Cards != CardsAllow && w.numberHasCard(lit) {
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
		// Eight bytes at a time while none of them needs attention, then
		// straight to the first one that does; byte by byte only near the
		// end of the input.
		if i+8 <= len(src) {
			m := specialBytes(binary.LittleEndian.Uint64(src[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else {
			for i < len(src) && plain[src[i]] {
				i++
			}
			if i >= len(src) {
				w.pos = i
				return esc, w.syntax("unterminated string")
			}
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

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialBytes returns a word whose lowest set bit falls in the first byte
// of x (in memory order) that is not plain: '"', '\\', a control
// character or a non-ASCII byte; 0 if there is none. Bits above the first
// such byte may be spurious (borrows propagate upwards), which is why only
// the lowest one is used.
func specialBytes(x uint64) uint64 {
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	ctl := (x - lsb*0x20) &^ x // high bit set where x < 0x20 (or spurious above one)
	return (ctl | (q-lsb)&^q | (b-lsb)&^b | x) & msb
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
