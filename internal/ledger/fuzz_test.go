package ledger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenAndVerify feeds arbitrary file contents to Open, Verify and Query:
// none may panic, and when Open accepts a file, what it appends must chain
// on from the last line it kept.
func FuzzOpenAndVerify(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("{\"seq\":1,\"prev\":\"\"}\n"))
	f.Add([]byte("{\"seq\":1,\"prev\":\"\"}\n{\"seq\":2,\"pr"))
	f.Add([]byte("{\"seq\":3,\"prev\":\"ab\"}\n{\"seq\":2,\"prev\":\"\"}\n"))
	f.Add([]byte("\x00\x00\n\x00"))
	f.Add([]byte("{\"seq\":18446744073709551615,\"prev\":\"\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "ledger.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Verify(path)
		_, _ = Query([]string{path}, Filter{Subject: "u"})
		l, err := Open(path, Options{Logger: quietLogger(nil)})
		if err != nil {
			return
		}
		seq, head := l.Head()
		r := testRecord(1)
		err = l.Append(context.Background(), r)
		if cerr := l.Close(); cerr != nil {
			t.Fatal(cerr)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != seq+1 || r.Prev != head {
			t.Fatalf("appended seq %d prev %q after head %d %q", r.Seq, r.Prev, seq, head)
		}
	})
}
