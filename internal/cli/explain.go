package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/consent"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/pipeline"
	"github.com/pare-dev/pare/internal/proxy"
	"github.com/pare-dev/pare/policies"
)

func runExplain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("policies", "", "policies directory (default: the bundled policies)")
	rawURL := fs.String("url", "", "the vendor URL the app calls (required)")
	method := fs.String("method", "", "HTTP method (default POST with a body, GET without)")
	purpose := fs.String("purpose", "", "X-Data-Purpose")
	subject := fs.String("subject", "", "X-Data-Subject")
	service := fs.String("service", "", "the calling service (input.source.service)")
	data := fs.String("data", "", "the body: @FILE, or literal text; without it the body is read from stdin when stdin is not a terminal")
	consents := fs.String("consents", "", "consents file to look the subject up in")
	hmacKey := fs.String("hmac-key-file", "", "master key file for hmac transforms (default: random)")
	var headers listFlag
	fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "proxy explain: "+format+"\n", a...)
		return exitUsage
	}
	if *rawURL == "" {
		return fail("--url is required")
	}
	body, err := readData(*data, stdin)
	if err != nil {
		return fail("%v", err)
	}
	if *method == "" {
		*method = http.MethodGet
		if len(body) > 0 {
			*method = http.MethodPost
		}
	}
	r, err := http.NewRequestWithContext(ctx, strings.ToUpper(*method), *rawURL, bytes.NewReader(body))
	if err != nil {
		return fail("--url: %v", err)
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fail("-H %q: want 'Name: value'", h)
		}
		r.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *purpose != "" {
		r.Header.Set("X-Data-Purpose", *purpose)
	}
	if *subject != "" {
		r.Header.Set("X-Data-Subject", *subject)
	}
	if r.Header.Get("Content-Type") == "" && len(body) > 0 {
		r.Header.Set("Content-Type", sniffType(body))
	}

	var key []byte
	if *hmacKey != "" {
		if key, err = os.ReadFile(*hmacKey); err != nil {
			return fail("%v", err)
		}
		key = bytes.TrimSpace(key)
	}
	eng, err := engine.New(engine.Options{HMACKey: key})
	if err != nil {
		return fail("%v", err)
	}
	var pol *engine.Policy
	if *dir == "" {
		pol, err = engine.Load(ctx, policies.FS, engine.LoadOptions{})
	} else {
		pol, err = engine.LoadDir(ctx, *dir, engine.LoadOptions{})
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	eng.Swap(pol)
	var src consent.Source
	if *consents != "" {
		f, err := consent.OpenFile(*consents, nil)
		if err != nil {
			return fail("%v", err)
		}
		src = f
	}
	// The same pipeline the proxy runs, without a ledger: explain stops
	// before the disclosure, so it cannot disagree with what serve sends.
	pl, err := pipeline.New(pipeline.Config{Engine: eng, Consents: src, Service: *service})
	if err != nil {
		return fail("%v", err)
	}
	req, err := proxy.RequestOf(r)
	if err != nil {
		return fail("%v", err)
	}
	req.Streamable = false // explain prints the body it would send: read it whole
	x := pl.Begin(req)
	defer x.End()
	if err := x.Decide(ctx); err != nil {
		return explainRefusal(stderr, req, x.Input(), x.Decision(), err)
	}
	m, err := x.Minimize(ctx)
	if err != nil {
		return explainRefusal(stderr, req, x.Input(), x.Decision(), err)
	}
	_, _ = stdout.Write(m.Body)
	if len(m.Body) > 0 && !bytes.HasSuffix(m.Body, []byte("\n")) && isTerminal(stdout) {
		fmt.Fprintln(stdout)
	}
	writeExplanation(stderr, x.Input(), x.Decision(), r, body, m)
	return exitOK
}

func readData(data string, stdin io.Reader) ([]byte, error) {
	switch {
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(data[1:])
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		return b, nil
	case data != "":
		return []byte(data), nil
	}
	if f, ok := stdin.(*os.File); ok && (f == nil || isTerminal(f)) {
		return nil, nil
	}
	if stdin == nil {
		return nil, nil
	}
	return io.ReadAll(stdin)
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok || f == nil {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// sniffType guesses the content type of a body given without one, as a
// convenience for explain only; the proxy never guesses.
func sniffType(b []byte) string {
	t := bytes.TrimSpace(b)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return "application/json"
	}
	if bytes.Contains(t, []byte("=")) && !bytes.ContainsAny(t, " \n") {
		return "application/x-www-form-urlencoded"
	}
	return "application/octet-stream"
}

func explainRefusal(w io.Writer, req *pipeline.Request, in *engine.Input, d *engine.Decision, err error) int {
	var e *engine.Error
	if !errors.As(err, &e) {
		e = &engine.Error{Code: engine.CodeEvalError, Reason: err.Error()}
	}
	fmt.Fprintf(w, "REFUSED %d %s\n", e.Code.Status(), e.Code)
	fmt.Fprintf(w, "  reason   %s\n", e.Reason)
	if in == nil { // refused before the input was built (a malformed path)
		in = &engine.Input{Host: req.Host, Method: req.Method, Path: req.Path}
	}
	explainHead(w, in, d)
	fmt.Fprintln(w, "  nothing would be sent.")
	if e.Code.Status() >= 500 && e.Code != engine.CodeConsentUnavailable {
		return exitUsage
	}
	return exitDenied
}

func explainHead(w io.Writer, in *engine.Input, d *engine.Decision) {
	if d != nil && d.Vendor != "" {
		fmt.Fprintf(w, "  vendor   %s (%s)\n", d.Vendor, in.Host)
	} else {
		fmt.Fprintf(w, "  host     %s\n", in.Host)
	}
	fmt.Fprintf(w, "  request  %s %s\n", in.Method, in.Path)
	fmt.Fprintf(w, "  purpose  %s\n", orNone(in.Purpose))
	fmt.Fprintf(w, "  service  %s\n", orNone(in.Service))
	if in.Subject != "" {
		fmt.Fprintf(w, "  subject  %s\n", in.Subject)
	}
	if d != nil && d.Revision != "" {
		fmt.Fprintf(w, "  policy   revision %s\n", d.Revision[:12])
	}
}

func writeExplanation(w io.Writer, in *engine.Input, d *engine.Decision, r *http.Request, body []byte, m *pipeline.Outbound) {
	fmt.Fprintf(w, "ALLOWED\n  reason   %s\n", d.Reason)
	explainHead(w, in, d)
	scheme := "https"
	if !d.TLS {
		scheme = "http (plain, allowed by contract)"
	}
	fmt.Fprintf(w, "  upstream %s port %d\n", scheme, d.Port)
	if d.DryRun {
		fmt.Fprintln(w, "  dry run  the contract is in dry run: the original payload would be sent and this recorded")
	}
	fmt.Fprintf(w, "\nbody (%s, %s): %d → %d bytes\n", r.Header.Get("Content-Type"), d.Body, len(body), len(m.Body))
	writeReport(w, m.BodyReport, d.Transforms)
	if r.URL.RawQuery == "" {
		fmt.Fprintln(w, "\nquery: (none)")
	} else {
		fmt.Fprintln(w, "\nquery:")
		list(w, "sent", m.QueryReport.Kept)
		list(w, "removed", m.QueryReport.Removed)
		list(w, "card numbers", m.QueryReport.Cards)
	}
	fmt.Fprintln(w, "\nheaders:")
	sent := make([]string, 0, len(m.Header))
	for k := range m.Header {
		sent = append(sent, strings.ToLower(k))
	}
	sort.Strings(sent)
	list(w, "sent", sent)
	if m.HeaderReport != nil {
		list(w, "removed", m.HeaderReport.Removed)
	}
}

func writeReport(w io.Writer, rep *filters.Report, transforms map[string]string) {
	if rep == nil {
		return
	}
	list(w, "kept", rep.Kept)
	list(w, "removed", rep.Removed)
	var tr []string
	for _, p := range rep.Transformed {
		if t, ok := transforms[p]; ok {
			tr = append(tr, p+" ("+t+")")
		} else {
			tr = append(tr, p)
		}
	}
	list(w, "transformed", tr)
	list(w, "card numbers", rep.Cards)
}

// list prints one labelled, wrapped list: a policy author reads these to
// see at a glance what leaves and what does not.
func list(w io.Writer, label string, items []string) {
	if len(items) == 0 {
		fmt.Fprintf(w, "  %-12s -\n", label)
		return
	}
	line := fmt.Sprintf("  %-12s ", label)
	width := len(line)
	for i, it := range items {
		sep := ", "
		if i == len(items)-1 {
			sep = ""
		}
		if width+len(it)+len(sep) > 100 && width > 15 {
			fmt.Fprintln(w, strings.TrimRight(line, " "))
			line = strings.Repeat(" ", 15)
			width = 15
		}
		line += it + sep
		width += len(it) + len(sep)
	}
	fmt.Fprintln(w, line)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
