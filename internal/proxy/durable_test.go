package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/enginetest"
	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/vendorstub"
)

// syncFails is a ledger whose writes reach the file but never become
// durable, as when fsync fails.
type syncFails struct{}

func (syncFails) Append(context.Context, *ledger.Record) error { return nil }
func (syncFails) Submit(*ledger.Record) error                  { return nil }
func (syncFails) Write(context.Context, *ledger.Record) (func(context.Context) error, error) {
	return func(context.Context) error { return errors.New("fsync: input/output error") }, nil
}

// When the disclosure record cannot be made durable, the app never sees the
// vendor's answer: it gets 503 ledger_unavailable.
func TestAnswerWithheldUntilDurable(t *testing.T) {
	stub, err := vendorstub.Start([]string{"webinarco.zendesk.com"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	eng := enginetest.Bundled(t)
	px := newProxy(t, pipeline.Config{Engine: eng, Ledger: syncFails{}, Service: "support"},
		UpstreamOptions{Resolve: map[string]string{"webinarco.zendesk.com:443": stub.Addr}, ExtraCAs: []string{stub.CAFile}})
	req := httptest.NewRequest("POST", "http://webinarco.zendesk.com/api/v2/tickets.json", strings.NewReader(`{"ticket":{"subject":"s"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Data-Purpose", "support")
	rec := httptest.NewRecorder()
	px.ServeHTTP(rec, req)
	var body struct{ Error string }
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	if rec.Code != http.StatusServiceUnavailable || body.Error != string(engine.CodeLedgerError) {
		t.Fatalf("status %d body %s, want 503 ledger_unavailable", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), "received_bytes") {
		t.Fatal("the vendor's answer reached the app")
	}
}
