package ledger

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// memHashes is tlog's reference storage: every stored hash.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(ix []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ix))
	for i, x := range ix {
		if x >= int64(len(m)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// TestFrontierMatchesTlog holds the writer's compact tree to tlog's own:
// the same root for every size, and every subtree add reports is the hash
// tlog stores for it.
func TestFrontierMatchesTlog(t *testing.T) {
	var f frontier
	var store memHashes
	var lh leafHasher
	for n := int64(0); n < 600; n++ {
		if got, _ := tlog.TreeHash(n, store); f.root() != got {
			t.Fatalf("size %d: root %v, tlog %v", n, f.root(), got)
		}
		data := fmt.Appendf(nil, "record %d", n)
		if got := lh.sum(data); got != tlog.RecordHash(data) {
			t.Fatalf("leafHasher differs from tlog.RecordHash at %d", n)
		}
		hs, err := tlog.StoredHashes(n, data, store)
		if err != nil {
			t.Fatal(err)
		}
		store = append(store, hs...)
		f.add(leafHash(data), func(nd node, h tlog.Hash) {
			if want := store[tlog.StoredHashIndex(nd.level, nd.index)]; h != want {
				t.Fatalf("size %d: subtree %d/%d hash differs from tlog's", n, nd.level, nd.index)
			}
		})
		g, err := newFrontier(f.n, f.h)
		if err != nil || g.root() != f.root() {
			t.Fatalf("size %d: newFrontier: %v", f.n, err)
		}
		for _, fn := range frontierNodes(f) {
			if want := store[tlog.StoredHashIndex(fn.n.level, fn.n.index)]; fn.h != want {
				t.Fatalf("size %d: frontier node %d/%d is not tlog's", f.n, fn.n.level, fn.n.index)
			}
		}
	}
	if _, err := newFrontier(5, f.h[:1]); err == nil {
		t.Error("newFrontier accepted 1 hash for a tree of 5 (two complete subtrees)")
	}
}
