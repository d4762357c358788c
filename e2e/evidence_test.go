package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pare-dev/pare/internal/ledger"
)

// copyLedger copies every file of the ledger directory (ledger, rotated
// files, checkpoint log) into a fresh directory, for an attack on the copy.
func copyLedger(t *testing.T, led string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Dir(led))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		b := readFile(t, filepath.Join(filepath.Dir(led), e.Name()))
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, filepath.Base(led))
}

// disclosures returns the decision ids of the disclosure records in every
// file of the ledger.
func disclosures(t *testing.T, led string) map[string]bool {
	t.Helper()
	files, err := ledger.Files(led)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ledger.Query(files, ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, r := range recs {
		if r.Kind == ledger.KindDisclosure {
			out[r.DecisionID] = true
		}
	}
	return out
}

// TestLedgerEvidence is what an auditor does with a ledger the proxy
// wrote: take the public key, hold the files to the witness checkpoint,
// prove one record to a third party. Then what someone with write access
// to the ledger's volume could do — cut the newest records, delete the
// oldest file, rewrite a record and recompute the chain — and verify
// naming each (exit 1), where the chain alone said "chain intact".
func TestLedgerEvidence(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	witness := filepath.Join(t.TempDir(), "checkpoint")
	p := startProxy(t, proxyConfig{StateDir: state, Args: []string{
		"--ledger-max-bytes", "4KiB", "--ledger-checkpoint", witness, "--checkpoint-every", "5"}})
	for range 24 {
		wantOK(t, p.do(t, ticketRequest(t)))
	}
	code, served := p.adminGet(t, "/debug/ledger/checkpoint")
	if code != 200 || !bytes.HasPrefix(served, []byte(ledger.OriginPrefix)) {
		t.Fatalf("/debug/ledger/checkpoint: %d %q", code, served)
	}
	p.Stop(t)
	led := p.Ledger

	pub, errOut, code := runCLI(t, "ledger", "pubkey", "--state-dir", state)
	if code != 0 || !strings.HasPrefix(pub, "pare-ledger+") {
		t.Fatalf("ledger pubkey: exit %d %q %s", code, pub, errOut)
	}
	pub = strings.TrimSpace(pub)
	if fi, err := os.Stat(filepath.Join(state, "ledger.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("signing key: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	// The checkpoint served while running is one the witness file had too;
	// after the stop, the witness has the final one.
	if msg := readFile(t, witness); !bytes.HasPrefix(msg, []byte(ledger.OriginPrefix)) {
		t.Fatalf("witness file: %q", msg)
	}

	t.Run("verify with the key and the witness", func(t *testing.T) {
		out, errOut, code := runCLI(t, "ledger", "verify", "--pubkey", pub, "--checkpoint", witness, led)
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, want := range []string{"chain intact", "signatures verified", "latest covers seq 1..", "witness"} {
			if !strings.Contains(out, want) {
				t.Errorf("verify output lacks %q:\n%s", want, out)
			}
		}
		// Another key is refused.
		_, other, err := ledger.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := runCLI(t, "ledger", "verify", "--pubkey", other, led); code != 1 || !strings.Contains(errOut, "not signed by") {
			t.Errorf("verify with a key that did not sign: exit %d, want 1: %s", code, errOut)
		}
	})

	t.Run("prove a record and check the proof", func(t *testing.T) {
		proof, errOut, code := runCLI(t, "ledger", "prove", "--seq", "7", "--pubkey", pub, "--checkpoint", witness, led)
		if code != 0 {
			t.Fatalf("prove: exit %d %s", code, errOut)
		}
		f := filepath.Join(t.TempDir(), "proof.json")
		if err := os.WriteFile(f, []byte(proof), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := runCLI(t, "ledger", "check-proof", "--pubkey", pub, f)
		if code != 0 || !strings.Contains(out, "record seq 7 is in ledger") {
			t.Fatalf("check-proof: exit %d %s%s", code, out, errOut)
		}
		var pr ledger.Proof
		if err := json.Unmarshal([]byte(proof), &pr); err != nil {
			t.Fatal(err)
		}
		pr.Record = strings.Replace(pr.Record, `"zendesk"`, `"acme"`, 1)
		b, _ := json.Marshal(pr)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, errOut, code := runCLI(t, "ledger", "check-proof", "--pubkey", pub, f); code != 1 {
			t.Errorf("check-proof of a changed record: exit %d, want 1: %s", code, errOut)
		}
	})

	attacks := []struct {
		name, problem string
		attack        func(t *testing.T, led string)
	}{
		{"newest records cut, with the log", "truncated", func(t *testing.T, led string) {
			lines := bytes.SplitAfter(readFile(t, led), []byte("\n"))
			cut := bytes.Join(lines[:len(lines)-3], nil)
			if err := os.WriteFile(led, cut, 0o600); err != nil {
				t.Fatal(err)
			}
			// The log's newest entries go too: only the witness shows it.
			log := ledger.CheckpointLogName(led)
			entries := bytes.SplitAfter(readFile(t, log), []byte("\n"))
			if err := os.WriteFile(log, bytes.Join(entries[:2], nil), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"oldest rotated file deleted", "missing_start", func(t *testing.T, led string) {
			files, _ := ledger.Files(led)
			if err := os.Remove(files[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{"a record rewritten and the chain recomputed", "rewritten", func(t *testing.T, led string) {
			files, _ := ledger.Files(led)
			last := ""
			for i, f := range files {
				lines := bytes.Split(bytes.TrimSuffix(readFile(t, f), []byte("\n")), []byte("\n"))
				for j, l := range lines {
					if i == 0 && j == 1 {
						l = bytes.Replace(l, []byte(`"purpose":"support"`), []byte(`"purpose":"billing"`), 1)
					}
					k := bytes.LastIndex(l, []byte(`"prev":"`))
					l = append(append([]byte(nil), l[:k]...), `"prev":"`+last+`"}`...)
					lines[j] = l
					last = sha256hex(l)
				}
				if err := os.WriteFile(f, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			cp := copyLedger(t, led)
			a.attack(t, cp)
			if out, errOut, code := runCLI(t, "ledger", "verify", cp); code != 0 && a.problem != "missing_start" {
				// The chain alone is fooled by these; what catches them is
				// the checkpoints.
				t.Logf("chain-only verify: exit %d %s%s", code, out, errOut)
			}
			_, errOut, code := runCLI(t, "ledger", "verify", "--pubkey", pub, "--checkpoint", witness, cp)
			if code != 1 || !strings.Contains(errOut, a.problem) {
				t.Fatalf("verify of the attacked copy: exit %d, want 1 naming %s:\n%s", code, a.problem, errOut)
			}
			t.Log(strings.TrimSpace(errOut))
			// And no report is made from it.
			if _, _, code := runCLI(t, "ledger", "report", "--subject", "u-123", "--pubkey", pub, "--checkpoint", witness, cp); code != 1 {
				t.Errorf("report from the attacked copy: exit %d, want 1", code)
			}
		})
	}
}

// TestLedgerErrorsAreErrors: verify, query and report on something that is
// not a readable ledger exit 2 with a message, never "0 records" or
// "nothing was disclosed".
func TestLedgerErrorsAreErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling.jsonl")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	cases := map[string]string{
		"missing path":           filepath.Join(dir, "no-such-ledger.jsonl"),
		"missing directory":      filepath.Join(dir, "no-such-dir", "ledger.jsonl"),
		"an empty directory":     empty,
		"a file in an empty dir": filepath.Join(empty, "pare-ledger.jsonl"),
		"an unreadable file":     dangling,
	}
	for name, path := range cases {
		for _, cmd := range [][]string{
			{"ledger", "verify", path},
			{"ledger", "query", "--subject", "u-123", path},
			{"ledger", "report", "--subject", "u-123", "--format", "json", path},
		} {
			out, errOut, code := runCLI(t, cmd...)
			if code != 2 || out != "" || !strings.Contains(errOut, "proxy ledger") {
				t.Errorf("%s: %s: exit %d, want 2 with a message and nothing on stdout\nstdout %q\nstderr %q",
					name, cmd[1], code, out, errOut)
			}
		}
	}
}

// TestLedgerFileDeletedUnderLoad deletes the active ledger file while 8
// clients send requests: the proxy notices, saves what the file held and
// continues in a new file. Every request answered 200 has its disclosure
// record in the files that exist afterwards, and the ledger verifies with
// its signed checkpoints.
func TestLedgerFileDeletedUnderLoad(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	p := startProxy(t, proxyConfig{StateDir: state, Args: []string{"--checkpoint-every", "50"}})
	var (
		mu    sync.Mutex
		acked []string
		codes = map[string]int{}
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				req := ticketRequest(t).without("Authorization").with("Authorization", fmt.Sprintf("Bearer del-%d-%d", w, n))
				resp, err := p.try(req)
				if err != nil {
					continue
				}
				mu.Lock()
				if resp.Status == 200 {
					acked = append(acked, resp.Header.Get("X-Pare-Decision-Id"))
				} else {
					var ref struct {
						Error string `json:"error"`
					}
					_ = json.Unmarshal(resp.Body, &ref)
					codes[ref.Error]++
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitUntil(t, 20*time.Second, func() bool { return count() >= 200 })
	if err := os.Remove(p.Ledger); err != nil {
		t.Fatal(err)
	}
	before := count()
	waitUntil(t, 20*time.Second, func() bool {
		_, m := p.adminGet(t, "/metrics")
		return metricValue(m, "pare_ledger_relocations_total") >= 1
	})
	waitUntil(t, 20*time.Second, func() bool { return count() >= before+200 })
	close(stop)
	wg.Wait()
	p.Stop(t)

	mu.Lock()
	defer mu.Unlock()
	for code := range codes {
		if code != "ledger_unavailable" {
			t.Errorf("requests refused with %q (%d): only ledger_unavailable is expected", code, codes[code])
		}
	}
	have := disclosures(t, p.Ledger)
	missing := 0
	for _, id := range acked {
		if !have[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d requests answered 200 have no disclosure record in the ledger files", missing, len(acked))
	}
	if got := len(p.Stub.Received()); got > len(have) {
		t.Errorf("the vendor received %d requests, only %d disclosures are recorded", got, len(have))
	}
	pub, _, _ := runCLI(t, "ledger", "pubkey", "--state-dir", state)
	out, errOut, code := runCLI(t, "ledger", "verify", "--pubkey", strings.TrimSpace(pub), p.Ledger)
	if code != 0 {
		t.Fatalf("verify after the deletion: exit %d %s%s", code, out, errOut)
	}
	t.Logf("%d answered 200, refused %v; %s", len(acked), codes, strings.TrimSpace(out))
}

// TestLedgerDirectoryGoneNotReady removes the ledger's directory under a
// running proxy: within a second or so /readyz answers 503 and requests
// are refused 503 ledger_unavailable with nothing sent; once the directory
// is back, the proxy saves what it held, is ready again and records on.
func TestLedgerDirectoryGoneNotReady(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "ledger")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyConfig{Ledger: filepath.Join(dir, "ledger.jsonl")})
	first := wantOK(t, p.do(t, ticketRequest(t)))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + p.Admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	p.Stub.Reset()
	wantRefusal(t, p.do(t, ticketRequest(t)), 503, "ledger_unavailable")
	wantNothingReceived(t, p.Stub)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.waitAdmin(t, "/readyz")
	second := wantOK(t, p.do(t, ticketRequest(t)))
	p.Stop(t)
	have := disclosures(t, p.Ledger)
	if !have[first] || !have[second] {
		t.Errorf("disclosures before (%v) and after (%v) the directory was gone must both be in the ledger", have[first], have[second])
	}
	if out, errOut, code := runCLI(t, "ledger", "verify", p.Ledger); code != 0 {
		t.Errorf("verify: exit %d %s%s", code, out, errOut)
	}
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not reached within %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
