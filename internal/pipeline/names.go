package pipeline

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"

	"github.com/pare-dev/pare/internal/contract"
	"github.com/pare-dev/pare/internal/engine"
	"github.com/pare-dev/pare/internal/ledger"
)

// The ledger names what left, and what was removed, in the contracts' own
// words only. A payload's keys are the app's data as much as its values:
// an email address used as a map key, a card number as an object name, a
// ticket id in a path would otherwise be written into the evidence verbatim.
// So a recorded path keeps the segments some contract names, writes an
// array index as "*", and replaces any other segment with a placeholder;
// each distinct recorded path appears once, and fields_removed_count still
// counts every removed item.

// Placeholders for names no contract uses.
const (
	unnamedKey     = "(key)"
	unnamedSegment = "(segment)"
	unnamedParam   = "(param)"
	unnamedHeader  = "(header)"
)

// vocabulary is every name the loaded contracts use.
type vocabulary struct {
	keys    map[string]bool // body path segments (fields, transforms, need-to-know, labels)
	path    map[string]bool // URL path segments of routes
	query   map[string]bool
	headers map[string]bool // lower case
}

// vocabCache holds the vocabulary of the last policy seen: a reload makes
// a new Policy, and the next record builds the new vocabulary once.
type vocabCache struct {
	mu  sync.Mutex
	pol *engine.Policy
	v   *vocabulary
}

func (c *vocabCache) of(pol *engine.Policy) *vocabulary {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pol != pol || c.v == nil {
		c.pol, c.v = pol, newVocabulary(pol)
	}
	return c.v
}

func newVocabulary(pol *engine.Policy) *vocabulary {
	v := &vocabulary{keys: map[string]bool{}, path: map[string]bool{}, query: map[string]bool{}, headers: map[string]bool{}}
	for _, h := range standardHeaders {
		v.headers[h] = true
	}
	if pol == nil {
		return v
	}
	addPath := func(p string) {
		for _, s := range strings.Split(p, "/") {
			if s != "" && s != "*" {
				v.keys[s] = true
			}
		}
	}
	for _, c := range pol.Contracts {
		addContract(v, c, addPath)
	}
	return v
}

func addContract(v *vocabulary, c *contract.Contract, addPath func(string)) {
	for _, h := range c.Headers {
		v.headers[strings.ToLower(h)] = true
	}
	for _, n := range c.NeedToKnow {
		for _, f := range n.Fields {
			addPath(f)
		}
	}
	for k := range c.Labels {
		switch {
		case strings.HasPrefix(k, "query:"):
			v.query[strings.TrimPrefix(k, "query:")] = true
		case strings.HasPrefix(k, "header:"):
			v.headers[strings.ToLower(strings.TrimPrefix(k, "header:"))] = true
		case strings.HasPrefix(k, "body:"):
		default:
			addPath(k)
		}
	}
	for _, r := range c.Routes {
		for _, f := range r.Fields {
			addPath(f)
		}
		for f := range r.Transforms {
			addPath(f)
		}
		for _, q := range r.Query {
			v.query[q] = true
		}
		for _, h := range r.Headers {
			v.headers[strings.ToLower(h)] = true
		}
		for _, s := range strings.Split(r.Path, "/") {
			if s != "" && !strings.Contains(s, "*") {
				v.path[s] = true
			}
		}
	}
}

// standardHeaders are the request header names of the HTTP specifications
// and the common conventions: names, never data, so they are recorded as
// they are.
var standardHeaders = []string{
	"accept", "accept-charset", "accept-encoding", "accept-language", "authorization", "cache-control",
	"connection", "content-encoding", "content-language", "content-length", "content-md5", "content-type",
	"cookie", "date", "dnt", "expect", "forwarded", "from", "host", "if-match", "if-modified-since",
	"if-none-match", "if-range", "if-unmodified-since", "keep-alive", "max-forwards", "origin", "pragma",
	"priority", "proxy-authorization", "range", "referer", "sec-gpc", "te", "trailer", "traceparent",
	"tracestate", "transfer-encoding", "upgrade", "user-agent", "via", "x-api-key", "x-correlation-id",
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-request-id", "x-requested-with",
	"x-data-purpose", "x-data-subject", "x-data-gpc", "x-data-requester", "x-legal-basis", "x-legal-approver",
	"x-pare-dry-run",
}

// maxListedBytes bounds the bytes of the names one record lists, all lists
// together. ledger.MaxListed bounds how many names a list holds, but not
// how long one is: a JSON path nested 1000 deep in names the contracts use
// is 20 KB, and 256 of them would take a record past the ledger's 1 MiB
// line, which it refuses to write (the request would then fail with
// ledger_unavailable and leave no record). With this bound, and headers
// bounded by the server, a record stays well inside the line.
const maxListedBytes = 256 << 10

// names turns report paths into recorded names: prefix is "" for body
// paths, "query:" or "header:" for the others. budget, shared by the lists
// of one record, is what remains of maxListedBytes.
type names struct {
	v         *vocabulary
	seen      map[string]bool
	budget    *int
	truncated bool
}

func (n *names) add(dst []string, prefix string, paths []string) []string {
	for _, p := range paths {
		var r string
		switch prefix {
		case "query:":
			r = prefix + unnamedParam
			if n.v.query[p] {
				r = prefix + p
			}
		case "header:":
			r = prefix + unnamedHeader
			if n.v.headers[strings.ToLower(p)] {
				r = prefix + strings.ToLower(p)
			}
		default:
			r = n.v.bodyPath(p)
		}
		if n.seen[r] {
			continue
		}
		if len(dst) >= ledger.MaxListed || len(r) > *n.budget {
			n.truncated = true
			continue
		}
		*n.budget -= len(r)
		n.seen[r] = true
		dst = append(dst, r)
	}
	return dst
}

// bodyPath records a body path: named segments kept, indexes as "*",
// anything else a placeholder.
func (v *vocabulary) bodyPath(p string) string {
	if p == "(body)" {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		switch {
		case s == "" || s == "*":
		case isIndex(s):
			segs[i] = "*"
		case !v.keys[s]:
			segs[i] = unnamedKey
		}
	}
	return strings.Join(segs, "/")
}

func isIndex(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// urlPath records a URL path without its ids: segments that appear in a
// contract's route patterns stay, others become a placeholder, and the
// recorded path is at most maxRecordedSegments long.
func (v *vocabulary) urlPath(p string) string {
	const maxRecordedSegments = 16
	segs := strings.Split(p, "/")
	out := make([]string, 0, min(len(segs), maxRecordedSegments+1))
	for i, s := range segs {
		if i > maxRecordedSegments {
			out = append(out, "…")
			break
		}
		if s != "" && !v.path[s] {
			s = unnamedSegment
		}
		out = append(out, s)
	}
	return strings.Join(out, "/")
}

// PathHash is the keyed hash the ledger records for a request path: HMAC-
// SHA-256 under a key derived from the master key, 128 bits in hex. Given
// the path and the key, `proxy ledger path-hash` finds its records; without
// the key, the hash says nothing of the path.
func PathHash(key []byte, path string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(path))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// PathKey derives the path-hash key from the hmac master key, so it is
// apart from the keys of the vendors' pseudonyms.
func PathKey(master []byte) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("pare/ledger-path/v1"))
	return m.Sum(nil)
}
