package ledger

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// shipPrefix does what the fleet shipper does once the database confirmed
// records 1..n (n the last seq of a rotated file): sign the marker with
// the ledger's key, write it, then delete the files that held them.
func shipPrefix(t testing.TB, path string, s note.Signer, files []string) *Shipped {
	t.Helper()
	last := files[len(files)-1]
	seq, err := rotatedSeq(path, last)
	if err != nil {
		t.Fatal(err)
	}
	m := shippedMarker(t, path, seq)
	msg, err := SignShipped(s, *m)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteShipped(path, msg); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// shippedMarker is the marker of records 1..seq, from the checkpoint log
// entry of that size.
func shippedMarker(t testing.TB, path string, seq uint64) *Shipped {
	t.Helper()
	entries, err := ReadCheckpointLog(CheckpointLogName(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if uint64(e.Size) == seq {
			cp, err := ParseCheckpoint([]byte(e.Checkpoint))
			if err != nil {
				t.Fatal(err)
			}
			return &Shipped{Origin: cp.Origin, Seq: seq, Last: e.Last, Root: cp.Root,
				Time: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC), Sink: "postgres://db.example:5432/pare"}
		}
	}
	t.Fatalf("no checkpoint log entry of size %d", seq)
	return nil
}

func auditShipped(t testing.TB, path string, v ...note.Verifier) (*VerifyResult, *Evidence) {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	opt := AuditOptions{Verifiers: v, Log: CheckpointLogName(path)}
	if b, err := os.ReadFile(ShippedName(path)); err == nil {
		opt.Shipped = b
	}
	res, ev, err := Audit(files, opt)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return res, ev
}

func TestShippedMarkerRoundTrip(t *testing.T) {
	s, v := testKey(t)
	m := Shipped{Origin: OriginPrefix + "0123", Seq: 42, Last: strings.Repeat("ab", 32),
		Root: tlog.RecordHash([]byte("x")), Time: time.Date(2026, 11, 2, 10, 0, 0, 123, time.UTC), Sink: "postgres://db:5432/pare"}
	msg, err := SignShipped(s, m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenShipped(msg, v)
	if err != nil {
		t.Fatal(err)
	}
	if got.Origin != m.Origin || got.Seq != m.Seq || got.Last != m.Last || got.Root != m.Root || !got.Time.Equal(m.Time) || got.Sink != m.Sink {
		t.Fatalf("round trip: %+v, want %+v", got, m)
	}
	_, other := testKey(t)
	if _, err := OpenShipped(msg, other); err == nil {
		t.Error("a marker accepted under another key")
	}
	if _, err := OpenShipped(msg); err != nil {
		t.Errorf("unchecked parse: %v", err)
	}
	// A checkpoint is not a marker, and a marker is not a checkpoint,
	// though the same key signs both.
	cpMsg, _ := note.Sign(&note.Note{Text: checkpointText(m.Origin, 42, m.Root)}, s)
	if _, err := OpenShipped(cpMsg, v); err == nil {
		t.Error("a checkpoint read as a shipped marker")
	}
	if _, err := OpenCheckpoint(msg, v); err == nil {
		t.Error("a shipped marker read as a checkpoint")
	}
	for _, bad := range []Shipped{
		{Origin: "", Seq: 1, Last: m.Last, Sink: "s"},
		{Origin: "o", Seq: 0, Last: m.Last, Sink: "s"},
		{Origin: "o", Seq: 1, Last: "short", Sink: "s"},
		{Origin: "o", Seq: 1, Last: m.Last, Sink: "two words"},
		{Origin: "o\nx", Seq: 1, Last: m.Last, Sink: "s"},
	} {
		if _, err := SignShipped(s, bad); err == nil {
			t.Errorf("signed a bad marker %+v", bad)
		}
	}
}

// TestAuditWithShippedMarker: files deleted once shipped verify with the
// signed marker that accounts for them — and only with it: every way
// someone with the ledger's volume but not its key could use a marker to
// hide a deletion is refused.
func TestAuditWithShippedMarker(t *testing.T) {
	s, v := testKey(t)
	forger, _ := testKey(t)
	t.Run("accounted for", func(t *testing.T) {
		path, _ := evidenceLedger(t, s, 40)
		files, _ := Files(path)
		m := shipPrefix(t, path, s, files[:2])
		res, ev := auditShipped(t, path, v)
		if !res.OK || !ev.OK || ev.Shipped == nil || ev.Shipped.Seq != m.Seq || !ev.Signed {
			t.Fatalf("evidence %+v", ev)
		}
		if res.FirstSeq != m.Seq+1 || ev.Latest == nil || ev.Latest.Size != 40 {
			t.Fatalf("result %+v evidence %+v", res, ev)
		}
	})
	t.Run("every rotated file shipped, the current one empty", func(t *testing.T) {
		path, _ := evidenceLedger(t, s, 40)
		files, _ := Files(path)
		last := files[len(files)-1]
		if last == path {
			files = files[:len(files)-1]
			// Make the current file empty as after a rotation: move its
			// records into a rotated file of their own.
			lines := readLines(t, path)
			var r Record
			if err := json.Unmarshal(lines[len(lines)-1], &r); err != nil {
				t.Fatal(err)
			}
			rot := RotatedName(path, r.Seq)
			if err := os.Rename(path, rot); err != nil {
				t.Fatal(err)
			}
			writeLines(t, path, nil)
			files = append(files, rot)
		}
		shipPrefix(t, path, s, files)
		if _, ev := auditShipped(t, path, v); !ev.OK || ev.Shipped == nil || ev.Shipped.Seq != 40 {
			t.Fatalf("evidence %+v", ev)
		}
	})
	cases := []struct {
		name    string
		attack  func(t *testing.T, path string, files []string)
		problem Problem
	}{
		{"one more file deleted than shipped", func(t *testing.T, path string, files []string) {
			shipPrefix(t, path, s, files[:1])
			if err := os.Remove(files[1]); err != nil {
				t.Fatal(err)
			}
		}, ProblemMissingStart},
		{"a marker signed with another key", func(t *testing.T, path string, files []string) {
			shipPrefix(t, path, forger, files[:2])
		}, ProblemCheckpoint},
		{"the marker of an earlier shipment reused", func(t *testing.T, path string, files []string) {
			seq, _ := rotatedSeq(path, files[0])
			msg, _ := SignShipped(s, *shippedMarker(t, path, seq))
			shipPrefix(t, path, s, files[:2])
			if err := WriteShipped(path, msg); err != nil {
				t.Fatal(err)
			}
		}, ProblemMissingStart},
		{"a marker of another ledger", func(t *testing.T, path string, files []string) {
			seq, _ := rotatedSeq(path, files[1])
			m := shippedMarker(t, path, seq)
			m.Origin = OriginPrefix + "another"
			msg, _ := SignShipped(s, *m)
			shipPrefix(t, path, s, files[:2])
			if err := WriteShipped(path, msg); err != nil {
				t.Fatal(err)
			}
		}, ProblemCheckpoint},
		{"a marker whose root is not the checkpoint's", func(t *testing.T, path string, files []string) {
			seq, _ := rotatedSeq(path, files[1])
			m := shippedMarker(t, path, seq)
			m.Root[0] ^= 1
			msg, _ := SignShipped(s, *m)
			shipPrefix(t, path, s, files[:2])
			if err := WriteShipped(path, msg); err != nil {
				t.Fatal(err)
			}
		}, ProblemCheckpoint},
		{"the first remaining file rewritten and rechained", func(t *testing.T, path string, files []string) {
			shipPrefix(t, path, s, files[:1])
			lines := readLines(t, files[1])
			lines[0] = []byte(strings.Replace(string(lines[0]), `"purpose":"payment"`, `"purpose":"fraud"`, 1))
			writeLines(t, files[1], lines)
			rest, _ := Files(path)
			rechainFrom(t, rest, shippedMarker(t, path, mustRotatedSeq(t, path, files[0])).Last)
		}, ProblemRewritten},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, _ := evidenceLedger(t, s, 40)
			files, _ := Files(path)
			tc.attack(t, path, files)
			res, ev := auditShipped(t, path, v)
			if !res.OK {
				t.Fatalf("audit stopped at the chain: %s", res.Bad)
			}
			if ev.OK || ev.Problem != tc.problem {
				t.Fatalf("evidence %+v, want problem %s", ev, tc.problem)
			}
			t.Logf("%s: %s", ev.Problem, ev.Detail)
		})
	}
}

func mustRotatedSeq(t testing.TB, path, name string) uint64 {
	t.Helper()
	seq, err := rotatedSeq(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// rechainFrom is rechain for files that begin after prev.
func rechainFrom(t testing.TB, files []string, prev string) {
	t.Helper()
	last := prev
	for _, f := range files {
		lines := readLines(t, f)
		for i, l := range lines {
			l = []byte(strings.TrimSuffix(string(l), "\n"))
			k := strings.LastIndex(string(l), `"prev":"`)
			nl := append(append([]byte(nil), l[:k]...), `"prev":"`+last+`"}`...)
			lines[i] = nl
			last = hashLine(nl)
		}
		writeLines(t, f, lines)
	}
}

func TestTreeMatchesTlog(t *testing.T) {
	var tr Tree
	var store memHashes
	for n := int64(0); n < 100; n++ {
		if got, _ := tlog.TreeHash(n, store); tr.Root() != got || tr.Size() != n {
			t.Fatalf("size %d: root %v, tlog %v", n, tr.Root(), got)
		}
		data := []byte(strings.Repeat("r", int(n)))
		hs, err := tlog.StoredHashes(n, data, store)
		if err != nil {
			t.Fatal(err)
		}
		store = append(store, hs...)
		tr.Add(data)
		// A tree continued from a frontier is the same tree.
		c, err := NewTree(tr.Size(), tr.f.h)
		if err != nil || c.Root() != tr.Root() {
			t.Fatalf("NewTree at %d: %v", tr.Size(), err)
		}
	}
	if _, err := NewTree(3, nil); err == nil {
		t.Error("a tree of 3 records from no hashes")
	}
}

// FuzzOpenShipped: whatever a marker file holds, OpenShipped neither
// panics nor accepts what SignShipped would not write.
func FuzzOpenShipped(f *testing.F) {
	s, _ := testKey(f)
	good, _ := SignShipped(s, Shipped{Origin: OriginPrefix + "x", Seq: 7, Last: strings.Repeat("0f", 32),
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Sink: "postgres://h:5432/d"})
	f.Add(good)
	f.Add([]byte("pare-ledger shipped\n\n\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, msg []byte) {
		m, err := OpenShipped(msg)
		if err != nil {
			return
		}
		if _, err := SignShipped(s, *m); err != nil {
			t.Fatalf("accepted a marker SignShipped refuses: %v", err)
		}
	})
}
