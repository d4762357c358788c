package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestAdminEndpoints scrapes the admin listener after some traffic:
// /metrics passes promlint and counts requests by vendor, purpose and
// outcome (bounded labels: never a raw host, path or subject);
// /debug/policy lists every bundled vendor with its hosts; /healthz and
// /readyz answer 200; and none of it is reachable through the egress port.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	p := startProxy(t, proxyConfig{})
	wantOK(t, p.do(t, ticketRequest(t)))
	wantOK(t, p.do(t, paymentRequest(t)))
	wantRefusal(t, p.do(t, request{Method: "POST", URL: "http://api.tracking-pixels.example/collect?uid=u-123",
		Header: hdr("Content-Type", "application/json", "X-Data-Purpose", "analytics", "X-Data-Subject", "u-secret-subject"),
		Body:   []byte(`{}`)}), 403, "unknown_vendor")
	wantRefusal(t, p.do(t, ticketRequest(t).without("X-Data-Purpose").with("X-Data-Purpose", "sell-it-all")), 403, "consent_required")

	code, exposition := p.adminGet(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}

	t.Run("promlint", func(t *testing.T) {
		problems, err := promlint.New(bytes.NewReader(exposition)).Lint()
		if err != nil {
			t.Fatalf("promlint: %v", err)
		}
		for _, pr := range problems {
			t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
		}
	})

	t.Run("ledger", func(t *testing.T) {
		// Outcomes ride on later batches; disclosures and refusals are
		// durable before their answers, so at least those four are counted.
		if got := metricValue(exposition, "pare_ledger_records_total"); got < 4 {
			t.Errorf("pare_ledger_records_total = %v, want >= 4", got)
		}
		fsyncs := metricValue(exposition, "pare_ledger_fsyncs_total")
		if fsyncs < 1 || metricValue(exposition, "pare_ledger_fsync_duration_seconds_count") != fsyncs {
			t.Errorf("pare_ledger_fsyncs_total = %v, fsync histogram count = %v: want equal and >= 1",
				fsyncs, metricValue(exposition, "pare_ledger_fsync_duration_seconds_count"))
		}
	})

	t.Run("requests by vendor, purpose and outcome", func(t *testing.T) {
		for _, c := range []struct {
			labels []string
			want   float64
		}{
			{[]string{`vendor="zendesk"`, `purpose="support"`, `outcome="forwarded"`}, 1},
			{[]string{`vendor="stripe"`, `purpose="payment"`, `outcome="forwarded"`}, 1},
			{[]string{`outcome="unknown_vendor"`}, 1},
			// A purpose no contract knows is folded into "other".
			{[]string{`vendor="zendesk"`, `purpose="other"`, `outcome="consent_required"`}, 1},
		} {
			if got := metricValue(exposition, "pare_egress_requests_total", c.labels...); got != c.want {
				t.Errorf("pare_egress_requests_total{%s} = %v, want %v", strings.Join(c.labels, ","), got, c.want)
			}
		}
		for _, line := range strings.Split(string(exposition), "\n") {
			if !strings.HasPrefix(line, "pare_") {
				continue
			}
			for _, leak := range []string{"tracking-pixels", "u-secret-subject", "sell-it-all", "/collect", "u-123"} {
				if strings.Contains(line, leak) {
					t.Errorf("unbounded label value %q in %s", leak, line)
				}
			}
		}
		for _, name := range []string{
			"pare_egress_fields_removed_total", "pare_policy_decision_duration_seconds_count",
			"pare_upstream_duration_seconds_count", "pare_policy_reloads_total", "pare_policy_info",
			"pare_ledger_write_errors_total", "pare_egress_requests_in_flight",
		} {
			if metricValue(exposition, name) < 0 {
				t.Errorf("metric %s missing", name)
			}
		}
		if v := metricValue(exposition, "pare_egress_fields_removed_total", `vendor="zendesk"`); v <= 0 {
			t.Errorf(`pare_egress_fields_removed_total{vendor="zendesk"} = %v, want > 0`, v)
		}
	})

	t.Run("debug/policy", func(t *testing.T) {
		code, b := p.adminGet(t, "/debug/policy")
		if code != http.StatusOK {
			t.Fatalf("/debug/policy %d", code)
		}
		var dp struct {
			Revision string   `json:"revision"`
			Files    []string `json:"files"`
			Vendors  []struct {
				ID    string   `json:"id"`
				Hosts []string `json:"hosts"`
			} `json:"vendors"`
		}
		if err := json.Unmarshal(b, &dp); err != nil {
			t.Fatal(err)
		}
		var hosts, ids []string
		for _, v := range dp.Vendors {
			ids = append(ids, v.ID)
			hosts = append(hosts, v.Hosts...)
		}
		sort.Strings(hosts)
		want := sortedCopy(vendorHosts)
		if strings.Join(hosts, ",") != strings.Join(want, ",") {
			t.Errorf("/debug/policy hosts %v, want %v", hosts, want)
		}
		if got := strings.Join(ids, ","); got != "eventbrite,hosting,legal,mailchimp,sister,stripe,zendesk" {
			t.Errorf("/debug/policy vendors %s", got)
		}
		if len(dp.Revision) != 64 || len(dp.Files) == 0 {
			t.Errorf("/debug/policy revision %q, %d files", dp.Revision, len(dp.Files))
		}
	})

	t.Run("healthz and readyz", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, b := p.adminGet(t, path); code != http.StatusOK {
				t.Errorf("%s %d %s", path, code, b)
			}
		}
	})

	t.Run("admin is not reachable through the egress port", func(t *testing.T) {
		p.Stub.Reset()
		for _, path := range []string{"/metrics", "/debug/policy", "/debug/pprof/"} {
			resp, err := http.Get("http://" + p.Egress + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("egress %s answered 200", path)
			}
		}
		wantNothingReceived(t, p.Stub)
	})
}

// TestGCPercent: Pare runs with its own GC target unless told otherwise by
// flag, and GOGC in the environment wins over both, as for any Go program.
func TestGCPercent(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	for _, c := range []struct {
		name     string
		cfg      proxyConfig
		want     float64
		memLimit float64 // go_gc_gomemlimit_bytes
	}{
		// The soft memory limit is the body budget (256 MiB) plus 256 MiB:
		// without it, a full budget let the heap grow to 5x at GOGC 400.
		{"default", proxyConfig{}, 400, 512 * mib},
		{"flag", proxyConfig{Args: []string{"--gc-percent", "250", "--max-body-memory", "64MiB"}}, 250, 320 * mib},
		{"GOGC and GOMEMLIMIT win", proxyConfig{Args: []string{"--gc-percent", "250"}, Env: []string{"GOGC=150", "GOMEMLIMIT=1GiB"}}, 150, 1024 * mib},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, c.cfg)
			_, exposition := p.adminGet(t, "/metrics")
			if got := metricValue(exposition, "go_gc_gogc_percent"); got != c.want {
				t.Errorf("go_gc_gogc_percent = %v, want %v", got, c.want)
			}
			if got := metricValue(exposition, "go_gc_gomemlimit_bytes"); got != c.memLimit {
				t.Errorf("go_gc_gomemlimit_bytes = %v, want %v", got, c.memLimit)
			}
		})
	}
}
