package engine_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/idptest"
	"github.com/pare-dev/pare/policies"
)

func provider(t testing.TB, kid string) *idptest.Provider {
	t.Helper()
	p, err := idptest.New(kid, "https://idp.webinar-co.example", "pare-legal")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// legalData is data.pare as the identity package installs it.
func legalData(jwks []byte) map[string]any {
	return map[string]any{"legal": map[string]any{
		"jwks": string(jwks), "audience": "pare-legal", "issuer": "https://idp.webinar-co.example"}}
}

func legalInput(requester, approver string) *engine.Input {
	return &engine.Input{Method: "POST", Scheme: "https", Host: "disclosures.legal.example", Port: 443,
		Path: "/v1/disclosures", Purpose: "legal", Subject: "u-123", Service: "legal-desk",
		LegalBasis: "Subpoena 2026-CV-0142", Requester: requester, Approver: approver,
		Headers: map[string]string{"content-type": "application/json"}}
}

func supportInput() *engine.Input {
	return &engine.Input{Method: "POST", Scheme: "https", Host: "webinarco.zendesk.com", Port: 443,
		Path: "/api/v2/tickets.json", Purpose: "support", Subject: "u-123", Service: "billing",
		Headers: map[string]string{"content-type": "application/json"}}
}

// TestLegalTokensUncachedOthersCached: with identity tokens, a legal
// decision calls io.jwt.decode_verify (it reads the clock) and is evaluated
// every time — a token that expires must stop working at once — while every
// other request is cached as before: the call sits behind legal_request.
func TestLegalTokensUncachedOthersCached(t *testing.T) {
	ctx := context.Background()
	idp := provider(t, "k1")
	p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{Data: legalData(idptest.JWKS(idp))})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
	in := legalInput(idp.Token("anna", nil), idp.Token("piotr", nil))
	for range 3 {
		d, err := e.Decide(ctx, p, in, nil)
		if err != nil || !d.Allow {
			t.Fatalf("legal decision %+v, err %v", d, err)
		}
		if d.Identities == nil || *d.Identities != (engine.Identities{Requester: "anna", Approver: "piotr"}) {
			t.Fatalf("identities %+v", d.Identities)
		}
	}
	st := p.CacheStats()
	if st.Misses != 3 || st.ExactHits+st.RouteHits != 0 || st.Entries != 0 {
		t.Fatalf("after 3 legal decisions: %+v; want 3 misses and nothing cached", st)
	}
	// The same tokens on a support ticket are read by no rule that runs.
	support := supportInput()
	support.Requester, support.Approver = in.Requester, in.Approver
	for range 3 {
		if d, err := e.Decide(ctx, p, support, nil); err != nil || !d.Allow || d.Identities != nil {
			t.Fatalf("support decision %+v, err %v", d, err)
		}
	}
	st = p.CacheStats()
	if st.Misses != 4 || st.ExactHits != 2 {
		t.Fatalf("after 3 support decisions: %+v; want 1 more miss and 2 hits", st)
	}
}

// TestSetDataReachesEveryPolicy: the engine's data is installed with every
// policy swapped in after SetData, and a change of keys takes effect for
// the current policy at once, its revision unchanged.
func TestSetDataReachesEveryPolicy(t *testing.T) {
	ctx := context.Background()
	old, rotated := provider(t, "old"), provider(t, "new")
	e, _ := engine.New(engine.Options{HMACKey: []byte("k")})
	if err := e.SetData(legalData(idptest.JWKS(old))); err != nil {
		t.Fatal(err)
	}
	p, err := engine.Load(ctx, policies.FS, engine.LoadOptions{}) // loaded without: a reload from disk
	if err != nil {
		t.Fatal(err)
	}
	e.Swap(p)
	decide := func(idp *idptest.Provider) *engine.Decision {
		t.Helper()
		d, err := e.Decide(ctx, e.Policy(), legalInput(idp.Token("anna", nil), idp.Token("piotr", nil)), nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := decide(old); !d.Allow {
		t.Fatalf("swapped in without the engine's data: %+v", d)
	}
	if d := decide(rotated); d.Allow || d.Code != engine.CodeApproverRequired {
		t.Fatalf("a key not in the JWKS: %+v", d)
	}
	if err := e.SetData(legalData(idptest.JWKS(rotated))); err != nil {
		t.Fatal(err)
	}
	if e.Policy().Revision != p.Revision {
		t.Error("new keys changed the policy's revision")
	}
	if d := decide(rotated); !d.Allow {
		t.Fatalf("rotated keys not in force: %+v", d)
	}
	if d := decide(old); d.Allow {
		t.Fatalf("a withdrawn key still verifies: %+v", d)
	}
	// No keys: legal requests are refused 503, others go on.
	if err := e.SetData(legalData(nil)); err != nil {
		t.Fatal(err)
	}
	if d := decide(rotated); d.Allow || d.Code != engine.CodeIdentityUnavailable || d.Code.Status() != 503 {
		t.Fatalf("without keys: %+v", d)
	}
	if d, err := e.Decide(ctx, e.Policy(), supportInput(), nil); err != nil || !d.Allow {
		t.Fatalf("a support ticket without keys: %+v, %v", d, err)
	}
	if err := e.SetData(map[string]any{"x": make(chan int)}); err == nil {
		t.Error("SetData took a value JSON cannot hold")
	}
}

// TestDecisionIdentitiesAreValidated: the identities a policy returns go
// into the ledger, so they are held to a type and a size.
func TestDecisionIdentitiesAreValidated(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct{ name, value, err string }{
		{"valid", `{"requester": "anna", "approver": ""}`, ""},
		{"not an object", `"anna"`, "identities is a string"},
		{"unknown key", `{"requester": "a", "approver": "b", "token": "x"}`, "unknown key"},
		{"not a string", `{"requester": 1, "approver": "b"}`, "identities.requester is a number"},
		{"too long", `{"requester": "` + strings.Repeat("a", 257) + `", "approver": "b"}`, "at most 256"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"egress.rego": {Data: []byte("package egress\n\ndecision := {\"allow\": false, \"vendor\": \"v\", \"reason\": \"r\", \"identities\": " + tt.value + "}\n")}}
			p, err := engine.Load(ctx, fsys, engine.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			e, _ := engine.New(engine.Options{})
			d, err := e.Decide(ctx, p, supportInput(), nil)
			if tt.err == "" {
				if err != nil || d.Identities == nil || d.Identities.Requester != "anna" {
					t.Fatalf("decision %+v, err %v", d, err)
				}
				return
			}
			if err == nil || engine.CodeOf(err) != engine.CodeEvalError || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("err %v; want policy_error naming %q", err, tt.err)
			}
		})
	}
}
