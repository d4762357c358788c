package filters

import (
	"hash/maphash"
	"sync/atomic"
)

// Report says what a filter did, for the disclosure ledger. Paths use the
// mask syntax with array indices (and numeric form indices) written as "*",
// deduplicated, in document order. Reports never contain values.
type Report struct {
	// Kept lists what was sent: kept leaves and the roots of kept subtrees,
	// transformed ones included.
	Kept []string
	// Removed lists the topmost removed nodes.
	Removed []string
	// Transformed lists the roots where a transform applied.
	Transformed []string
	// Cards lists where the card guard redacted a card number.
	Cards []string
	// RemovedCount counts removed nodes before normalisation and
	// deduplication: ten removed array elements count ten. In a form, the
	// pairs under one removed name prefix (customer[email],
	// customer[phone]...) are one node, as they would be in JSON.
	RemovedCount int
	// Truncated is set when the JSON paths would have taken more than
	// twice the body's size plus 8 KiB to list, and the lists stop
	// where the budget ran out (RemovedCount stays exact). Only a
	// hostile body gets there: each path repeats the keys above it, so
	// many members under a long key made of a 1 MB body a report of
	// gigabytes. The filtered body is unaffected; a caller that must
	// list every path refuses the request instead. (omitempty: a report
	// that lists everything serialises as it did before the field.)
	Truncated bool `json:",omitempty"`
}

// reportBudget is the most path bytes a JSON report of a body of n bytes
// writes, counting those rolled back (see Report.Truncated).
func reportBudget(n int) int { return 2*n + 8<<10 }

type listKind uint8

const (
	listKept listKind = iota
	listRemoved
	listTransformed
	listCards
	numLists
)

// reportBuilder collects paths into one byte buffer and turns them into
// strings with a single allocation at the end, since a large body can report
// thousands of (mostly duplicate) paths.
type reportBuilder struct {
	buf   []byte
	spans [numLists][]span
	// dedup indexes the spans added through add (those that may repeat);
	// a hash set of them takes over when there are many.
	dedup [numLists][]int32
	sets  [numLists]spanSet
	seed  maphash.Seed // for the hashes of spans added through add
	count int
	// written counts the path bytes ever written, rolled back or not; a
	// budget above zero caps it (see Report.Truncated).
	written, budget int
	truncated       bool
}

// charge accounts for the path just written at buf[start:]. Past the
// budget it takes the path back, and every later one is refused too, so
// that the bytes written stay within the budget plus one path.
func (r *reportBuilder) charge(start int) bool {
	r.written += len(r.buf) - start
	if r.budget > 0 && r.written > r.budget {
		r.buf = r.buf[:start]
		r.truncated = true
		return false
	}
	return true
}

type span struct {
	start, end int
	hash       uint32
	owner      int32 // the pathTable entry that added it (JSON), or pathNone
}

// linearDedupMax is how many repeatable paths a list holds before dedup
// switches from a scan to a hash set; typical contracts stay below it.
const linearDedupMax = 32

// spanSet is an open-addressing set of indices into one span list, keyed
// by the spans' hashes. A map[string]struct{} copied every path and
// allocated for it.
type spanSet struct {
	slots []spanSlot // a power of two in size
	used  int
}

// spanSlot holds the hash beside the index, so that a probe past other
// paths reads only the slots: each span it read was a cache miss once the
// report outgrew the cache.
type spanSlot struct {
	hash uint32
	idx  int32 // 1 + the span's index, 0 = empty
}

// add records path p (already normalised) in list k unless present.
func (r *reportBuilder) add(k listKind, p []byte) {
	if r.seed == (maphash.Seed{}) {
		// Seeded, so that a client cannot choose paths that collide.
		r.seed = maphash.MakeSeed()
	}
	h := uint32(maphash.Bytes(r.seed, p))
	set := &r.sets[k]
	slot := -1
	if set.slots != nil {
		mask := len(set.slots) - 1
		i := int(h) & mask
		for ; set.slots[i].idx != 0; i = (i + 1) & mask {
			if set.slots[i].hash == h && r.sameSpan(k, set.slots[i].idx-1, h, p) {
				return
			}
		}
		slot = i
	} else {
		for _, i := range r.dedup[k] {
			if r.sameSpan(k, i, h, p) {
				return
			}
		}
	}
	r.addUnique(k, p)
	idx := int32(len(r.spans[k]) - 1)
	r.spans[k][idx].hash = h
	r.dedup[k] = append(r.dedup[k], idx)
	switch {
	case slot >= 0:
		set.slots[slot] = spanSlot{hash: h, idx: idx + 1}
		if set.used++; 2*set.used > len(set.slots) {
			r.rebuildSet(k, 2*len(set.slots))
		}
	case len(r.dedup[k]) > linearDedupMax:
		r.rebuildSet(k, 4*linearDedupMax)
	}
}

func (r *reportBuilder) sameSpan(k listKind, i int32, h uint32, p []byte) bool {
	s := r.spans[k][i]
	return s.hash == h && string(r.buf[s.start:s.end]) == string(p)
}

// rebuildSet indexes every span of list k added through add in a set of
// n slots (n a power of two, more than twice as many).
func (r *reportBuilder) rebuildSet(k listKind, n int) {
	set := &r.sets[k]
	if cap(set.slots) >= n {
		set.slots = set.slots[:n]
		clear(set.slots)
	} else {
		set.slots = make([]spanSlot, n)
	}
	mask := n - 1
	for _, idx := range r.dedup[k] {
		h := r.spans[k][idx].hash
		i := int(h) & mask
		for set.slots[i].idx != 0 {
			i = (i + 1) & mask
		}
		set.slots[i] = spanSlot{hash: h, idx: idx + 1}
	}
	set.used = len(r.dedup[k])
}

// addUnique records p, which the caller knows is not in list k and will
// not be added again.
func (r *reportBuilder) addUnique(k listKind, p []byte) {
	start := len(r.buf)
	r.buf = append(r.buf, p...)
	r.spans[k] = append(r.spans[k], span{start: start, end: len(r.buf)})
}

type reportMark struct {
	buf, count int
	lens       [numLists]int
	dedup      [numLists]int
}

func (r *reportBuilder) mark() reportMark {
	m := reportMark{buf: len(r.buf), count: r.count}
	for k := range r.spans {
		m.lens[k] = len(r.spans[k])
		m.dedup[k] = len(r.dedup[k])
	}
	return m
}

// rollback forgets what was added since m.
func (r *reportBuilder) rollback(m reportMark) {
	for k := range r.spans {
		drop := len(r.dedup[k]) > m.dedup[k]
		r.dedup[k] = r.dedup[k][:m.dedup[k]]
		r.spans[k] = r.spans[k][:m.lens[k]]
		if drop && r.sets[k].slots != nil {
			// Only the JSON walker rolls back, and it never adds
			// through add: this keeps the two usable together all the
			// same, at the cost of a rebuild.
			r.rebuildSet(listKind(k), len(r.sets[k].slots))
		}
	}
	r.buf = r.buf[:m.buf]
	r.count = m.count
}

func (r *reportBuilder) reset() {
	r.buf = r.buf[:0]
	for i := range r.spans {
		r.spans[i] = r.spans[i][:0]
		r.dedup[i] = r.dedup[i][:0]
		// A set much larger than this call needed was grown by an
		// earlier one: dropped rather than cleared, so that no call
		// pays for another.
		switch set := &r.sets[i]; {
		case set.used == 0:
		case set.used*8 < len(set.slots) || len(set.slots) > 1<<16:
			set.slots = nil
		default:
			clear(set.slots)
		}
		r.sets[i].used = 0
	}
	r.count = 0
	r.written, r.budget, r.truncated = 0, 0, false
}

func (r *reportBuilder) build() *Report { return r.buildShared(nil) }

// maxSharedPaths keeps a huge report from being pinned by its Mask, and
// the comparison with the cached string cheap next to building the report.
const maxSharedPaths = 4 << 10

// buildShared is build with a cache of the last paths string: the reports
// of one mask tend to repeat from request to request (a vendor's traffic
// has few shapes), and when they do the string is shared instead of
// allocated again. Strings are immutable, so sharing them between reports
// is invisible to callers; allocation is most of a small body's cost, since
// it drives how often the garbage collector runs.
func (r *reportBuilder) buildShared(cache *atomic.Pointer[string]) *Report {
	n := 0
	for _, l := range r.spans {
		n += len(l)
	}
	if n == 0 {
		return &Report{RemovedCount: r.count, Truncated: r.truncated}
	}
	// One string for every path, and the Report allocated together with
	// the backing array of its four lists when they are small.
	var rep *Report
	var strs []string
	switch {
	case n <= 8:
		p := new(struct {
			Report
			s [8]string
		})
		rep, strs = &p.Report, p.s[:n]
	case n <= 32:
		p := new(struct {
			Report
			s [32]string
		})
		rep, strs = &p.Report, p.s[:n]
	default:
		rep, strs = new(Report), make([]string, n)
	}
	rep.RemovedCount, rep.Truncated = r.count, r.truncated
	var all string
	if cache != nil && len(r.buf) <= maxSharedPaths {
		if p := cache.Load(); p != nil && *p == string(r.buf) {
			all = *p
		} else {
			s := string(r.buf) // a separate variable, so only a miss allocates it
			cache.Store(&s)
			all = s
		}
	} else {
		all = string(r.buf)
	}
	lists := [numLists]*[]string{&rep.Kept, &rep.Removed, &rep.Transformed, &rep.Cards}
	i := 0
	for k, l := range r.spans {
		if len(l) == 0 {
			continue
		}
		for j, s := range l {
			strs[i+j] = all[s.start:s.end]
		}
		*lists[k] = strs[i : i+len(l) : i+len(l)]
		i += len(l)
	}
	return rep
}
