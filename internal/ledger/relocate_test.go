package ledger

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPathGoneUnderTheWriter deletes, renames or replaces the ledger file
// while 8 goroutines append: every acknowledged record must be in the
// files the ledger lists afterwards, the chain and the checkpoints must
// verify, and the writer must go on in a new file.
func TestPathGoneUnderTheWriter(t *testing.T) {
	s, v := testKey(t)
	cases := []struct {
		name string
		do   func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed", func(t *testing.T, path string) {
			if err := os.Rename(path, path+".old"); err != nil {
				t.Fatal(err)
			}
		}},
		{"replaced", func(t *testing.T, path string) {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte("{\"seq\":1,\"prev\":\"\"}\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		for _, signed := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/checkpoints=%v", tc.name, signed), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "ledger.jsonl")
				opt := Options{MaxBytes: 64 << 10, CheckpointEvery: 50}
				if signed {
					opt.Signer = s
				}
				l := openT(t, path, opt)
				var (
					mu    sync.Mutex
					acked = map[string]bool{}
					n     atomic.Int64
					fails atomic.Int64
					stop  = make(chan struct{})
					wg    sync.WaitGroup
				)
				for w := range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							r := testRecord(w*1_000_000 + i)
							if err := l.Append(context.Background(), r); err != nil {
								fails.Add(1)
								continue
							}
							mu.Lock()
							acked[r.DecisionID] = true
							mu.Unlock()
							n.Add(1)
						}
					}()
				}
				waitFor(t, func() bool { return n.Load() >= 300 })
				tc.do(t, path)
				waitFor(t, func() bool { return l.Stats().Relocations >= 1 })
				after := n.Load()
				waitFor(t, func() bool { return n.Load() >= after+300 })
				close(stop)
				wg.Wait()
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				t.Logf("%d acknowledged, %d failed appends, relocations %d", len(acked), fails.Load(), l.Stats().Relocations)

				files, err := Files(path)
				if err != nil {
					t.Fatal(err)
				}
				recs, err := Query(files, Filter{})
				if err != nil {
					t.Fatal(err)
				}
				onDisk := map[string]bool{}
				for _, r := range recs {
					onDisk[r.DecisionID] = true
				}
				missing := 0
				for id := range acked {
					if !onDisk[id] {
						missing++
					}
				}
				if missing > 0 {
					t.Fatalf("%d of %d acknowledged records are in no ledger file", missing, len(acked))
				}
				if res := mustVerify(t, path); res.FirstSeq != 1 {
					t.Fatalf("files start at seq %d", res.FirstSeq)
				}
				if signed {
					if _, ev := audit(t, path, "", v); !ev.OK {
						t.Fatalf("evidence after the relocation: %+v", ev)
					}
				}
				if tc.name == "replaced" {
					aside, _ := filepath.Glob(path + ".replaced-*")
					if len(aside) != 1 {
						t.Fatalf("the replacing file was not kept aside: %v", aside)
					}
					if b, _ := os.ReadFile(aside[0]); !strings.HasPrefix(string(b), `{"seq":1,"prev":""}`) {
						t.Errorf("the file moved aside was changed: %q", b)
					}
				}
			})
		}
	}
}

// TestDirectoryGoneFailsUntilBack removes the ledger's whole directory
// (its lock file too): the ledger fails — every Append is refused, Err says
// why — until the directory is back, then saves what it held, takes the lock
// again and goes on.
func TestDirectoryGoneFailsUntilBack(t *testing.T) {
	s, v := testKey(t)
	dir := filepath.Join(t.TempDir(), "ledger")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ledger.jsonl")
	l := openT(t, path, Options{Signer: s})
	appendN(t, l, 0, 20)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return l.Err() != nil })
	for i := range 3 {
		if err := l.Append(context.Background(), testRecord(100+i)); err == nil {
			t.Fatal("Append succeeded with the ledger's directory gone")
		}
	}
	if !strings.Contains(l.Err().Error(), "no longer names") {
		t.Errorf("Err() = %v", l.Err())
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return l.Err() == nil })
	if _, _, err := lockFile(path + ".lock"); err == nil {
		t.Error("a second writer could take the lock after the recovery")
	}
	appendN(t, l, 200, 5)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	res := mustVerify(t, path)
	if res.FirstSeq != 1 || res.LastSeq != 25 {
		t.Fatalf("seq %d..%d, want 1..25", res.FirstSeq, res.LastSeq)
	}
	if _, ev := audit(t, path, "", v); !ev.OK {
		t.Fatalf("evidence: %+v", ev)
	}
}
