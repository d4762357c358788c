package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/idptest"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/policies"
)

// tokenPipeline runs the bundled policy (or fsys) with identity tokens, the
// keys of idp in force, and a real ledger.
func tokenPipeline(t *testing.T, fsys fstest.MapFS, idp *idptest.Provider) (*Pipeline, string) {
	t.Helper()
	ctx := context.Background()
	var pol *engine.Policy
	var err error
	if fsys == nil {
		pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{})
	} else {
		pol, err = engine.Load(ctx, fsys, engine.LoadOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	eng, _ := engine.New(engine.Options{HMACKey: []byte("0123456789abcdef")})
	if err := eng.SetData(map[string]any{"legal": map[string]any{
		"jwks": string(idptest.JWKS(idp)), "audience": idp.Audience, "issuer": idp.Issuer}}); err != nil {
		t.Fatal(err)
	}
	eng.Swap(pol)
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	led, err := ledger.Open(path, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { led.Close() })
	p, err := New(Config{Engine: eng, Ledger: led, Service: "legal-desk", LegalTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	return p, path
}

// run sends a legal disclosure with the given headers through the
// pipeline's stages and returns the refusal (nil: it would have left).
func run(p *Pipeline, kv ...string) (*Exchange, *Refusal) {
	h := http.Header{"Content-Type": {"application/json"}, "X-Data-Purpose": {"legal"}, "X-Legal-Basis": {"Subpoena 2026-CV-0142"}}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	body := `{"reference": "R-1", "account": {"id": "u-123", "email": "maria@example.org"}}`
	x := p.Begin(&Request{Method: "POST", Scheme: "https", Host: "disclosures.legal.example", Path: "/v1/disclosures",
		Header: h, Body: strings.NewReader(body), ContentLength: int64(len(body))})
	defer x.End()
	if _, err := x.Prepare(context.Background()); err != nil {
		return x, x.Refuse(err)
	}
	if err := x.Durable(context.Background()); err != nil {
		return x, x.Refuse(err)
	}
	x.Complete(200)
	return x, nil
}

func records(t *testing.T, path string) (raw []byte, recs []ledger.Record) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var r ledger.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return raw, recs
}

// With identity tokens the ledger names the people the policy verified and
// never holds a token; tokens are checked for their shape before the
// policy, and reach the policy only as input.requester and input.approver.
func TestLegalTokensInTheLedger(t *testing.T) {
	idp, err := idptest.New("k1", "https://idp.webinar-co.example", "pare-legal")
	if err != nil {
		t.Fatal(err)
	}
	p, path := tokenPipeline(t, nil, idp)
	anna, piotr := idp.Token("anna@webinar-co.example", nil), idp.Token("piotr@webinar-co.example", nil)
	expired := idp.Token("piotr@webinar-co.example", map[string]any{"exp": 1})

	x, r := run(p, "X-Data-Requester", anna, "X-Legal-Approver", piotr)
	if r != nil {
		t.Fatalf("two verified people: refused %+v", r)
	}
	if in := x.Input(); in.Headers["x-legal-approver"] != "[present]" || in.Headers["x-data-requester"] != "[present]" || in.Approver != piotr {
		t.Errorf("input headers %v, approver %q", in.Headers, in.Approver)
	}
	if _, r := run(p, "X-Data-Requester", anna, "X-Legal-Approver", anna); r == nil || r.Code != engine.CodeApproverRequired {
		t.Errorf("the requester's own token as approver: %+v", r)
	}
	if _, r := run(p, "X-Data-Requester", anna, "X-Legal-Approver", expired); r == nil || r.Code != engine.CodeApproverRequired {
		t.Errorf("an expired approver token: %+v", r)
	}
	for _, v := range []string{"piotr@webinar-co.example", "a.b", "a.b.c.d", "a.b.c d", strings.Repeat("a", maxToken) + ".b.c"} {
		if _, r := run(p, "X-Data-Requester", anna, "X-Legal-Approver", v); r == nil || r.Code != engine.CodeBadRequest {
			t.Errorf("approver %.40q: %+v, want bad_request", v, r)
		}
	}

	raw, recs := records(t, path)
	for _, tok := range []string{anna, piotr, expired} {
		if sig := tok[strings.LastIndexByte(tok, '.')+1:]; bytes.Contains(raw, []byte(sig)) || bytes.Contains(raw, []byte(tok[:strings.IndexByte(tok, '.')+8])) {
			t.Fatal("a token is in the ledger")
		}
	}
	var disclosure, sameTwice, exp *ledger.Record
	for i := range recs {
		switch r := &recs[i]; {
		case r.Kind == ledger.KindDisclosure:
			disclosure = r
		case r.Kind == ledger.KindRefusal && sameTwice == nil:
			sameTwice = r
		case r.Kind == ledger.KindRefusal && exp == nil:
			exp = r
		}
	}
	if disclosure == nil || disclosure.Requester != "anna@webinar-co.example" || disclosure.Approver != "piotr@webinar-co.example" {
		t.Fatalf("disclosure %+v: want the verified subjects", disclosure)
	}
	if sameTwice == nil || sameTwice.Requester != "anna@webinar-co.example" || sameTwice.Approver != "anna@webinar-co.example" {
		t.Errorf("refusal (one person twice) %+v", sameTwice)
	}
	if exp == nil || exp.Requester != "anna@webinar-co.example" || exp.Approver != "" {
		t.Errorf("refusal (expired approver) %+v: an unverified approver is not recorded", exp)
	}
}

// A policy that allows a legal disclosure without verifying the tokens
// (one written before legal_jwks) sends nothing: the pipeline wants two
// different verified people in the decision.
func TestLegalTokensNeedVerifiedPeople(t *testing.T) {
	idp, err := idptest.New("k1", "https://idp.webinar-co.example", "pare-legal")
	if err != nil {
		t.Fatal(err)
	}
	allow := func(identities string) fstest.MapFS {
		return fstest.MapFS{"egress.rego": {Data: []byte(`package egress

decision := {"allow": true, "vendor": "legal", "reason": "ok", "fields": ["reference"], "body": "filter"` + identities + `}
`)}}
	}
	anna, piotr := idp.Token("anna", nil), idp.Token("piotr", nil)
	for _, tt := range []struct{ name, identities, code string }{
		{"no identities", ``, "approver_required"},
		{"one person", `, "identities": {"requester": "anna", "approver": "anna"}`, "approver_required"},
		{"approver unverified", `, "identities": {"requester": "anna", "approver": ""}`, "approver_required"},
		{"two people", `, "identities": {"requester": "anna", "approver": "piotr"}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := tokenPipeline(t, allow(tt.identities), idp)
			_, r := run(p, "X-Data-Requester", anna, "X-Legal-Approver", piotr)
			switch {
			case tt.code == "" && r != nil:
				t.Fatalf("refused %+v", r)
			case tt.code != "" && (r == nil || string(r.Code) != tt.code):
				t.Fatalf("refusal %+v, want %s", r, tt.code)
			}
		})
	}
}
