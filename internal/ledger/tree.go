package ledger

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// The records of a ledger are the leaves of a Merkle tree as RFC 6962/9162
// and golang.org/x/mod/sumdb/tlog define it: leaf i (0-based) is
// tlog.RecordHash of the line of the record with seq i+1, without its
// newline. Checkpoints sign the root of that tree (see checkpoint.go).

// leafHash is the tree leaf of one record line (without its newline).
func leafHash(line []byte) tlog.Hash { return tlog.RecordHash(line) }

// leafHasher is leafHash with one SHA-256 state reused: tlog.RecordHash
// allocates one per call, which the writer would pay per record. Tests hold
// it to tlog.RecordHash.
type leafHasher struct {
	h   hash.Hash
	buf []byte
}

var leafPrefix = []byte{0x00} // RFC 6962: leaves are hashed after a zero byte

func (lh *leafHasher) sum(line []byte) tlog.Hash {
	if lh.h == nil {
		lh.h = sha256.New()
	}
	lh.h.Reset()
	lh.h.Write(leafPrefix)
	lh.h.Write(line)
	lh.buf = lh.h.Sum(lh.buf[:0]) // a local array would escape through the interface
	var out tlog.Hash
	copy(out[:], lh.buf)
	return out
}

// frontier is the tree of n leaves reduced to what appending and the root
// need: the hashes of its maximal complete subtrees, largest (leftmost)
// first, one per set bit of n — at most 64 hashes for any n. tlog stores
// every interior hash (StoredHashes), about two per record; the writer and
// the verifiers keep only this O(log n) "compact range" in memory and
// recompute anything else from the records. Written here because tlog has
// no such type; the hashing is tlog's (NodeHash), and tests hold the roots
// and proofs to tlog.TreeHash and tlog.CheckRecord.
type frontier struct {
	n int64
	h []tlog.Hash
}

// newFrontier checks that hashes fit a tree of n leaves.
func newFrontier(n int64, hashes []tlog.Hash) (frontier, error) {
	if n < 0 {
		return frontier{}, fmt.Errorf("tree size %d", n)
	}
	if want := bits.OnesCount64(uint64(n)); len(hashes) != want {
		return frontier{}, fmt.Errorf("a tree of %d records has %d complete subtrees, got %d hashes", n, want, len(hashes))
	}
	return frontier{n: n, h: append([]tlog.Hash(nil), hashes...)}, nil
}

func (f *frontier) clone() frontier {
	return frontier{n: f.n, h: append([]tlog.Hash(nil), f.h...)}
}

// node names a complete subtree: the 2^level leaves from index<<level.
type node struct {
	level int
	index int64
}

// add appends a leaf. visit, when set, sees every subtree the leaf
// completes, the leaf itself first (level 0): provers collect the hashes an
// inclusion proof needs with it.
func (f *frontier) add(leaf tlog.Hash, visit func(node, tlog.Hash)) {
	h := leaf
	idx := f.n
	if visit != nil {
		visit(node{0, idx}, h)
	}
	// Each trailing one bit of n is a complete subtree of the same size
	// just left of the new leaf: merge them.
	for level := 0; f.n>>uint(level)&1 == 1; level++ {
		h = tlog.NodeHash(f.h[len(f.h)-1], h)
		f.h = f.h[:len(f.h)-1]
		idx >>= 1
		if visit != nil {
			visit(node{level + 1, idx}, h)
		}
	}
	f.h = append(f.h, h)
	f.n++
}

// root is the tree hash of the n leaves (RFC 6962 MTH): the complete
// subtrees folded from the right.
func (f *frontier) root() tlog.Hash {
	if len(f.h) == 0 {
		h, _ := tlog.TreeHash(0, nil) // SHA-256 of nothing, per RFC 6962
		return h
	}
	r := f.h[len(f.h)-1]
	for i := len(f.h) - 2; i >= 0; i-- {
		r = tlog.NodeHash(f.h[i], r)
	}
	return r
}

// Tree is the records' Merkle tree in the compact form the writer keeps
// (see frontier), for verifiers of a copy of the records held elsewhere —
// the fleet's database (internal/ledgerdb) recomputes every shipped
// checkpoint's root with it. The zero Tree is the tree of no records.
type Tree struct{ f frontier }

// NewTree continues the tree of size records from its frontier (the
// Frontier of the LogEntry of that size).
func NewTree(size int64, hashes []tlog.Hash) (*Tree, error) {
	f, err := newFrontier(size, hashes)
	if err != nil {
		return nil, err
	}
	return &Tree{f}, nil
}

// Add appends the record whose line (without its newline) is line.
func (t *Tree) Add(line []byte) { t.f.add(leafHash(line), nil) }

// Size is the number of records in the tree.
func (t *Tree) Size() int64 { return t.f.n }

// Root is the tree hash a checkpoint of Size records signs.
func (t *Tree) Root() tlog.Hash { return t.f.root() }
