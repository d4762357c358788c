package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// clock is a deterministic Now: each call is one second after the last.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

func quietLogger(buf *bytes.Buffer) *slog.Logger {
	if buf == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(buf, nil))
}

func testRecord(i int) *Record {
	return &Record{
		Kind:          KindDisclosure,
		DecisionID:    fmt.Sprintf("d-%d", i),
		Vendor:        "stripe",
		Host:          "api.stripe.com",
		Method:        "POST",
		Path:          "/v1/charges",
		Purpose:       "payment",
		Subject:       fmt.Sprintf("u-%d", i%7),
		Service:       "billing",
		Revision:      "rev-1",
		FieldsSent:    []string{"amount", "currency", "card/number"},
		FieldsRemoved: []string{"customer/email"},
		Transformed:   []string{"receipt_email"},
		Transforms:    map[string]string{"receipt_email": "hmac"},
		Status:        200,
		BytesOut:      int64(100 + i),
	}
}

func openT(t testing.TB, path string, opt Options) *Ledger {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quietLogger(nil)
	}
	if opt.Now == nil {
		opt.Now = clock()
	}
	l, err := Open(path, opt)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func appendN(t testing.TB, l *Ledger, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := l.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func mustVerify(t testing.TB, path string) *VerifyResult {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(files...)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !res.OK {
		t.Fatalf("Verify: chain broken: %s", res.Bad)
	}
	return res
}

func TestAppendVerifyRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{})
	var prevHash string
	for i := range 100 {
		r := testRecord(i)
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) {
			t.Fatalf("seq = %d, want %d", r.Seq, i+1)
		}
		if r.Prev != prevHash {
			t.Fatalf("record %d: prev = %q, want %q", r.Seq, r.Prev, prevHash)
		}
		if r.Time.IsZero() {
			t.Fatal("time not assigned")
		}
		_, prevHash = l.Head()
	}
	headSeq, head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), testRecord(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
	res := mustVerify(t, path)
	if res.Records != 100 || res.FirstSeq != 1 || res.LastSeq != 100 || res.StartPrev != "" {
		t.Fatalf("result = %+v", res)
	}
	if res.LastSeq != headSeq || res.Head != head {
		t.Fatalf("verify head %d %s, ledger head %d %s", res.LastSeq, res.Head, headSeq, head)
	}
	recs, err := Query([]string{path}, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 {
		t.Fatalf("query: %d records", len(recs))
	}
	got, want := recs[41], testRecord(41)
	if got.Subject != want.Subject || got.Transforms["receipt_email"] != "hmac" || len(got.FieldsSent) != 3 || got.BytesOut != want.BytesOut {
		t.Fatalf("record did not round-trip: %+v", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ledger mode: %v %v", fi.Mode(), err)
	}
}

func TestAppendRejectsAndCleans(t *testing.T) {
	l := openT(t, filepath.Join(t.TempDir(), "l"), Options{})
	defer l.Close()
	ctx := context.Background()
	if err := l.Append(ctx, nil); err == nil {
		t.Error("nil record accepted")
	}
	if err := l.Append(ctx, &Record{Kind: "gossip"}); err == nil {
		t.Error("unknown kind accepted")
	}
	if err := l.Append(ctx, &Record{Kind: KindRefusal, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("unencodable time accepted")
	}
	huge := &Record{Kind: KindRefusal, FieldsSent: []string{strings.Repeat("x", maxLine)}}
	if err := l.Append(ctx, huge); err == nil {
		t.Error("record longer than a line accepted")
	}
	r := &Record{Kind: KindRefusal, Path: "/v1/customers?email=a@b.example", Outcome: "denied"}
	if err := l.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Seq != 1 {
		t.Errorf("rejected records consumed seqs: seq = %d", r.Seq)
	}
	_ = l.Close()
	data, _ := os.ReadFile(l.path)
	if bytes.Contains(data, []byte("a@b.example")) || !bytes.Contains(data, []byte(`"path":"/v1/customers"`)) {
		t.Errorf("query string kept: %s", data)
	}
	if !bytes.Contains(data, []byte(`"fields_sent":[]`)) {
		t.Errorf("nil slice not written as []: %s", data)
	}
}

// writeLedger makes a ledger of n records and returns its lines.
func writeLedger(t *testing.T, path string, n int) [][]byte {
	t.Helper()
	l := openT(t, path, Options{})
	appendN(t, l, 0, n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))[:n]
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(lines [][]byte) [][]byte
		problem Problem
		line    int
		seq     uint64
	}{
		{"changed field", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"subject":"u-4"`), []byte(`"subject":"u-9"`), 1)
			return ls
		}, ProblemChanged, 5, 5},
		{"changed prev", func(ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"prev":"`), []byte(`"prev":"0`), 1)
			return ls
		}, ProblemChanged, 5, 5},
		{"changed before last", func(ls [][]byte) [][]byte {
			ls[8] = bytes.Replace(ls[8], []byte(`"status":200`), []byte(`"status":201`), 1)
			return ls
		}, ProblemChanged, 9, 9},
		{"dropped", func(ls [][]byte) [][]byte {
			return append(ls[:4:4], ls[5:]...)
		}, ProblemDropped, 5, 6},
		{"dropped first", func(ls [][]byte) [][]byte {
			return ls[1:]
		}, "", 0, 0}, // undetectable by the chain: StartPrev tells
		{"reordered", func(ls [][]byte) [][]byte {
			ls[4], ls[5] = ls[5], ls[4]
			return ls
		}, ProblemReordered, 5, 6},
		{"repeated", func(ls [][]byte) [][]byte {
			return append(ls[:5:5], append([][]byte{ls[4]}, ls[5:]...)...)
		}, ProblemReordered, 6, 5},
		{"unparseable", func(ls [][]byte) [][]byte {
			ls[4] = []byte("not json\n")
			return ls
		}, ProblemUnparseable, 5, 0},
		{"torn last line", func(ls [][]byte) [][]byte {
			return append(ls, []byte(`{"seq":11,"time":"2026-`))
		}, ProblemTorn, 11, 0},
		{"genesis with prev", func(ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`"prev":""`), []byte(`"prev":"ab"`), 1)
			return ls
		}, ProblemChanged, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			lines := tc.tamper(writeLedger(t, path, 10))
			if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			res, err := Verify(path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.problem == "" {
				if !res.OK || res.StartPrev == "" {
					t.Fatalf("want OK with a non-empty StartPrev, got %+v", res)
				}
				return
			}
			if res.OK || res.Bad == nil {
				t.Fatalf("tampering not detected: %+v", res)
			}
			b := res.Bad
			if b.Problem != tc.problem || b.Line != tc.line || b.Seq != tc.seq || b.File != path {
				t.Fatalf("bad = %s; want %s at line %d seq %d", b, tc.problem, tc.line, tc.seq)
			}
		})
	}
}

func TestVerifyChangedLastRecordNeedsHead(t *testing.T) {
	// The chain cannot show a change to the newest record; the exported head
	// can.
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{})
	appendN(t, l, 0, 3)
	_, head := l.Head()
	_ = l.Close()
	data, _ := os.ReadFile(path)
	data = bytes.Replace(data, []byte(`"decision_id":"d-2"`), []byte(`"decision_id":"d-X"`), 1)
	_ = os.WriteFile(path, data, 0o600)
	res, err := Verify(path)
	if err != nil || !res.OK {
		t.Fatalf("%+v %v", res, err)
	}
	if res.Head == head {
		t.Fatal("head unchanged after changing the last record")
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	for round := range 3 {
		l := openT(t, path, Options{})
		if seq, _ := l.Head(); seq != uint64(round*5) {
			t.Fatalf("round %d: head seq %d", round, seq)
		}
		appendN(t, l, round*5, 5)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if res := mustVerify(t, path); res.Records != 15 {
		t.Fatalf("records = %d", res.Records)
	}
}

func TestOpenRecoversTornTail(t *testing.T) {
	tests := []struct {
		name string
		good int    // records before the tail
		tail string // what the crash left
	}{
		{"partial record", 5, `{"seq":6,"time":"2026-10-01T09:00:06Z","kind":"discl`},
		{"complete record without newline", 5, `{"seq":6,"prev":"x"}`},
		{"zeros from a lost page", 5, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"only a torn line", 0, `{"seq":1,"ti`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			if tc.good > 0 {
				writeLedger(t, path, tc.good)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString(tc.tail)
			_ = f.Close()

			var logs bytes.Buffer
			l := openT(t, path, Options{Logger: quietLogger(&logs)})
			if l.Stats().TornTails != 1 || !strings.Contains(logs.String(), "torn") {
				t.Fatalf("torn tail not reported; stats %+v, log %q", l.Stats(), logs.String())
			}
			r := testRecord(99)
			if err := l.Append(context.Background(), r); err != nil {
				t.Fatal(err)
			}
			if r.Seq != uint64(tc.good+1) {
				t.Fatalf("seq after recovery = %d, want %d", r.Seq, tc.good+1)
			}
			_ = l.Close()
			if res := mustVerify(t, path); res.Records != uint64(tc.good+1) {
				t.Fatalf("records = %d", res.Records)
			}
		})
	}
}

func TestOpenRefusesWhatIsNotACrash(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"last line is not a record", "{\"seq\":1,\"prev\":\"\"}\nnot a record\n"},
		{"last line has no seq", "{\"prev\":\"\"}\n"},
		{"long junk without newline", strings.Repeat("x", 3*maxLine)},
		{"junk longer than a record after a line", "{\"seq\":1,\"prev\":\"\"}\n" + strings.Repeat("x", maxLine+10)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			_ = os.WriteFile(path, []byte(tc.data), 0o600)
			l, err := Open(path, Options{Logger: quietLogger(nil)})
			if err == nil {
				_ = l.Close()
				t.Fatal("Open accepted it")
			}
			if data, _ := os.ReadFile(path); string(data) != tc.data {
				t.Fatal("Open changed a file it refused")
			}
		})
	}
}

func TestOpenLocksOutSecondWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{})
	if l2, err := Open(path, Options{Logger: quietLogger(nil)}); err == nil {
		_ = l2.Close()
		t.Fatal("second writer allowed")
	}
	_ = l.Close()
	l3 := openT(t, path, Options{})
	_ = l3.Close()
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.jsonl")
	const maxBytes = 4000
	l := openT(t, path, Options{MaxBytes: maxBytes})
	appendN(t, l, 0, 60)
	if l.Stats().Rotations == 0 {
		t.Fatal("no rotation")
	}
	_ = l.Close()

	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 || files[len(files)-1] != path {
		t.Fatalf("files = %v", files)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, over %d", f, fi.Size(), maxBytes)
		}
	}
	// Rotated names carry the seq of their last record.
	res, err := Verify(files[0])
	if err != nil || !res.OK || RotatedName(path, res.LastSeq) != files[0] {
		t.Fatalf("first file %s: %+v %v", files[0], res, err)
	}
	if res := mustVerify(t, path); res.Records != 60 {
		t.Fatalf("records across files = %d", res.Records)
	}
	// A missing middle file breaks the chain across the boundary.
	res, _ = Verify(append([]string{files[0]}, files[2:]...)...)
	if res.OK || res.Bad.Problem != ProblemDropped {
		t.Fatalf("missing file not detected: %+v", res)
	}

	// Losing the current file (an operator's mistake) leaves the rotated ones;
	// a new writer continues their chain, and the lost records show as a gap
	// only against an exported head.
	rotated, err := Verify(files[:len(files)-1]...)
	if err != nil || !rotated.OK {
		t.Fatalf("%+v %v", rotated, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l = openT(t, path, Options{MaxBytes: maxBytes})
	r := testRecord(60)
	if err := l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	_ = l.Close()
	if r.Seq != rotated.LastSeq+1 {
		t.Fatalf("seq %d after the rotated files' %d", r.Seq, rotated.LastSeq)
	}
	if res := mustVerify(t, path); res.Records != rotated.Records+1 {
		t.Fatalf("records = %d", res.Records)
	}
}

func TestRotationAfterCrashDuringRotate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.jsonl")
	l := openT(t, path, Options{})
	appendN(t, l, 0, 7)
	_ = l.Close()
	// Rename as rotate would, and crash before the new file has a record.
	if err := os.Rename(path, RotatedName(path, 7)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l = openT(t, path, Options{})
	appendN(t, l, 7, 3)
	_ = l.Close()
	if res := mustVerify(t, path); res.Records != 10 || res.Files != 2 {
		t.Fatalf("%+v", res)
	}
}

func TestConcurrentAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{MaxBytes: 1 << 20})
	const workers, each = 64, 200
	var wg sync.WaitGroup
	seqs := make([][]uint64, workers)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := testRecord(w*each + i)
				if err := l.Append(context.Background(), r); err != nil {
					errs <- err
					return
				}
				seqs[w] = append(seqs[w], r.Seq)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, s := range seqs {
		for _, q := range s {
			if seen[q] {
				t.Fatalf("seq %d acknowledged twice", q)
			}
			seen[q] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d seqs", len(seen))
	}
	res := mustVerify(t, path)
	if res.Records != workers*each {
		t.Fatalf("records = %d", res.Records)
	}
	t.Logf("%d records in %d fsyncs (%.3f fsyncs/record), %d rotations",
		st.Records, st.Batches, float64(st.Batches)/float64(st.Records), st.Rotations)
	if st.Batches >= st.Records {
		t.Errorf("no group commit: %d fsyncs for %d records", st.Batches, st.Records)
	}
}

// faults injects failures under the writer through Options.openFile.
type faults struct {
	write, sync  atomic.Bool
	syncFailOnce atomic.Bool   // the next Sync fails, later ones succeed
	devFull      atomic.Bool   // send writes to /dev/full (ENOSPC)
	block        chan struct{} // if set, Sync waits on it
	opens        atomic.Int32
	failOpen     atomic.Bool
}

type faultyFile struct {
	*os.File
	f       *faults
	devFull *os.File
}

func (ff *faultyFile) Write(p []byte) (int, error) {
	switch {
	case ff.f.devFull.Load():
		return ff.devFull.Write(p)
	case ff.f.write.Load():
		// A full disk takes part of the write, then fails.
		n, _ := ff.File.Write(p[:len(p)/2])
		return n, syscall.ENOSPC
	}
	return ff.File.Write(p)
}

func (ff *faultyFile) Sync() error {
	if ff.f.block != nil {
		<-ff.f.block
	}
	if ff.f.sync.Load() || ff.f.syncFailOnce.CompareAndSwap(true, false) {
		return syscall.EIO
	}
	return ff.File.Sync()
}

func (ff *faultyFile) Close() error {
	if ff.devFull != nil {
		_ = ff.devFull.Close()
	}
	return ff.File.Close()
}

func (f *faults) open(t testing.TB) func(string) (file, error) {
	return func(name string) (file, error) {
		f.opens.Add(1)
		if f.failOpen.Load() {
			return nil, syscall.EMFILE
		}
		of, err := openLedgerFile(name)
		if err != nil {
			return nil, err
		}
		ff := &faultyFile{File: of.(*os.File), f: f}
		if df, err := os.OpenFile("/dev/full", os.O_WRONLY, 0); err == nil {
			ff.devFull = df
		}
		return ff, nil
	}
}

func TestWriteFailures(t *testing.T) {
	tests := []struct {
		name string
		set  func(f *faults, on bool)
	}{
		{"short write", func(f *faults, on bool) { f.write.Store(on) }},
		{"fsync", func(f *faults, on bool) { f.sync.Store(on) }},
		{"/dev/full", func(f *faults, on bool) { f.devFull.Store(on) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "/dev/full" {
				if _, err := os.Stat("/dev/full"); err != nil {
					t.Skip("no /dev/full")
				}
			}
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			var f faults
			var logs bytes.Buffer
			l := openT(t, path, Options{openFile: f.open(t), Logger: quietLogger(&logs)})
			appendN(t, l, 0, 3)

			tc.set(&f, true)
			for i := range 3 {
				if err := l.Append(context.Background(), testRecord(10+i)); err == nil {
					t.Fatalf("append %d succeeded while the disk fails", i)
				}
			}
			if l.Err() == nil || l.Stats().WriteErrors < 3 {
				t.Fatalf("failed state not visible: err %v, stats %+v", l.Err(), l.Stats())
			}
			opensBefore := f.opens.Load()

			tc.set(&f, false)
			r := testRecord(20)
			if err := l.Append(context.Background(), r); err != nil {
				t.Fatalf("no recovery: %v", err)
			}
			if r.Seq != 4 {
				t.Fatalf("seq after recovery = %d, want 4 (failed records take no seq)", r.Seq)
			}
			if l.Err() != nil {
				t.Fatalf("still failed: %v", l.Err())
			}
			if f.opens.Load() == opensBefore {
				t.Fatal("recovery reused the descriptor that failed")
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if res := mustVerify(t, path); res.Records != 4 {
				t.Fatalf("records = %d, want 4: unacknowledged bytes left on disk", res.Records)
			}
			if !strings.Contains(logs.String(), "failed state") || !strings.Contains(logs.String(), "writing again") {
				t.Errorf("log: %s", logs.String())
			}
		})
	}
}

func TestRotationFailures(t *testing.T) {
	t.Run("rename fails", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		var logs bytes.Buffer
		l := openT(t, path, Options{MaxBytes: 2000, Logger: quietLogger(&logs)})
		appendN(t, l, 0, 3)
		// Whatever seq the first rotation names the file after, a non-empty
		// directory is in the way.
		for seq := uint64(3); seq < 10; seq++ {
			_ = os.MkdirAll(filepath.Join(RotatedName(path, seq), "x"), 0o700)
		}
		appendN(t, l, 3, 30)
		st := l.Stats()
		_ = l.Close()
		if !strings.Contains(logs.String(), "rotation failed") || st.Rotations == 0 || st.WriteErrors != 0 {
			t.Fatalf("stats %+v, log %s", st, logs.String())
		}
		if res := mustVerify(t, path); res.Records != 33 {
			t.Fatalf("records = %d", res.Records)
		}
	})
	t.Run("new file cannot be created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		var f faults
		l := openT(t, path, Options{MaxBytes: 2000, openFile: f.open(t)})
		appendN(t, l, 0, 3)
		f.failOpen.Store(true)
		var err error
		for i := 3; i < 40 && err == nil; i++ {
			err = l.Append(context.Background(), testRecord(i))
		}
		if err == nil || l.Err() == nil {
			t.Fatal("no failure when the file after rotation cannot be created")
		}
		f.failOpen.Store(false)
		appendN(t, l, 100, 5)
		_ = l.Close()
		res := mustVerify(t, path)
		if res.Files < 2 {
			t.Fatalf("%+v", res)
		}
	})
}

func TestRecoveryRefusesForeignBytes(t *testing.T) {
	// After a failed write, bytes beyond what the failed write could have
	// left are not ours to cut: stay failed.
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	var f faults
	l := openT(t, path, Options{openFile: f.open(t)})
	appendN(t, l, 0, 2)
	f.sync.Store(true)
	if err := l.Append(context.Background(), testRecord(5)); err == nil {
		t.Fatal("append succeeded")
	}
	f.sync.Store(false)
	other, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = other.WriteString(strings.Repeat("{\"foreign\":1}\n", 100))
	_ = other.Close()
	if err := l.Append(context.Background(), testRecord(6)); err == nil {
		t.Fatal("recovered over foreign bytes")
	}
	_ = l.Close()
}

func TestOpenReadOnlyDir(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	_ = os.WriteFile(notDir, nil, 0o600)
	if l, err := Open(filepath.Join(notDir, "ledger.jsonl"), Options{}); err == nil {
		_ = l.Close()
		t.Fatal("opened a ledger under a regular file")
	}
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; the fault seam covers write errors")
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if l, err := Open(filepath.Join(dir, "ledger.jsonl"), Options{}); err == nil {
		_ = l.Close()
		t.Fatal("opened a ledger in a read-only directory")
	}
}

func TestAppendHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	f := faults{block: make(chan struct{})}
	l := openT(t, path, Options{openFile: f.open(t)})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := l.Append(ctx, testRecord(1)) // the writer is stuck in fsync
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Append = %v, want deadline exceeded", err)
	}
	dead, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := l.Append(dead, testRecord(2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled ctx = %v", err)
	}
	close(f.block) // the disk comes back
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The record handed to the writer before the deadline is still written;
	// the one refused up front is not.
	recs, err := Query([]string{path}, Filter{})
	if err != nil || len(recs) != 1 || recs[0].DecisionID != "d-1" {
		t.Fatalf("records %+v %v", recs, err)
	}
}

// TestWritePipelinesFsync pins down the writer's pipeline: a record can be
// written (and so sent to its vendor) while an fsync is in flight, and an
// fsync acknowledges only what was written before it started.
func TestWritePipelinesFsync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	f := faults{block: make(chan struct{})} // each send lets one fsync through
	l := openT(t, path, Options{openFile: f.open(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wait1, err := l.Write(ctx, testRecord(1))
	if err != nil {
		t.Fatal(err)
	}
	// The first fsync is stuck; the second record is still written.
	wait2, err := l.Write(ctx, testRecord(2))
	if err != nil {
		t.Fatalf("write during an fsync: %v", err)
	}
	f.block <- struct{}{} // the first fsync returns
	if err := wait1(ctx); err != nil {
		t.Fatal(err)
	}
	// Record 2 was written after that fsync started: it is not durable
	// until the next one, which is stuck now.
	if seq, _ := l.Head(); seq != 1 {
		t.Fatalf("head after the first fsync = %d, want 1", seq)
	}
	f.block <- struct{}{}
	if err := wait2(ctx); err != nil {
		t.Fatal(err)
	}
	if seq, _ := l.Head(); seq != 2 {
		t.Fatalf("head after the second fsync = %d, want 2", seq)
	}
	close(f.block)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Records != 2 || st.Batches != 2 {
		t.Fatalf("stats %+v, want 2 records in 2 fsyncs", st)
	}
}

// TestFsyncFailureRewritesLost: when an fsync fails, the records written
// before it (its own and those written while it ran) may have left already —
// Write returned, the proxy sent — so after recovery cuts them off the file
// they are written again and acknowledged once durable, each exactly once.
func TestFsyncFailureRewritesLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	f := faults{block: make(chan struct{})}
	var logs bytes.Buffer
	l := openT(t, path, Options{openFile: f.open(t), Logger: quietLogger(&logs)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	go func() { f.block <- struct{}{} }() // lets record 1's fsync through
	if err := l.Append(ctx, testRecord(1)); err != nil {
		t.Fatal(err)
	}
	wait2, err := l.Write(ctx, testRecord(2)) // its fsync is stuck
	if err != nil {
		t.Fatal(err)
	}
	wait3, err := l.Write(ctx, testRecord(3)) // written during that fsync
	if err != nil {
		t.Fatal(err)
	}
	f.syncFailOnce.Store(true)
	close(f.block) // the stuck fsync fails; the disk works again after it
	if err := wait2(ctx); err != nil {
		t.Fatalf("record 2 after recovery: %v", err)
	}
	if err := wait3(ctx); err != nil {
		t.Fatalf("record 3 after recovery: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Query([]string{path}, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.DecisionID)
	}
	if fmt.Sprint(ids) != "[d-1 d-2 d-3]" {
		t.Fatalf("records on disk %v, want d-1 d-2 d-3 once each", ids)
	}
	if res := mustVerify(t, path); res.Records != 3 {
		t.Fatalf("verify: %d records", res.Records)
	}
	if st := l.Stats(); st.Records != 3 || st.WriteErrors == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFsyncFailureFailsLost: when the disk stays broken, recovery fails and
// the records written since the last good fsync fail — nothing after it is
// acknowledged — and a later recovery cuts them off the file.
func TestFsyncFailureFailsLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	var f faults
	l := openT(t, path, Options{openFile: f.open(t), Logger: quietLogger(new(bytes.Buffer))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := l.Append(ctx, testRecord(1)); err != nil {
		t.Fatal(err)
	}
	f.sync.Store(true)
	wait2, err := l.Write(ctx, testRecord(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := wait2(ctx); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("record 2 while every fsync fails: %v, want the write error", err)
	}
	f.sync.Store(false)
	r := testRecord(4)
	if err := l.Append(ctx, r); err != nil {
		t.Fatalf("no recovery: %v", err)
	}
	if r.Seq != 2 {
		t.Fatalf("seq after recovery = %d, want 2", r.Seq)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := Query([]string{path}, Filter{})
	if err != nil || len(recs) != 2 || recs[0].DecisionID != "d-1" || recs[1].DecisionID != "d-4" {
		t.Fatalf("records on disk %+v %v, want d-1 and d-4", recs, err)
	}
}

func TestQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{MaxBytes: 3000})
	ctx := context.Background()
	day := func(d int) time.Time { return time.Date(2026, 10, d, 12, 0, 0, 0, time.UTC) }
	add := func(r Record) {
		if err := l.Append(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	add(Record{Kind: KindDisclosure, DecisionID: "a", Subject: "u-1", Vendor: "stripe", Time: day(1)})
	add(Record{Kind: KindOutcome, DecisionID: "a", Outcome: "200", Time: day(1)}) // no subject: linked by decision ID
	add(Record{Kind: KindDisclosure, DecisionID: "b", Subject: "u-2", Vendor: "stripe", Time: day(2)})
	add(Record{Kind: KindDisclosure, DecisionID: "c", Subject: "u-1", Vendor: "zendesk", Time: day(3)})
	add(Record{Kind: KindRefusal, DecisionID: "d", Subject: "u-1", Vendor: "mailchimp", Time: day(4), Outcome: "consent_required"})
	add(Record{Kind: KindOutcome, DecisionID: "b", Outcome: "500", Time: day(2)})
	_ = l.Close()
	files, _ := Files(path)
	// A torn tail in the live file is skipped, not an error.
	tf, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	_, _ = tf.WriteString(`{"seq":7,"kin`)
	_ = tf.Close()

	tests := []struct {
		name string
		f    Filter
		want string // decision ID + kind initial
	}{
		{"all", Filter{}, "ad ao bd cd dr bo"},
		{"subject", Filter{Subject: "u-1"}, "ad ao cd dr"},
		{"subject and vendor", Filter{Subject: "u-1", Vendor: "stripe"}, "ad ao"},
		{"since", Filter{Since: day(2)}, "bd cd dr bo"},
		{"until is exclusive", Filter{Until: day(3)}, "ad ao bd bo"},
		{"window", Filter{Subject: "u-1", Since: day(2), Until: day(4)}, "cd"},
		{"nobody", Filter{Subject: "u-404"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := Query(files, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.DecisionID+r.Kind[:1])
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Fatalf("got %q, want %q", g, tc.want)
			}
		})
	}

	_ = os.WriteFile(path, []byte("{\"seq\":1}\nbroken\n"), 0o600)
	if _, err := Query([]string{path}, Filter{}); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("unparseable line: err = %v", err)
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ledger.jsonl")
	for _, n := range []string{
		RotatedName(path, 120), RotatedName(path, 9), path, path + ".lock",
		path + ".bak", path + ".123", filepath.Join(dir, "other.jsonl.00000000000000000001"),
	} {
		_ = os.WriteFile(n, nil, 0o600)
	}
	got, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{RotatedName(path, 9), RotatedName(path, 120), path}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Files = %v, want %v", got, want)
	}
	if _, err := Files(filepath.Join(dir, "missing", "l")); err == nil {
		t.Fatal("no error for a missing directory")
	}
}

var _ io.Writer = (*faultyFile)(nil)

// Submitted records are not waited for, but Close writes every one of them.
func TestSubmitIsWrittenByClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := l.Submit(&Record{Kind: KindOutcome, DecisionID: "d", Outcome: "200"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := Verify(path)
	if err != nil || !res.OK || res.Records != 100 {
		t.Fatalf("verify: %+v, %v; want 100 good records", res, err)
	}
	if err := l.Submit(&Record{Kind: KindOutcome}); err != ErrClosed {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
}

// The writer splices seq and prev into a line each appender encoded: the
// result must be exactly what encoding/json writes for the whole record,
// or hashes computed by Verify would differ from those written.
func TestSplicedLineIsTheRecordsJSON(t *testing.T) {
	recs := []Record{
		{Kind: KindDisclosure, Time: time.Date(2026, 11, 28, 1, 2, 3, 4, time.UTC), DecisionID: "d1",
			Vendor: "stripe", Path: "/v1/x", FieldsSent: []string{"amount", "card/number"},
			Transforms: map[string]string{"a": "hmac"}, LegalBasis: "case \"42\" <b>", DryRun: true},
		{Kind: KindRefusal, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Outcome: "denied", Status: 403},
	}
	for i, r := range recs {
		mid, err := encodeMid(&r)
		if err != nil {
			t.Fatal(err)
		}
		r.Seq, r.Prev = uint64(1000+i), strings.Repeat("ab", 32)
		got := appendLine(nil, mid, r.Seq, r.Prev)
		want, _ := json.Marshal(&r)
		if string(got) != string(want) {
			t.Errorf("spliced:\n%s\nencoding/json:\n%s", got, want)
		}
		if lineLen(mid, r.Seq) != len(got) {
			t.Errorf("lineLen %d, want %d", lineLen(mid, r.Seq), len(got))
		}
	}
}

// Write returns once the line is in the file and wait reports durability:
// a failed write is an error from Write, a failed fsync an error from wait.
func TestWriteThenWait(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	var f faults
	var logs bytes.Buffer
	l := openT(t, path, Options{openFile: f.open(t), Logger: quietLogger(&logs)})

	wait, err := l.Write(ctx, &Record{Kind: KindDisclosure, DecisionID: "ok"})
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := wait(ctx); err != nil { // idempotent
		t.Fatalf("second wait: %v", err)
	}

	f.sync.Store(true)
	wait, err = l.Write(ctx, &Record{Kind: KindDisclosure, DecisionID: "sync-fails"})
	if err != nil {
		t.Fatalf("Write with a failing fsync: %v, want the write to succeed", err)
	}
	if err := wait(ctx); err == nil {
		t.Fatal("wait succeeded although the fsync failed")
	}
	f.sync.Store(false)

	f.write.Store(true)
	if _, err := l.Write(ctx, &Record{Kind: KindDisclosure, DecisionID: "write-fails"}); err == nil {
		t.Fatal("Write succeeded although the write failed")
	}
}

// A submitted record alone waits at most lazyDelay for a batch to share.
func TestSubmitAloneIsWrittenSoon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l := openT(t, path, Options{})
	if err := l.Submit(&Record{Kind: KindOutcome, DecisionID: "alone", Outcome: "200"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(path); bytes.Contains(b, []byte(`"alone"`)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("a submitted record was not written within 5s")
}

// The hand-written encoder writes exactly what encoding/json writes.
func FuzzAppendMid(f *testing.F) {
	f.Add("disclosure", "d1", "stripe", "/v1/x?q", "case \"42\" <b> & é\u2028\x01", "amount", "card/number", "hmac", int64(3), true, int64(1700000000123456789))
	f.Add("refusal", "", "", "", "", "", "", "", int64(0), false, int64(0))
	f.Add("outcome", "\xff\xfe", "v", "/", "\t\n\r\b\f", "a<b", "", "x>y", int64(-1), false, int64(-62135596800))
	f.Fuzz(func(t *testing.T, kind, id, vendor, path, basis, f1, f2, tr string, n int64, dry bool, ns int64) {
		r := &Record{Kind: kind, DecisionID: id, Vendor: vendor, Recipient: basis, Host: vendor + ".example", Method: "POST",
			Path: path, Purpose: basis, Subject: id, Service: f1, LegalBasis: basis, Requester: f2, Approver: tr,
			Revision: f1 + f2, FieldsSent: []string{f1, f2}, FieldsRemoved: []string{}, Transformed: nil,
			Outcome: tr, Status: int(n % 1000), BytesIn: n, BytesOut: -n, DryRun: dry,
			Time: time.Unix(0, ns).UTC(), PathHash: f2, FieldsRemovedCount: int(n % 7), Truncated: !dry}
		if tr != "" {
			r.Transformed = []string{tr}
			r.Transforms = map[string]string{f1: tr, f2: basis}
			r.CardsRedacted = []string{tr}
		}
		if y := r.Time.Year(); y < 0 || y > 9999 {
			return
		}
		want, err := encodeMidReflect(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendMid(nil, r); string(got) != string(want) {
			t.Fatalf("hand-written:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
