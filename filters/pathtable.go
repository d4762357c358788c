package filters

import "hash/maphash"

// pathTable interns normalised report paths as (parent id, segment) pairs,
// so that the elements of an array, which all report the same paths, find
// their entries by hashing one key instead of rebuilding, hashing and
// comparing the whole path for every element. Segments are unescaped keys,
// or "*" for an array index: the normalised path string is a function of
// that sequence and determines it, so equal ids mean equal paths.
type pathTable struct {
	ents []pathEnt
	// links holds, beside each entry, what the JSON walker keeps about it
	// (only when linked): the form's prefix counters do without, and its
	// entries cost 16 bytes instead of 40.
	links  []pathLinks
	linked bool
	keys   []byte
	slots  []int32 // indices into ents, 0 = empty; a power of two in size
	nslots int     // entries in slots
	seed   maphash.Seed
	steps  int // work done, as in jsonWalker.steps: bytes hashed and compared, probes
}

// pathEnt is one interned path. Offsets are int32: inputs stay below
// maxInput.
type pathEnt struct {
	parent       int32 // ids stay far below 2^31: each is a distinct member of the body
	hash         uint32
	kStart, kEnd int32
	indexed      bool // in slots (intern), else found by other means (add)
}

// pathLinks is the JSON walker's part of an entry.
type pathLinks struct {
	// spans holds, per report list, 1 + the index of this path's span in
	// that list. It is trusted only while that span still names this
	// entry as its owner, so that a rollback of the report (which only
	// truncates the lists) needs no bookkeeping here.
	spans [numLists]int32
	// first is the child interned first the last time this path was an
	// object, next the sibling interned after this one: the guesses of
	// internPredicted.
	first, next int32
}

// pathRoot is the id of the empty path; entry 0 is unused so that a zero
// span owner and an empty slot mean "none".
const (
	pathNone int32 = 0
	pathRoot int32 = 1
)

const minPathSlots = 64

func (t *pathTable) reset() {
	switch {
	case len(t.ents) == 0:
		// A zero seed would make maphash panic; a per-walker random seed
		// keeps a hostile body from aiming for collisions.
		t.seed = maphash.MakeSeed()
		t.slots = make([]int32, minPathSlots)
	case len(t.ents)*16 < len(t.slots):
		// The slots grew for an earlier, larger call: clearing them all
		// would make every later call pay for that one. Clear only the
		// slots in use, found as intern found them.
		mask := len(t.slots) - 1
		for id := 2; id < len(t.ents); id++ {
			if !t.ents[id].indexed {
				continue
			}
			i := int(t.ents[id].hash) & mask
			for t.slots[i] != int32(id) {
				i = (i + 1) & mask
			}
			t.slots[i] = 0
		}
	case len(t.ents) > 2:
		clear(t.slots)
	}
	t.ents = append(t.ents[:0], pathEnt{}, pathEnt{})
	if t.linked {
		t.links = append(t.links[:0], pathLinks{}, pathLinks{})
	}
	t.keys = t.keys[:0]
	t.steps, t.nslots = 0, 0
}

// internPredicted is intern for the member of an object that follows the
// member prev (pathNone for the first one): the key that followed prev last
// time is checked first, so repeated array elements cost a comparison
// instead of a hash.
func (t *pathTable) internPredicted(parent int32, seg []byte, prev int32) int32 {
	link := &t.links[parent].first
	if prev != pathNone {
		link = &t.links[prev].next
	}
	if g := *link; g != pathNone {
		e := &t.ents[g]
		t.steps += len(seg)
		if e.parent == parent && string(t.keys[e.kStart:e.kEnd]) == string(seg) {
			return g
		}
	}
	id := t.intern(parent, seg)
	// intern may have grown links: take the link again.
	if prev != pathNone {
		t.links[prev].next = id
	} else {
		t.links[parent].first = id
	}
	return id
}

// intern returns the id of the path parent + "/" + seg.
func (t *pathTable) intern(parent int32, seg []byte) int32 {
	h := uint32(maphash.Bytes(t.seed, seg)) ^ uint32(parent)*0x9E3779B1
	mask := len(t.slots) - 1
	i := int(h) & mask
	t.steps += 2 * len(seg)
	for {
		t.steps++
		s := t.slots[i]
		if s == 0 {
			break
		}
		e := &t.ents[s]
		if e.hash == h && e.parent == parent && string(t.keys[e.kStart:e.kEnd]) == string(seg) {
			return s
		}
		i = (i + 1) & mask
	}
	id := int32(len(t.ents))
	start := int32(len(t.keys))
	t.keys = append(t.keys, seg...)
	t.ents = append(t.ents, pathEnt{parent: parent, hash: h, kStart: start, kEnd: int32(len(t.keys)), indexed: true})
	if t.linked {
		t.links = append(t.links, pathLinks{})
	}
	t.slots[i] = id
	// Keep the load at most one half so that probes stay short.
	if t.nslots++; 2*t.nslots > len(t.slots) {
		t.grow()
	}
	return id
}

// add makes an entry for parent + seg without indexing it: the caller
// finds it again by other means (formState.internEmpty).
func (t *pathTable) add(parent int32, seg []byte) int32 {
	id := int32(len(t.ents))
	start := int32(len(t.keys))
	t.keys = append(t.keys, seg...)
	t.ents = append(t.ents, pathEnt{parent: parent, kStart: start, kEnd: int32(len(t.keys))})
	if t.linked {
		t.links = append(t.links, pathLinks{})
	}
	t.steps += len(seg) + 1
	return id
}

func (t *pathTable) grow() {
	t.steps += len(t.slots) + len(t.ents)
	slots := make([]int32, 2*len(t.slots))
	mask := len(slots) - 1
	for id := 2; id < len(t.ents); id++ {
		if !t.ents[id].indexed {
			continue
		}
		i := int(t.ents[id].hash) & mask
		for slots[i] != 0 {
			i = (i + 1) & mask
		}
		slots[i] = int32(id)
	}
	t.slots = slots
}
