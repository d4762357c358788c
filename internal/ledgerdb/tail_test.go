package ledgerdb

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCursorFollowsTheWriter: the cursor reads every record once, in
// order, in one call however the writer moved its files meanwhile: a
// rotation, several, and a relocation (the file deleted under the
// writer, its records saved under the rotated name). It never reads past
// the durable head.
func TestCursorFollowsTheWriter(t *testing.T) {
	f := newFixture(t, nil, 2000)
	cur := newCursor(f.path, 0, "")
	next := uint64(1)
	readAll := func(what string) {
		t.Helper()
		head, _ := f.l.Head()
		rs, err := cur.read(100000, 1<<30, head)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, r := range rs {
			if r.seq != next {
				t.Fatalf("%s: seq %d, want %d", what, r.seq, next)
			}
			next++
		}
		if next != head+1 {
			t.Fatalf("%s: read up to %d in one call, the head is %d", what, next-1, head)
		}
	}
	f.add(0, 1)
	readAll("first record")
	rot := f.l.Stats().Rotations
	for f.l.Stats().Rotations == rot {
		f.add(1, 1)
	}
	readAll("after a rotation")
	f.add(2, 20) // several rotations
	readAll("after several rotations")
	if err := os.Remove(f.path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.l.Stats().Relocations == 0 || f.l.Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no relocation: %v", f.l.Err())
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.add(30, 3)
	readAll("after a relocation")
	if rs, err := cur.read(10, 1<<20, next-1); err != nil || len(rs) != 0 {
		t.Fatalf("read past the durable head: %d records, %v", len(rs), err)
	}
}

// TestCursorHoldsTheChain: a cursor started from the database's head
// refuses files that do not continue it.
func TestCursorHoldsTheChain(t *testing.T) {
	f := newFixture(t, nil, 1<<20)
	f.add(0, 5) // 10 records
	lines := f.lines()
	h5 := hashLine(lines[5])
	cases := []struct {
		name string
		seq  uint64
		hash string
		want error
	}{
		{"the database's head record differs", 5, strings.Repeat("0", 64), ErrFork},
		{"the database is ahead of the files", 50, h5, ErrFork},
		{"the head is where the files are", 5, h5, nil},
		{"at the end of the files", 10, hashLine(lines[10]), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := newCursor(f.path, tc.seq, tc.hash)
			rs, err := cur.read(100, 1<<20, 10)
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.want == nil && len(rs) != int(10-tc.seq) {
				t.Fatalf("%d records read from seq %d", len(rs), tc.seq+1)
			}
		})
	}
	// A record removed from the files: the rest is not read as if it
	// followed on.
	b, _ := os.ReadFile(f.path)
	ls := strings.SplitAfter(string(b), "\n")
	if err := f.l.Close(); err != nil {
		t.Fatal(err)
	}
	f.l = nil
	gap := filepath.Join(t.TempDir(), "ledger.jsonl")
	if err := os.WriteFile(gap, []byte(strings.Join(append(ls[:6:6], ls[7:]...), "")), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, err := newCursor(gap, 0, "").read(100, 1<<20, ^uint64(0))
	if !errors.Is(err, errLocal) || len(rs) != 6 {
		t.Fatalf("a dropped record: %d records read, %v", len(rs), err)
	}
}

// FuzzCursor: whatever the ledger's files hold, the cursor neither panics
// nor returns a record that does not follow on from the one before it,
// from the start or from a head in the middle.
func FuzzCursor(f *testing.F) {
	f.Add([]byte(`{"seq":1,"prev":""}`+"\n"+`{"seq":2,"prev":"x"}`+"\n"), uint64(0))
	f.Add([]byte(`{"seq":1,"prev":""}`+"\n"+`{"seq":1,"prev":""}`+"\n{\"seq\":2"), uint64(1))
	f.Add([]byte("\n\n{}\n"), uint64(0))
	f.Add([]byte(`{"seq":18446744073709551615,"prev":""}`+"\n"), uint64(18446744073709551614))
	f.Fuzz(func(t *testing.T, data []byte, head uint64) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, start := range []uint64{0, head} {
			cur := newCursor(path, start, "")
			defer cur.drop()
			rs, _ := cur.read(1000, 1<<20, ^uint64(0))
			for i, r := range rs {
				if r.seq != start+uint64(i)+1 || (i > 0 && r.prev != rs[i-1].hash) {
					t.Fatalf("record %d (seq %d) does not follow on", i, r.seq)
				}
			}
		}
	})
}
