package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

func testKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// evidenceLedger writes n records with checkpoints every 7 records into
// several files (rotation at 4000 bytes) and closes it. It returns the
// ledger path and the witness file.
func evidenceLedger(t testing.TB, s note.Signer, n int) (path, witness string) {
	t.Helper()
	dir := t.TempDir()
	path = filepath.Join(dir, "ledger.jsonl")
	witness = filepath.Join(t.TempDir(), "witness")
	l := openT(t, path, Options{Signer: s, CheckpointEvery: 7, MaxBytes: 4000, WitnessPath: witness})
	appendN(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, witness
}

func audit(t testing.TB, path, witness string, v ...note.Verifier) (*VerifyResult, *Evidence) {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	opt := AuditOptions{Verifiers: v, Log: CheckpointLogName(path)}
	if witness != "" {
		if opt.Witness, err = os.ReadFile(witness); err != nil {
			t.Fatal(err)
		}
	}
	res, ev, err := Audit(files, opt)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	return res, ev
}

func readLines(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t testing.TB, name string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, bytes.TrimSuffix(l, []byte("\n"))...)
		b = append(b, '\n')
	}
	if len(lines) == 0 {
		b = nil
	}
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rechain rewrites every prev of files from the first line on, as an
// attacker who edited a record would, so that the chain verifies again.
func rechain(t testing.TB, files []string) {
	t.Helper()
	last := ""
	for _, f := range files {
		lines := readLines(t, f)
		for i, l := range lines {
			l = bytes.TrimSuffix(l, []byte("\n"))
			k := bytes.LastIndex(l, []byte(`"prev":"`))
			nl := append(append([]byte(nil), l[:k]...), `"prev":"`+last+`"}`...)
			lines[i] = nl
			last = hashLine(nl)
		}
		writeLines(t, f, lines)
	}
}

func TestCheckpointsVerify(t *testing.T) {
	s, v := testKey(t)
	t.Run("empty ledger", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		if err := openT(t, path, Options{Signer: s}).Close(); err != nil {
			t.Fatal(err)
		}
		if _, ev := audit(t, path, "", v); !ev.OK || ev.Latest == nil || ev.Latest.Size != 0 || ev.Checked != 1 {
			t.Fatalf("evidence of an empty signed ledger: %+v", ev)
		}
	})
	path, witness := evidenceLedger(t, s, 40)
	res, ev := audit(t, path, witness, v)
	if !res.OK || !ev.OK {
		t.Fatalf("intact ledger: chain %+v evidence %+v", res.Bad, ev)
	}
	if ev.Latest == nil || ev.Latest.Size != 40 || ev.After != 0 || ev.Witness == nil || ev.Witness.Size != 40 {
		t.Errorf("evidence %+v: want the final checkpoint of 40 records, from the witness too", ev)
	}
	if ev.Checked < 5 {
		t.Errorf("only %d checkpoints checked", ev.Checked)
	}
	if !strings.HasPrefix(ev.Origin, OriginPrefix) || len(ev.Origin) != len(OriginPrefix)+32 {
		t.Errorf("origin %q", ev.Origin)
	}
	files, _ := Files(path)
	if len(files) < 3 {
		t.Fatalf("want rotated files, got %v", files)
	}
	// Another key does not verify.
	_, other := testKey(t)
	if _, ev := audit(t, path, witness, other); ev.OK || ev.Problem != ProblemCheckpoint {
		t.Errorf("checkpoints accepted under another key: %+v", ev)
	}
}

// TestAttacksDetected: what someone with write access to the ledger's
// volume can do. The hash chain alone (Verify) accepts each of these; held
// to the signed checkpoints (Audit), each is named.
func TestAttacksDetected(t *testing.T) {
	s, v := testKey(t)
	forger, _ := testKey(t)
	cases := []struct {
		name    string
		attack  func(t *testing.T, path string)
		witness bool // hold the files to the witness too
		chainOK bool // Verify (the chain alone) is fooled
		problem Problem
	}{
		{"newest records cut, log intact", func(t *testing.T, path string) {
			lines := readLines(t, path)
			writeLines(t, path, lines[:len(lines)-3])
		}, false, true, ProblemTruncated},
		{"newest records and the log's newest checkpoints cut", func(t *testing.T, path string) {
			lines := readLines(t, path)
			writeLines(t, path, lines[:len(lines)-3])
			cutLogAbove(t, path, 30)
		}, true, true, ProblemTruncated},
		{"oldest rotated file deleted", func(t *testing.T, path string) {
			files, _ := Files(path)
			if err := os.Remove(files[0]); err != nil {
				t.Fatal(err)
			}
		}, false, true, ProblemMissingStart},
		{"a record rewritten and the chain recomputed", func(t *testing.T, path string) {
			files, _ := Files(path)
			lines := readLines(t, files[0])
			lines[2] = bytes.Replace(lines[2], []byte(`"vendor":"stripe"`), []byte(`"vendor":"acme"`), 1)
			writeLines(t, files[0], lines)
			rechain(t, files)
		}, true, true, ProblemRewritten},
		{"rewritten, rechained, and the log re-signed with another key", func(t *testing.T, path string) {
			files, _ := Files(path)
			lines := readLines(t, files[1])
			lines[0] = bytes.Replace(lines[0], []byte(`"purpose":"payment"`), []byte(`"purpose":"fraud"`), 1)
			writeLines(t, files[1], lines)
			rechain(t, files)
			resignLog(t, path, forger)
		}, false, true, ProblemCheckpoint},
		{"every file and the log deleted but the newest file", func(t *testing.T, path string) {
			files, _ := Files(path)
			for _, f := range files[:len(files)-1] {
				_ = os.Remove(f)
			}
			_ = os.Remove(CheckpointLogName(path))
		}, true, true, ProblemMissingStart},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path, witness := evidenceLedger(t, s, 40)
			tc.attack(t, path)
			files, _ := Files(path)
			res, err := Verify(files...)
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.chainOK {
				t.Fatalf("chain verify OK=%v, want %v (%s)", res.OK, tc.chainOK, res.Bad)
			}
			w := ""
			if tc.witness {
				w = witness
			}
			res, ev := audit(t, path, w, v)
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

// cutLogAbove drops the checkpoint log's entries above size.
func cutLogAbove(t testing.TB, path string, size int64) {
	t.Helper()
	var keep [][]byte
	for _, l := range readLines(t, CheckpointLogName(path)) {
		var e LogEntry
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		if e.Size <= size {
			keep = append(keep, l)
		}
	}
	writeLines(t, CheckpointLogName(path), keep)
}

// resignLog recomputes every checkpoint from the (tampered) files and signs
// them with s, as an attacker without the ledger's key would have to.
func resignLog(t testing.TB, path string, s note.Signer) {
	t.Helper()
	files, _ := Files(path)
	var lines [][]byte
	var tr frontier
	w := &walker{files: files}
	defer w.close()
	origin := OriginPrefix + "forged"
	for {
		_, line, _, _, err := w.next()
		if err != nil {
			break
		}
		tr.add(leafHash(line), nil)
		msg, err := note.Sign(&note.Note{Text: checkpointText(origin, tr.n, tr.root())}, s)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(LogEntry{Size: tr.n, Frontier: tr.clone().h, Last: hashLine(line), Checkpoint: string(msg)})
		lines = append(lines, b)
	}
	writeLines(t, CheckpointLogName(path), lines)
}

// TestProveEveryRecord proves every record of a multi-file ledger against
// its final checkpoint, checks each proof, and shows that a proof fails for
// a changed record, another key, or a tampered ledger.
func TestProveEveryRecord(t *testing.T) {
	s, v := testKey(t)
	path, witness := evidenceLedger(t, s, 37)
	files, _ := Files(path)
	msg, _ := os.ReadFile(witness)
	cp, err := OpenCheckpoint(msg, v)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ReadCheckpointLog(CheckpointLogName(path))
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 37; seq++ {
		p, err := Prove(files, entries, seq, cp)
		if err != nil {
			t.Fatalf("Prove(%d): %v", seq, err)
		}
		b, _ := json.Marshal(p)
		p2, err := ReadProof(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := CheckProof(p2, v); err != nil {
			t.Fatalf("CheckProof(%d): %v", seq, err)
		}
		bad := *p2
		bad.Record = strings.Replace(bad.Record, `"stripe"`, `"acme"`, 1)
		if _, err := CheckProof(&bad, v); err == nil {
			t.Fatalf("seq %d: a changed record passed", seq)
		}
	}
	if _, err := Prove(files, entries, 38, cp); err == nil {
		t.Error("proved seq 38 in a checkpoint of 37")
	}
	p, _ := Prove(files, entries, 5, cp)
	_, other := testKey(t)
	if _, err := CheckProof(p, other); err == nil {
		t.Error("proof accepted under another key")
	}
	// Proving from tampered files fails.
	lines := readLines(t, files[1])
	lines[1] = bytes.Replace(lines[1], []byte(`"POST"`), []byte(`"GET"`), 1)
	writeLines(t, files[1], lines)
	rechain(t, files)
	if _, err := Prove(files, entries, 2, cp); err == nil {
		t.Error("proved a record from a rewritten ledger")
	}
}

// TestRetentionKeepsWhatRemainsVerifiable: once the oldest files are gone
// (as the fleet shipper will delete them), the checkpoint log's boundary
// entries still let the remaining records be held to the checkpoints and
// proved.
func TestRetentionKeepsWhatRemainsVerifiable(t *testing.T) {
	s, v := testKey(t)
	path, witness := evidenceLedger(t, s, 40)
	files, _ := Files(path)
	for _, f := range files[:2] {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	_, ev := audit(t, path, witness, v)
	if ev.Problem != ProblemMissingStart || !strings.Contains(ev.Detail, "remain match") {
		t.Fatalf("evidence %+v: want missing_start, with the rest matching", ev)
	}
	files, _ = Files(path)
	first, _ := firstRecord(files)
	msg, _ := os.ReadFile(witness)
	cp, _ := OpenCheckpoint(msg, v)
	entries, _ := ReadCheckpointLog(CheckpointLogName(path))
	for seq := first.seq; seq <= 40; seq++ {
		p, err := Prove(files, entries, seq, cp)
		if err != nil {
			t.Fatalf("Prove(%d) after retention: %v", seq, err)
		}
		if _, err := CheckProof(p, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Prove(files, entries, first.seq-1, cp); err == nil {
		t.Error("proved a record whose file is gone")
	}
	// The writer reopens it and goes on.
	l := openT(t, path, Options{Signer: s, MaxBytes: 4000})
	appendN(t, l, 100, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ev := audit(t, path, "", v); ev.Problem != ProblemMissingStart || !strings.Contains(ev.Detail, "remain match") {
		t.Fatalf("after reopening: %+v", ev)
	}
}

// TestOpenContinuesTheTree reopens a checkpointed ledger: the tree goes on
// from the last checkpoint without reading the older records (a rotated
// file made unreadable proves it), and later checkpoints still verify.
func TestOpenContinuesTheTree(t *testing.T) {
	s, v := testKey(t)
	path, _ := evidenceLedger(t, s, 40)
	files, _ := Files(path)
	old := files[0]
	saved, _ := os.ReadFile(old)
	if err := os.WriteFile(old, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l := openT(t, path, Options{Signer: s, MaxBytes: 4000, Logger: quietLogger(&logs)})
	appendN(t, l, 40, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "rebuilding") {
		t.Errorf("Open read the whole ledger:\n%s", logs.String())
	}
	if err := os.WriteFile(old, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if res, ev := audit(t, path, "", v); !res.OK || !ev.OK || ev.Latest.Size != 50 {
		t.Fatalf("after reopening: %+v %+v", res.Bad, ev)
	}
}

// TestOpenRefusesToForkSignedHistory: a ledger that lost records a
// checkpoint covers must not be written on, or two different records would
// stand under one signed seq.
func TestOpenRefusesToForkSignedHistory(t *testing.T) {
	s, _ := testKey(t)
	path, _ := evidenceLedger(t, s, 40)
	lines := readLines(t, path)
	writeLines(t, path, lines[:len(lines)-2])
	if l, err := Open(path, Options{Signer: s, Logger: quietLogger(nil)}); err == nil {
		_ = l.Close()
		t.Fatal("Open accepted a ledger shorter than its checkpoint")
	} else if !strings.Contains(err.Error(), "covers 40 records") {
		t.Errorf("error %v", err)
	}
}

// TestCheckpointAtIntervalAndClose: an idle ledger is checkpointed once
// CheckpointInterval passes, and Close writes the last one.
func TestCheckpointAtIntervalAndClose(t *testing.T) {
	s, v := testKey(t)
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{Signer: s, CheckpointInterval: 1, CheckpointEvery: 1 << 30})
	appendN(t, l, 0, 3)
	waitFor(t, func() bool { c := l.Checkpoint(); return c != nil && c.Size == 3 })
	if err := l.Append(context.Background(), testRecord(9)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if c := l.Checkpoint(); c == nil || c.Size != 4 {
		t.Fatalf("after Close the latest checkpoint is %+v, want size 4", c)
	}
	if _, err := OpenCheckpoint(l.Checkpoint().Note, v); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond for up to 10 s: a bound on a hang, not a timing
// assertion.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
