package e2e

// Real, unchanged HTTPS clients going through the sidecar in drop-in mode:
// each is told only HTTPS_PROXY and which CA to trust, the way an app's
// vendor SDK would be deployed — curl, a Go program using
// http.ProxyFromEnvironment, Python's urllib and Node's https module.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// clientSpec is a request handed to a client program on stdin, and
// clientResult what it prints back.
type clientSpec struct {
	Method  string      `json:"method"`
	URL     string      `json:"url"`
	Headers [][2]string `json:"headers"`
	Body    string      `json:"body"` // base64
}

type clientResult struct {
	Status  int                 `json:"status"`
	Proto   string              `json:"proto"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"` // base64
	Error   string              `json:"error"`
}

// httpsURL turns a request's http:// vendor URL into the https:// URL an
// unmodified app calls.
func httpsURL(u string) string { return "https://" + strings.TrimPrefix(u, "http://") }

func specOf(r request) clientSpec {
	return clientSpec{Method: r.Method, URL: httpsURL(r.URL), Headers: r.Header, Body: base64.StdEncoding.EncodeToString(r.Body)}
}

// runClient runs a client program with the drop-in environment and returns
// what it got.
func (p *proxyProc) runClient(t testing.TB, r request, env []string, name string, args ...string) response {
	t.Helper()
	spec, _ := json.Marshal(specOf(r))
	cmd := exec.Command(name, args...)
	cmd.Env = append(append(cleanEnv(),
		"HTTPS_PROXY=http://"+p.Egress, "https_proxy=http://"+p.Egress,
		"SSL_CERT_FILE="+p.CAFile(), "NODE_EXTRA_CA_CERTS="+p.CAFile()), env...)
	cmd.Stdin = bytes.NewReader(spec)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s client: %v\n%s", name, err, stderr.String())
	}
	var res clientResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s client printed %q: %v\n%s", name, out, err, stderr.String())
	}
	if res.Error != "" {
		t.Fatalf("%s client: %s", name, res.Error)
	}
	body, _ := base64.StdEncoding.DecodeString(res.Body)
	h := http.Header{}
	for k, vs := range res.Headers {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return response{Status: res.Status, Header: h, Body: body}
}

// requireTool finds an interpreter the machine has; CI must have it.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed; CI must have it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return bin
}

// goClient is this test binary run again as a plain Go program: it uses
// http.DefaultClient, whose transport takes the proxy from HTTPS_PROXY
// (http.ProxyFromEnvironment) and trusts what SSL_CERT_FILE names.
func (p *proxyProc) goClient(t testing.TB, r request) response {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p.runClient(t, r, []string{goClientEnv + "=1"}, exe)
}

const goClientEnv = "PARE_E2E_GO_CLIENT"

// goClientMain is the Go client program (see goClient).
func goClientMain() int {
	var spec clientSpec
	res := clientResult{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(res) }()
	if err := json.NewDecoder(os.Stdin).Decode(&spec); err != nil {
		res.Error = err.Error()
		return 0
	}
	body, _ := base64.StdEncoding.DecodeString(spec.Body)
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(spec.Method, spec.URL, rd)
	if err != nil {
		res.Error = err.Error()
		return 0
	}
	for _, kv := range spec.Headers {
		req.Header.Add(kv[0], kv[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		res.Error = err.Error()
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	res.Status, res.Proto, res.Headers, res.Body = resp.StatusCode, resp.Proto, resp.Header, base64.StdEncoding.EncodeToString(b)
	return 0
}

// pythonClient is Python's urllib: it reads HTTPS_PROXY itself and its
// default SSL context trusts SSL_CERT_FILE.
const pythonClient = `
import base64, json, sys, urllib.request, urllib.error
spec = json.load(sys.stdin)
body = base64.b64decode(spec["body"]) or None
req = urllib.request.Request(spec["url"], data=body, method=spec["method"])
for k, v in spec["headers"]:
    req.add_header(k, v)
try:
    resp = urllib.request.urlopen(req, timeout=15)
    status = resp.status
except urllib.error.HTTPError as e:
    resp, status = e, e.code
headers = {}
for k, v in resp.headers.items():
    headers.setdefault(k, []).append(v)
print(json.dumps({"status": status, "proto": "HTTP/1.1", "headers": headers,
                  "body": base64.b64encode(resp.read()).decode()}))
`

func (p *proxyProc) pythonClient(t testing.TB, r request) response {
	t.Helper()
	return p.runClient(t, r, nil, requireTool(t, "python3"), "-c", pythonClient)
}

// nodeClient is Node's https module. Node's own fetch ignores HTTPS_PROXY,
// so the script opens the CONNECT tunnel as the common proxy agents do, and
// its TLS inside trusts NODE_EXTRA_CA_CERTS — no package from a registry.
const nodeClient = `
const http = require('http'), https = require('https'), tls = require('tls');
let input = '';
process.stdin.on('data', d => input += d);
process.stdin.on('end', () => {
  const spec = JSON.parse(input), u = new URL(spec.url), proxy = new URL(process.env.HTTPS_PROXY);
  const fail = e => { console.log(JSON.stringify({error: String(e)})); process.exit(0); };
  const c = http.request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: u.hostname + ':' + (u.port || 443)});
  c.on('error', fail);
  c.on('connect', (res, socket) => {
    if (res.statusCode !== 200) { fail('CONNECT ' + res.statusCode); }
    const headers = {};
    for (const [k, v] of spec.headers) { headers[k] = headers[k] ? headers[k] + ', ' + v : v; }
    const req = https.request({host: u.hostname, path: u.pathname + u.search, method: spec.method, headers,
        createConnection: () => tls.connect({socket, servername: u.hostname})}, resp => {
      const chunks = [];
      resp.on('data', d => chunks.push(d));
      resp.on('end', () => {
        const h = {};
        for (const [k, v] of Object.entries(resp.headers)) { h[k] = Array.isArray(v) ? v : [String(v)]; }
        console.log(JSON.stringify({status: resp.statusCode, proto: 'HTTP/' + resp.httpVersion, headers: h,
                                    body: Buffer.concat(chunks).toString('base64')}));
        process.exit(0);
      });
    });
    req.on('error', fail);
    req.end(Buffer.from(spec.body, 'base64'));
  });
  c.end();
});
`

func (p *proxyProc) nodeClient(t testing.TB, r request) response {
	t.Helper()
	return p.runClient(t, r, nil, requireTool(t, "node"), "-e", nodeClient)
}

// curlHTTPS sends r with curl as an HTTPS_PROXY client: curl --proxy opens
// a CONNECT tunnel for an https:// URL and trusts Pare's CA.
func (p *proxyProc) curlHTTPS(t testing.TB, r request) response {
	t.Helper()
	bin := curlPath(t)
	dir := t.TempDir()
	args := []string{"-sS", "--max-time", "15", "--proxy", "http://" + p.Egress, "--cacert", p.CAFile(),
		"-X", r.Method, "-D", filepath.Join(dir, "headers"), "-o", filepath.Join(dir, "body"),
		"-w", "%{http_code}", "-H", "Expect:"}
	for _, kv := range r.Header {
		args = append(args, "-H", kv[0]+": "+kv[1])
	}
	if r.Body != nil {
		f := filepath.Join(dir, "request-body")
		if err := os.WriteFile(f, r.Body, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--data-binary", "@"+f)
	}
	args = append(args, httpsURL(r.URL))
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl -w http_code printed %q", out)
	}
	body, _ := os.ReadFile(filepath.Join(dir, "body"))
	raw, _ := os.ReadFile(filepath.Join(dir, "headers"))
	h := http.Header{}
	// The proxy's own "200 Connection Established" block comes first;
	// keep the headers of the last response only.
	blocks := strings.Split(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n\n")
	last := ""
	for _, b := range blocks {
		if strings.TrimSpace(b) != "" {
			last = b
		}
	}
	for _, line := range strings.Split(last, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.Contains(k, " ") {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return response{Status: status, Header: h, Body: body}
}
