package cli

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pare-dev/pare/internal/vendorstub"
)

//go:embed demodata
var demoData embed.FS

type demoCase struct {
	title, method, url, contentType, file, purpose, subject string
	headers                                                 map[string]string
	body                                                    string // inline body instead of file
}

var demoCases = []demoCase{
	{title: "A payment: billing charges a card through Stripe", method: "POST",
		url: "http://api.stripe.com/v1/payment_intents", contentType: "application/x-www-form-urlencoded",
		file: "payment.form", purpose: "payment", subject: "u-123",
		headers: map[string]string{"Authorization": "Bearer sk_test_demo", "Idempotency-Key": "b7d1e3a0", "X-Request-Id": "req-81be2"}},
	{title: "A support ticket to Zendesk: requester only, no billing or device data", method: "POST",
		url: "http://webinarco.zendesk.com/api/v2/tickets.json", contentType: "application/json",
		file: "ticket.json", purpose: "support", subject: "u-123"},
	{title: "A card number typed into a support ticket: the card guard redacts it", method: "POST",
		url: "http://webinarco.zendesk.com/api/v2/tickets.json", contentType: "application/json",
		file: "ticket-card.json", purpose: "support", subject: "u-123"},
	{title: "A marketing sync for a user who opted in", method: "POST",
		url: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members", contentType: "application/json",
		file: "member.json", purpose: "marketing", subject: "u-123"},
	{title: "The same sync for a user who never gave consent", method: "POST",
		url: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members", contentType: "application/json",
		file: "member.json", purpose: "marketing", subject: "u-456"},
	{title: "An opted-in user whose browser sends Global Privacy Control", method: "POST",
		url: "http://us21.api.mailchimp.com/3.0/lists/a1b2c3/members", contentType: "application/json",
		file: "member.json", purpose: "marketing", subject: "u-123", headers: map[string]string{"X-Data-GPC": "1"}},
	{title: "A vendor no contract covers", method: "POST",
		url: "http://api.tracking-pixels.example/collect", contentType: "application/json",
		file: "member.json", purpose: "analytics", subject: "u-123"},
	{title: "A malformed body", method: "POST",
		url: "http://webinarco.zendesk.com/api/v2/tickets.json", contentType: "application/json",
		body: `{"ticket": {"subject": "oops", }`, purpose: "support", subject: "u-123"},
}

var demoHosts = []string{"api.stripe.com", "webinarco.zendesk.com", "us21.api.mailchimp.com",
	"www.eventbriteapi.com", "webinar-co-media.storage.example-cloud.com", "ingest.webinar-group.example",
	"disclosures.legal.example"}

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	width := fs.Int("width", 110, "output width")
	keep := fs.String("ledger", "", "write the demo's ledger to this file and keep it (for ledger report, ropa, datamap); it must not exist yet")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	dir, err := os.MkdirTemp("", "pare-demo-")
	if err != nil {
		fmt.Fprintln(stderr, "proxy demo:", err)
		return exitFail
	}
	defer os.RemoveAll(dir)
	stub, err := vendorstub.Start(demoHosts, dir)
	if err != nil {
		fmt.Fprintln(stderr, "proxy demo:", err)
		return exitFail
	}
	defer stub.Close()
	consents, _ := demoData.ReadFile("demodata/consents.yaml")
	consentFile := filepath.Join(dir, "consents.yaml")
	if err := os.WriteFile(consentFile, consents, 0o600); err != nil {
		fmt.Fprintln(stderr, "proxy demo:", err)
		return exitFail
	}

	c := defaultConfig()
	c.Listen, c.Admin = "127.0.0.1:0", ""
	c.Service = "billing"
	c.Ledger = filepath.Join(dir, "ledger.jsonl")
	c.StateDir = filepath.Join(dir, "state") // a throwaway signing key, not the user's
	c.LedgerCheckpoint = filepath.Join(dir, "checkpoint")
	if *keep != "" {
		// A fresh file only: appending the demo to a real ledger would mix made-up
		// disclosures into the record of real ones.
		if _, err := os.Lstat(*keep); err == nil {
			fmt.Fprintf(stderr, "proxy demo: --ledger %s exists; give a new file\n", *keep)
			return exitUsage
		}
		c.Ledger = *keep
	}
	c.Consents = consentFile
	c.UpstreamCA = []string{stub.CAFile}
	for _, h := range demoHosts {
		c.Resolve = append(c.Resolve, h+":443:"+stub.Addr)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, c, newLogger(io.Discard, "text", "error"), func(egress, _, _ string) { addrc <- egress })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		fmt.Fprintln(stderr, "proxy demo: proxy did not start:", err)
		return exitFail
	case <-time.After(30 * time.Second):
		fmt.Fprintln(stderr, "proxy demo: proxy did not start in 30s")
		return exitFail
	}
	proxyURL, _ := url.Parse("http://" + addr)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 30 * time.Second}

	fmt.Fprintf(stdout, "Pare demo — the proxy runs on %s with the bundled policies, as service \"billing\";\n", addr)
	fmt.Fprintf(stdout, "vendors are local TLS stubs at %s. The app sends plain HTTP (HTTP_PROXY); Pare sends TLS.\n", stub.Addr)
	for i, dc := range demoCases {
		body := []byte(dc.body)
		if dc.file != "" {
			body, _ = demoData.ReadFile("demodata/" + dc.file)
			body = bytes.TrimSpace(body)
		}
		stub.Reset()
		req, _ := http.NewRequestWithContext(ctx, dc.method, dc.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", dc.contentType)
		req.Header.Set("X-Data-Purpose", dc.purpose)
		req.Header.Set("X-Data-Subject", dc.subject)
		for k, v := range dc.headers {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		fmt.Fprintf(stdout, "\n%s\n%d. %s\n", strings.Repeat("━", *width), i+1, dc.title)
		fmt.Fprintf(stdout, "   %s %s   purpose=%s subject=%s\n", dc.method, dc.url, dc.purpose, dc.subject)
		if err != nil {
			fmt.Fprintf(stdout, "   request failed: %v\n", err)
			continue
		}
		respBody, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := stub.Received()
		if resp.StatusCode != http.StatusOK || len(got) == 0 {
			var ref refusalBody
			_ = json.Unmarshal(respBody, &ref)
			fmt.Fprintf(stdout, "   ✗ %d %s — %s\n", resp.StatusCode, ref.Error, ref.Reason)
			fmt.Fprintf(stdout, "     the vendor received: nothing (%d requests)\n", len(got))
			continue
		}
		fmt.Fprintf(stdout, "   ✓ %d forwarded over TLS (decision %s)\n", resp.StatusCode, resp.Header.Get("X-Pare-Decision-Id"))
		sideBySide(stdout, *width, req.Header, dc.contentType, body, got[0])
	}
	cancel()
	<-errc
	fmt.Fprintf(stdout, "\n%s\nEvery request above is in the disclosure ledger, hash-chained and fsync'd before it left:\n\n", strings.Repeat("━", *width))
	fmt.Fprintln(stdout, "$ proxy ledger verify")
	ledgerVerify([]string{c.Ledger}, stdout, stdout)
	fmt.Fprintln(stdout, "\n$ proxy ledger query --subject u-123    # what was disclosed about Maria, to whom, why")
	ledgerQuery([]string{"--subject", "u-123", c.Ledger}, stdout, stdout)
	fmt.Fprintln(stdout, "\nNext:")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy serve     # the proxy on the bundled policies")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy explain --url http://webinarco.zendesk.com/api/v2/tickets.json --purpose support --data @../shared/payloads/ticket.json")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy demo --ledger demo.jsonl     # keep the demo's ledger, then:")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy ledger report --subject u-123 --for subject --company 'Webinar Co' --privacy-contact privacy@webinar-co.example demo.jsonl > report.html")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy ropa --company 'Webinar Co' --privacy-contact privacy@webinar-co.example demo.jsonl > ropa.html")
	fmt.Fprintln(stdout, "  go run ./cmd/proxy datamap demo.jsonl > datamap.html")
	return exitOK
}

type refusalBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

// sideBySide prints what the app sent beside what the vendor received,
// one field a line, aligned by field path.
func sideBySide(w io.Writer, width int, sentHdr http.Header, ct string, sent []byte, got vendorstub.Received) {
	col := (width - 7) / 2
	left, right := flatten(ct, sent), flatten(ct, got.Body)
	recv := map[string]string{}
	for _, kv := range right {
		recv[kv[0]] = kv[1]
	}
	fmt.Fprintf(w, "   %-*s │ %s\n", col, "THE APP SENT", "THE VENDOR RECEIVED")
	fmt.Fprintf(w, "   %s─┼─%s\n", strings.Repeat("─", col), strings.Repeat("─", col))
	seen := map[string]bool{}
	for _, kv := range left {
		seen[kv[0]] = true
		l := kv[0] + " = " + kv[1]
		r, ok := recv[kv[0]]
		switch {
		case !ok:
			r = "✂"
		case r == kv[1]:
			r = l
		default:
			r = kv[0] + " = " + r
		}
		row(w, col, l, r)
	}
	for _, kv := range right {
		if !seen[kv[0]] {
			row(w, col, "", kv[0]+" = "+kv[1])
		}
	}
	var hs []string
	for k := range sentHdr {
		if got.Header.Get(k) == "" {
			hs = append(hs, strings.ToLower(k))
		}
	}
	if len(hs) > 0 {
		sort.Strings(hs)
		fmt.Fprintf(w, "   headers removed: %s\n", strings.Join(hs, ", "))
	}
}

// row prints two cells side by side, wrapping long values so that nothing
// the vendor received is hidden behind an ellipsis.
func row(w io.Writer, col int, l, r string) {
	ls, rs := wrap(l, col), wrap(r, col)
	for i := 0; i < len(ls) || i < len(rs); i++ {
		var a, b string
		if i < len(ls) {
			a = ls[i]
		}
		if i < len(rs) {
			b = rs[i]
		}
		fmt.Fprintf(w, "   %s │ %s\n", pad(a, col), b)
	}
}

func wrap(s string, n int) []string {
	r := []rune(s)
	var out []string
	for len(r) > n {
		out = append(out, string(r[:n]))
		r = append([]rune("  "), r[n:]...)
	}
	return append(out, string(r))
}

func pad(s string, n int) string {
	s = clip(s, n)
	return s + strings.Repeat(" ", n-utf8.RuneCountInString(s))
}

func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// flatten lists a body's leaves as (path, value) in document order, for
// display only.
func flatten(ct string, body []byte) [][2]string {
	var out [][2]string
	if strings.Contains(ct, "json") {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var walk func(prefix string) error
		walk = func(prefix string) error {
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			switch t := tok.(type) {
			case json.Delim:
				switch t {
				case '{':
					for dec.More() {
						k, err := dec.Token()
						if err != nil {
							return err
						}
						if err := walk(join(prefix, fmt.Sprint(k))); err != nil {
							return err
						}
					}
				case '[':
					for i := 0; dec.More(); i++ {
						if err := walk(join(prefix, fmt.Sprint(i))); err != nil {
							return err
						}
					}
				}
				_, err = dec.Token()
				return err
			case string:
				out = append(out, [2]string{prefix, fmt.Sprintf("%q", t)})
			default:
				out = append(out, [2]string{prefix, fmt.Sprint(t)})
			}
			return nil
		}
		if err := walk(""); err != nil && len(out) == 0 {
			return [][2]string{{"(body)", clip(string(body), 60)}}
		}
		return out
	}
	for _, pair := range strings.Split(string(body), "&") {
		k, v, _ := strings.Cut(pair, "=")
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		k = strings.NewReplacer("][", "/", "[", "/", "]", "").Replace(k)
		out = append(out, [2]string{k, v})
	}
	return out
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "/" + k
}
