package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// auditTemplate is a signed ledger written once per test process: its
// files, its witness and the key that verifies it.
type auditTemplate struct {
	files   map[string][]byte // base name -> content (ledger files and the checkpoint log)
	witness []byte
	v       note.Verifier
	s       note.Signer
	lines   [][]byte // every record line, in order
	size    int64    // the witness's tree size
}

var (
	tmplOnce sync.Once
	tmpl     auditTemplate
)

func auditFixture(t testing.TB) *auditTemplate {
	tmplOnce.Do(func() {
		s, v := testKey(t)
		path, witness := evidenceLedger(t, s, 30)
		tmpl = auditTemplate{files: map[string][]byte{}, v: v, s: s}
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if e.Name() == "ledger.jsonl.lock" {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(path), e.Name()))
			tmpl.files[e.Name()] = b
		}
		tmpl.witness, _ = os.ReadFile(witness)
		cp, err := OpenCheckpoint(tmpl.witness, v)
		if err != nil {
			panic(err)
		}
		tmpl.size = cp.Size
		files, _ := Files(path)
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, l := range bytes.SplitAfter(b, []byte("\n")) {
				if len(l) > 0 {
					tmpl.lines = append(tmpl.lines, bytes.TrimSuffix(l, []byte("\n")))
				}
			}
		}
	})
	return &tmpl
}

// FuzzAuditMutations applies the mutations data encodes — flipped bytes,
// cut files, deleted, swapped or duplicated lines, deleted files, a chain
// recomputed over the tampered records — to a signed ledger and audits it
// against its witness. Audit must never panic, and it may pass only if the
// records the witness covers are still, byte for byte, the ones that were
// signed: a mutation is detected unless what it left is a valid ledger.
func FuzzAuditMutations(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 40, 1})     // flip a byte in the first file
	f.Add([]byte{1, 3, 0, 100})       // cut the current file
	f.Add([]byte{2, 0, 2})            // delete a line
	f.Add([]byte{3, 0})               // delete the oldest file
	f.Add([]byte{0, 1, 0, 90, 8, 4})  // flip, then recompute the chain
	f.Add([]byte{5, 1, 0, 1, 4})      // swap two lines, rechain
	f.Add([]byte{6, 2, 3, 4})         // duplicate a line, rechain
	f.Add([]byte{3, 5, 1, 4, 0, 100}) // delete the log, cut the current file
	f.Fuzz(func(t *testing.T, data []byte) {
		fx := auditFixture(t)
		dir := t.TempDir()
		path := filepath.Join(dir, "ledger.jsonl")
		names := make([]string, 0, len(fx.files))
		for n, b := range fx.files {
			names = append(names, n)
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		sort.Strings(names) // the rotated files, then the ledger, then its log
		mutate(t, dir, path, names, data)

		files, err := Files(path)
		if err != nil {
			t.Fatal(err)
		}
		res, ev, err := Audit(files, AuditOptions{Verifiers: []note.Verifier{fx.v}, Log: CheckpointLogName(path), Witness: fx.witness})
		if err != nil {
			return // unreadable (a file deleted is not an error: Files lists what exists)
		}
		if !res.OK || !ev.OK {
			return
		}
		// Passed: the signed records must be intact.
		var got [][]byte
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, l := range bytes.SplitAfter(b, []byte("\n")) {
				if len(l) > 0 {
					got = append(got, bytes.TrimSuffix(l, []byte("\n")))
				}
			}
		}
		if int64(len(got)) < fx.size {
			t.Fatalf("audit passed with %d records, the witness signs %d", len(got), fx.size)
		}
		for i := int64(0); i < fx.size; i++ {
			if !bytes.Equal(got[i], fx.lines[i]) {
				t.Fatalf("audit passed but record %d differs from the signed one:\n got %s\nwant %s", i+1, got[i], fx.lines[i])
			}
		}
		// A ledger that passes can also be written on.
		l, err := Open(path, Options{Signer: fx.s, Logger: quietLogger(nil)})
		if err != nil {
			t.Fatalf("Open of a ledger that audits: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// mutate applies the operations in data to the files of dir.
func mutate(t *testing.T, dir, path string, names []string, data []byte) {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	file := func() string { return filepath.Join(dir, names[next()%len(names)]) }
	lines := func(name string) [][]byte {
		b, _ := os.ReadFile(name)
		return bytes.SplitAfter(b, []byte("\n"))
	}
	write := func(name string, ls [][]byte) { _ = os.WriteFile(name, bytes.Join(ls, nil), 0o600) }
	for ops := 0; len(data) > 0 && ops < 8; ops++ {
		switch next() % 9 {
		case 0: // flip a byte
			name := file()
			b, _ := os.ReadFile(name)
			off := next()<<8 | next()
			x := byte(next()) | 1
			if len(b) > 0 {
				b[off%len(b)] ^= x
				_ = os.WriteFile(name, b, 0o600)
			}
		case 1: // cut a file
			name := file()
			b, _ := os.ReadFile(name)
			n := next() << 4
			if n < len(b) {
				_ = os.WriteFile(name, b[:n], 0o600)
			}
		case 2: // delete a line
			name := file()
			ls := lines(name)
			if i := next(); len(ls) > 0 {
				i %= len(ls)
				write(name, append(ls[:i:i], ls[i+1:]...))
			}
		case 3: // delete a file
			_ = os.Remove(file())
		case 4, 8: // recompute the chain over whatever is there now
			fs, _ := Files(path)
			rechainQuiet(fs)
		case 5: // swap two lines
			name := file()
			ls := lines(name)
			i, j := next(), next()
			if len(ls) > 0 {
				i, j = i%len(ls), j%len(ls)
				ls[i], ls[j] = ls[j], ls[i]
				write(name, ls)
			}
		case 6: // duplicate a line
			name := file()
			ls := lines(name)
			if i := next(); len(ls) > 0 {
				i %= len(ls)
				write(name, append(ls[:i+1:i+1], ls[i:]...))
			}
		case 7: // append a line copied from elsewhere
			name := file()
			ls := lines(file())
			if i := next(); len(ls) > 0 {
				f, _ := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
				if f != nil {
					_, _ = f.Write(ls[i%len(ls)])
					_ = f.Close()
				}
			}
		}
	}
}

// rechainQuiet recomputes every prev, skipping lines without one.
func rechainQuiet(files []string) {
	last := ""
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		ls := bytes.SplitAfter(b, []byte("\n"))
		for i, l := range ls {
			nl := bytes.HasSuffix(l, []byte("\n"))
			l = bytes.TrimSuffix(l, []byte("\n"))
			k := bytes.LastIndex(l, []byte(`"prev":"`))
			if k < 0 {
				continue
			}
			l = append(append([]byte(nil), l[:k]...), `"prev":"`+last+`"}`...)
			last = hashLine(l)
			if nl {
				l = append(l, '\n')
			}
			ls[i] = l
		}
		_ = os.WriteFile(f, bytes.Join(ls, nil), 0o600)
	}
}
