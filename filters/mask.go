package filters

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
)

// Options are the per-request settings of a filter. A nil *Options is the
// zero value: cards blocked, no HMAC key.
type Options struct {
	// HMACKey is the per-vendor key of the hmac transform. A mask that uses
	// hmac fails without it: an unkeyed hash of an email address is
	// reversible by dictionary.
	HMACKey []byte
	// Cards decides what happens to card numbers in values about to leave.
	Cards CardGuard
	// MaxOutput bounds what Mask.JSON and Mask.Form write, in bytes (0: no
	// bound). Transforms can make a body grow: hmac writes 64 characters
	// for a value of one, so a container of small values comes out 33
	// times its size. Past the bound the call fails with ErrOutputTooLarge.
	// The output is checked after every member, element and pair, so it
	// exceeds the bound by at most one of them before the call fails. The
	// check counts what the filter holds, which includes the keys of the
	// containers it has opened and may still withdraw (copies of input
	// bytes on the open path): an output up to MaxOutput-len(src) is never
	// refused, one over MaxOutput always is, one in between may be.
	MaxOutput int
}

// CardGuard is the policy for card numbers found in outbound values.
type CardGuard uint8

const (
	// CardsBlock fails the request. It is the zero value so that a
	// forgotten setting is the safe one.
	CardsBlock CardGuard = iota
	// CardsRedact replaces each card number with "[CARD REDACTED]".
	CardsRedact
	// CardsAllow sends card numbers; only for a payment processor over TLS.
	CardsAllow
)

// ParseCardGuard parses the "cards" key of a decision; "" means block.
func ParseCardGuard(s string) (CardGuard, error) {
	switch s {
	case "", "block":
		return CardsBlock, nil
	case "redact":
		return CardsRedact, nil
	case "allow":
		return CardsAllow, nil
	}
	return CardsBlock, fmt.Errorf("filters: unknown card guard %q (want block, redact or allow)", s)
}

// sanitize treats a CardGuard outside the defined values as CardsBlock, so
// that a corrupted setting fails closed.
func sanitize(opt *Options) *Options {
	if opt.Cards <= CardsAllow {
		return opt
	}
	o := *opt
	o.Cards = CardsBlock
	return &o
}

func (g CardGuard) String() string {
	switch g {
	case CardsBlock:
		return "block"
	case CardsRedact:
		return "redact"
	case CardsAllow:
		return "allow"
	}
	return fmt.Sprintf("CardGuard(%d)", uint8(g))
}

var (
	// ErrCardNumber is returned, wrapped with the path, when a card number
	// would leave under CardsBlock. The value is never part of the error.
	ErrCardNumber = errors.New("card number in outbound payload")
	// ErrNotContainer is returned by Mask.JSON for a body whose top value is
	// a string, number, boolean or null: no path can select the root, so
	// default deny leaves nothing that could be sent.
	ErrNotContainer = errors.New("filters: JSON body is not an object or array")
	// ErrOutputTooLarge is returned when the output would be larger than
	// Options.MaxOutput.
	ErrOutputTooLarge = errors.New("filters: the filtered output is larger than the limit")
	// ErrNoHMACKey is returned when a mask uses hmac and Options.HMACKey is
	// empty.
	ErrNoHMACKey = errors.New("filters: hmac transform needs Options.HMACKey")
)

// SyntaxError reports an unparseable body. Msg never contains payload
// values, at most a path.
type SyntaxError struct {
	Offset int64 // byte offset in the input where the problem was found
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("filters: syntax error at offset %d: %s", e.Offset, e.Msg)
}

// maxMaskNodes bounds the trie after wildcard expansion: merging literal
// paths into "*" siblings copies subtrees, and a contract should never need
// anything close to this.
const maxMaskNodes = 1 << 16

// Mask is a compiled allowlist of paths plus transforms. It is immutable
// after Compile and safe for concurrent use: compile it once per decision
// and reuse it for every request.
type Mask struct {
	root     *node
	usesHMAC bool
	// lastPaths is the paths string of a recent JSON report, shared by
	// the next reports that list the same paths (see buildShared).
	lastPaths atomic.Pointer[string]
}

// node is one trie level. Literal children already include what a "*"
// sibling allows (merged at compile time), so matching a key is one map
// lookup and never backtracks.
type node struct {
	children map[string]*node
	lits     []litChild // children again, when there are few
	wild     *node
	keep     bool       // a path ends here: keep the whole subtree
	xf       *Transform // a transform is rooted here
	hasXf    bool       // xf here or anywhere below
	// litPath: a path without "*" leads from here to a kept node. Such a
	// node is sent even when the document has nothing under it (json.filter
	// keeps the containers on a path). A node reached only through "*"
	// exists only for what the document has: expanding "items/*/sku" over
	// an empty items gives no path at all, so items must go.
	litPath bool
}

// litChild is a literal child in a small slice: for the few keys a
// contract names per level, comparing bytes beats hashing them.
type litChild struct {
	key string
	n   *node
}

// maxLinearChildren: a miss, the common case (most keys are not in the
// mask), is mostly a length comparison per child, still cheaper than
// hashing the key at 16.
const maxLinearChildren = 16

// lookup returns the node for a key or index (in its decimal form).
func (n *node) lookup(key []byte) *node {
	if n.lits != nil {
		for i := range n.lits {
			if n.lits[i].key == string(key) {
				return n.lits[i].n
			}
		}
	} else if n.children != nil {
		if c := n.children[string(key)]; c != nil {
			return c
		}
	}
	return n.wild
}

// finalize builds the lookup slices once the trie is complete.
func finalize(n *node) {
	if n == nil {
		return
	}
	if len(n.children) > 0 && len(n.children) <= maxLinearChildren {
		n.lits = make([]litChild, 0, len(n.children))
		for k, c := range n.children {
			n.lits = append(n.lits, litChild{k, c})
		}
	}
	for _, c := range n.children {
		finalize(c)
	}
	finalize(n.wild)
}

// Compile parses field paths and transforms into a Mask. All problems are
// reported at once.
func Compile(fields []string, transforms map[string]string) (*Mask, error) {
	root := &node{}
	var errs []error
	for _, f := range fields {
		segs, err := parsePath(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		insert(root, segs).keep = true
	}
	m := &Mask{root: root}
	// Sorted so that errors (and the trie) do not depend on map order.
	keys := make([]string, 0, len(transforms))
	for k := range transforms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, p := range keys {
		t, err := ParseTransform(transforms[p])
		if err != nil {
			errs = append(errs, fmt.Errorf("filters: transform of %q: %w", p, err))
			continue
		}
		segs, err := parsePath(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := insert(root, segs)
		n.keep = true
		if n.xf != nil && *n.xf != t {
			errs = append(errs, fmt.Errorf("filters: conflicting transforms for %q", p))
			continue
		}
		n.xf = &t
		if t.kind == xfHMAC {
			m.usesHMAC = true
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	computeLitPath(root)
	count := 0
	if err := normalize(root, &count, nil); err != nil {
		return nil, err
	}
	finalize(root)
	return m, nil
}

func insert(n *node, segs []string) *node {
	for _, s := range segs {
		var next *node
		if s == "*" {
			if n.wild == nil {
				n.wild = &node{}
			}
			next = n.wild
		} else {
			if n.children == nil {
				n.children = map[string]*node{}
			}
			next = n.children[s]
			if next == nil {
				next = &node{}
				n.children[s] = next
			}
		}
		n = next
	}
	return n
}

// parsePath splits a json.filter path into unescaped segments.
func parsePath(p string) ([]string, error) {
	s := strings.TrimLeft(p, "/")
	if s == "" {
		return nil, fmt.Errorf("filters: empty path %q", p)
	}
	parts := strings.Split(s, "/")
	for i, part := range parts {
		if part == "" {
			return nil, fmt.Errorf("filters: empty segment in path %q", p)
		}
		if !strings.Contains(part, "~") {
			continue
		}
		var b strings.Builder
		for j := 0; j < len(part); j++ {
			c := part[j]
			if c != '~' {
				b.WriteByte(c)
				continue
			}
			if j+1 < len(part) && part[j+1] == '0' {
				b.WriteByte('~')
			} else if j+1 < len(part) && part[j+1] == '1' {
				b.WriteByte('/')
			} else {
				return nil, fmt.Errorf("filters: bad escape in path %q (use ~0 for ~, ~1 for /)", p)
			}
			j++
		}
		parts[i] = b.String()
	}
	return parts, nil
}

// computeLitPath runs before normalize: once "*" is merged into literal
// siblings, a literal child no longer tells which of its paths are
// wildcard-free.
func computeLitPath(n *node) bool {
	n.litPath = n.keep
	for _, c := range n.children {
		if computeLitPath(c) {
			n.litPath = true
		}
	}
	if n.wild != nil {
		computeLitPath(n.wild)
	}
	return n.litPath
}

// normalize merges each "*" child into its literal siblings, so that a key
// matching both gets the union of what both allow, and computes hasXf.
func normalize(n *node, count *int, path []string) error {
	*count++
	if *count > maxMaskNodes {
		return errors.New("filters: mask too large after wildcard expansion")
	}
	if n.keep && n.xf == nil && n.wild == nil && len(n.children) == 0 {
		return nil
	}
	if n.wild != nil {
		for k, c := range n.children {
			merged, err := merge(c, n.wild, append(path, k))
			if err != nil {
				return err
			}
			n.children[k] = merged
		}
		if err := normalize(n.wild, count, append(path, "*")); err != nil {
			return err
		}
		n.hasXf = n.hasXf || n.wild.hasXf
	}
	for k, c := range n.children {
		if err := normalize(c, count, append(path, k)); err != nil {
			return err
		}
		n.hasXf = n.hasXf || c.hasXf
	}
	n.hasXf = n.hasXf || n.xf != nil
	return nil
}

// merge returns a fresh union of a and b; neither is modified, because b is
// a "*" node shared by every literal sibling.
func merge(a, b *node, path []string) (*node, error) {
	if a == nil && b == nil {
		return nil, nil
	}
	if a == nil {
		return merge(b, nil, path)
	}
	out := &node{keep: a.keep, xf: a.xf, litPath: a.litPath}
	var bw *node
	if b != nil {
		out.keep = out.keep || b.keep
		out.litPath = out.litPath || b.litPath
		if b.xf != nil {
			if out.xf != nil && *out.xf != *b.xf {
				return nil, fmt.Errorf("filters: conflicting transforms for %q", joinPath(path))
			}
			out.xf = b.xf
		}
		bw = b.wild
	}
	w, err := merge(a.wild, bw, append(path, "*"))
	if err != nil {
		return nil, err
	}
	out.wild = w
	for k, c := range a.children {
		var bc *node
		if b != nil {
			bc = b.children[k]
		}
		mc, err := merge(c, bc, append(path, k))
		if err != nil {
			return nil, err
		}
		if out.children == nil {
			out.children = map[string]*node{}
		}
		out.children[k] = mc
	}
	if b != nil {
		for k, c := range b.children {
			if _, done := a.children[k]; done {
				continue
			}
			mc, err := merge(c, nil, append(path, k))
			if err != nil {
				return nil, err
			}
			if out.children == nil {
				out.children = map[string]*node{}
			}
			out.children[k] = mc
		}
	}
	return out, nil
}

func joinPath(segs []string) string {
	var b []byte
	for i, s := range segs {
		if i > 0 {
			b = append(b, '/')
		}
		if s == "*" {
			b = append(b, '*')
			continue
		}
		b = appendSegment(b, s)
	}
	return string(b)
}

// appendSegment writes one path segment with "~" and "/" escaped, so that a
// reported path can be fed back into Compile.
func appendSegment[T ~string | ~[]byte](b []byte, s T) []byte {
	if !needsSegmentEscape(s) {
		// The common case: one copy instead of an append per byte.
		return append(b, s...)
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			b = append(b, '~', '0')
		case '/':
			b = append(b, '~', '1')
		default:
			b = append(b, s[i])
		}
	}
	return b
}

// needsSegmentEscape reports whether s holds a '~' or a '/'.
func needsSegmentEscape[T ~string | ~[]byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '~' || s[i] == '/' {
			return true
		}
	}
	return false
}

// appendKeySegment is appendSegment for a key in the body. It runs for
// every reported path segment, so it looks at eight bytes at a time (the
// generic version compiles to byte loads).
func appendKeySegment(b, s []byte) []byte {
	if len(s) < 8 {
		return appendSegment(b, s)
	}
	for i := 0; ; i += 8 {
		if i+8 > len(s) {
			// The last word overlaps the one before it.
			i = len(s) - 8
		}
		x := binary.LittleEndian.Uint64(s[i:])
		// The classic zero-byte test: exact as to whether there is one.
		t := x ^ (lsb * '~')
		l := x ^ (lsb * '/')
		if ((t-lsb)&^t|(l-lsb)&^l)&msb != 0 {
			return appendSegment(b, s)
		}
		if i+8 == len(s) {
			return append(b, s...)
		}
	}
}
