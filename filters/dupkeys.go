package filters

import "hash/maphash"

// dupTable finds duplicate keys in large JSON objects: an open-addressing
// set of indices into jsonWalker.keys, shared by every open object of one
// call and told apart by a tag per object. A map[string]struct{} per object
// copied every key and allocated for it: 27 bytes allocated per byte of a
// body of small keys, and three cache misses per key once it outgrew the
// cache. Here a key costs one hash, one probe sequence, 12 bytes of slot at
// a load of at most one half, and no allocation.
//
// When an object closes its entries stay, matching nothing (its tag is not
// used again), until the outermost open object using the table closes and
// the table is emptied: so it holds at most the keys of one outermost large
// object and those nested in it, and records of an array reuse the same
// few slots.
type dupTable struct {
	slots []dupSlot // a power of two in size, or nil
	used  int
	pos   []int32 // the slots in use, to empty them without a full clear
	open  int     // open objects using the table
	seed  maphash.Seed
	tags  int32 // the last tag handed out
	steps int   // work, as in jsonWalker.steps
}

type dupSlot struct {
	hash uint32
	tag  int32 // the object's tag; 0: an empty slot
	idx  int32 // the key's index in jsonWalker.keys
}

const minDupSlots = 256

// newTag starts an object in the table.
func (t *dupTable) newTag() int32 {
	if t.slots == nil {
		t.slots = make([]dupSlot, minDupSlots)
		t.seed = maphash.MakeSeed()
	}
	t.tags++
	t.open++
	return t.tags
}

// closeTag ends an object that newTag started.
func (t *dupTable) closeTag() {
	if t.open--; t.open == 0 {
		t.empty()
	}
}

// empty clears the slots in use.
func (t *dupTable) empty() {
	t.steps += len(t.pos)
	for _, i := range t.pos {
		t.slots[i] = dupSlot{}
	}
	t.pos, t.used = t.pos[:0], 0
}

// insert adds key kb, at index idx of w.keys, to the object tagged tag,
// unless the object already holds it: then it reports true and adds
// nothing. The keys it compares with are read through w.
func (t *dupTable) insert(tag int32, idx int, kb []byte, w *jsonWalker) (dup bool) {
	h := uint32(maphash.Bytes(t.seed, kb))
	mask := len(t.slots) - 1
	// The tag is mixed into the position so that the same keys in many
	// objects (records of an array) do not pile up in one cluster.
	i := int(h^uint32(tag)*0x9E3779B1) & mask
	t.steps += len(kb)
	for {
		t.steps++
		s := &t.slots[i]
		if s.tag == 0 {
			break
		}
		if s.tag == tag && s.hash == h {
			t.steps += len(kb)
			if string(w.keyBytes(w.keys[s.idx])) == string(kb) {
				return true
			}
		}
		i = (i + 1) & mask
	}
	t.slots[i] = dupSlot{hash: h, tag: tag, idx: int32(idx)}
	t.pos = append(t.pos, int32(i))
	t.used++
	if 2*t.used > len(t.slots) {
		t.grow()
	}
	return false
}

func (t *dupTable) grow() {
	t.steps += 3 * len(t.slots)
	slots := make([]dupSlot, 2*len(t.slots))
	mask := len(slots) - 1
	for j, p := range t.pos {
		s := t.slots[p]
		i := int(s.hash^uint32(s.tag)*0x9E3779B1) & mask
		for slots[i].tag != 0 {
			i = (i + 1) & mask
		}
		slots[i] = s
		t.pos[j] = int32(i)
	}
	t.slots = slots
}

// reset empties the table for the next call (a call in error leaves
// objects open), and drops a large one rather than keep it pooled.
func (t *dupTable) reset() {
	if len(t.slots) > maxPooledBuf/12 || cap(t.pos) > maxPooledBuf/4 {
		t.slots, t.pos, t.used = nil, nil, 0
	} else if t.used > 0 {
		t.empty()
	}
	t.open, t.tags, t.steps = 0, 0, 0
}
