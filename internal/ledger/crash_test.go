package ledger

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const crashEnv = "PARE_LEDGER_CRASH_CHILD"

// TestCrashChild is the process TestCrash kills: it appends from several
// goroutines forever and prints each acknowledged seq.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestCrash")
	}
	l, err := Open(path, Options{MaxBytes: 32 << 10, Logger: quietLogger(nil)})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	for w := range 8 {
		go func() {
			for i := 0; ; i++ {
				r := testRecord(w*1_000_000 + i)
				if err := l.Append(context.Background(), r); err != nil {
					fmt.Println("append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Printf("ack %d\n", r.Seq) // unbuffered: one write per ack
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestCrash kills a writer with SIGKILL mid-stream and checks that every
// acknowledged record survived, the chain verifies, and a reopened ledger
// continues it.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	acked := map[uint64]bool{}
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		killAt := 300 + round*250
		n := 0
		deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
		for sc.Scan() {
			line := sc.Text()
			seq, ok := strings.CutPrefix(line, "ack ")
			if !ok {
				t.Fatalf("child: %s", line)
			}
			v, err := strconv.ParseUint(seq, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			acked[v] = true
			if n++; n == killAt {
				_ = cmd.Process.Kill() // SIGKILL: no deferred code, no Close
			}
		}
		deadline.Stop()
		_ = cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child stopped after %d acks", round, n)
		}

		// Reopening removes a torn tail if the kill left one.
		l := openT(t, path, Options{MaxBytes: 32 << 10})
		t.Logf("round %d: %d acks before the kill, torn tails removed: %d", round, n, l.Stats().TornTails)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		res := mustVerify(t, path)
		files, _ := Files(path)
		recs, err := Query(files, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		onDisk := map[uint64]bool{}
		for _, r := range recs {
			onDisk[r.Seq] = true
		}
		for s := range acked {
			if !onDisk[s] {
				t.Fatalf("round %d: acknowledged seq %d is not in the ledger (%d records, %d files)", round, s, res.Records, len(files))
			}
		}
	}
}
