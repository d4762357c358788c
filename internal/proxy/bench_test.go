package proxy

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/cputime"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/enginetest"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/vendorstub"
)

// BenchmarkServeHTTP is one checkout.json payment through the whole proxy
// (decision, mask, ledger with fsync, TLS to a local stub), without a client
// connection: allocations here are the proxy's own.
//
// Its sub-benchmarks run the ledger without checkpoints (the hash chain
// only) and with signed checkpoints as `proxy serve` runs it (the Merkle
// tree on every record, a signed checkpoint every DefaultCheckpointEvery
// records or DefaultCheckpointInterval, written to the checkpoint log and a
// witness file): issue 11's cost of checkpoints. cpu-ns/op is the process's
// CPU per request (the stub's included, alike in both), which waiting for
// a core on a shared machine does not inflate; compare the two in
// alternating runs (BENCHMARKS.md says how).
// checkoutSetup gives the proxy benchmarks checkout.json, a Stripe stub
// (closed when b ends) and an engine with the bundled policies.
func checkoutSetup(b *testing.B) ([]byte, *vendorstub.Stub, *engine.Engine) {
	body, err := os.ReadFile("../../filters/testdata/checkout.json")
	if err != nil {
		b.Fatal(err)
	}
	stub, err := vendorstub.Start([]string{"api.stripe.com"}, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stub.Close() })
	stub.SetRespond(func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.Write([]byte(`{"ok":true}`)) })
	eng := enginetest.Bundled(b)
	return body, stub, eng
}

// checkoutRequest is a checkout.json payment as billing sends it.
func checkoutRequest(body []byte) *http.Request {
	req := httptest.NewRequest("POST", "http://api.stripe.com/v1/payment_intents", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk_test")
	req.Header.Set("X-Data-Purpose", "payment")
	req.Header.Set("X-Data-Subject", "u-1")
	return req
}

func BenchmarkServeHTTP(b *testing.B) {
	body, stub, eng := checkoutSetup(b)
	skey, _, err := ledger.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		opt  func(dir string) ledger.Options
	}{
		{"checkpoints=off", func(string) ledger.Options { return ledger.Options{} }},
		{"checkpoints=on", func(dir string) ledger.Options {
			return ledger.Options{Signer: signer, WitnessPath: filepath.Join(dir, "witness")}
		}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			ldir := b.TempDir()
			led, err := ledger.Open(filepath.Join(ldir, "ledger.jsonl"), mode.opt(ldir))
			if err != nil {
				b.Fatal(err)
			}
			defer led.Close()
			px := newProxy(b, pipeline.Config{Engine: eng, Ledger: led, Service: "billing"},
				UpstreamOptions{Resolve: map[string]string{"api.stripe.com:443": stub.Addr}, ExtraCAs: []string{stub.CAFile}})
			b.ReportAllocs()
			b.ResetTimer() // the setup above is not the request path
			cpu := cputime.Report(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					px.ServeHTTP(rec, checkoutRequest(body))
					if rec.Code != 200 {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
			cpu()
			b.ReportMetric(float64(led.Stats().Checkpoints), "checkpoints")
		})
	}
}
