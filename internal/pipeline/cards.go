package pipeline

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/pare-dev/pare/filters"
	"github.com/pare-dev/pare/internal/engine"
)

// The card guard on everything that leaves. The field masks (filters) guard
// the body they write; the rest of a request is guarded here, with the
// decision's guard (engine.Decision.CardGuard) unless it is "allow":
//
//   - the decoded URL path, as one value: a card number there is refused,
//     never redacted (rewriting a path would address another resource than
//     the one the policy decided on). Whole, not segment by segment: "/" is
//     a separator people write card numbers with ("4111/1111/1111/1111"),
//     and a "**" route takes it across segments;
//   - every header value sent: refused, or redacted;
//   - opaque bodies: scanned whole when in memory, or as they stream to the
//     vendor (a window carried across reads, never the body buffered), and
//     refused, never redacted (rewriting bytes would corrupt the object);
//   - in dry run, the original query, headers and body, which leave in
//     place of the filtered ones: a card number anywhere in them sends the
//     filtered request instead.
//
// The query string is guarded by filters.Query, which writes it.

// guardPath refuses a path with a card number anywhere in it, within a
// segment or across segments.
func guardPath(d *engine.Decision, path string) error {
	if d.CardGuard() == filters.CardsAllow {
		return nil
	}
	if hasCardOutsideDigests(path) {
		return d.CardRefusal("the URL path", filters.ErrCardNumber)
	}
	return nil
}

// hasCardOutsideDigests reports whether s holds a card number that is not
// inside a hex digest. Vendors name things by digest: Mailchimp's member
// routes end in the MD5 of the subscriber's lower-cased email, in 32
// lower-case hex digits, and S3-style uploads carry the body's SHA-256 in
// x-amz-content-sha256 (the hosting contract lists it). About one such
// digest in a few hundred holds a run of 13 to 16 decimal digits with a
// window that passes the IIN table and Luhn (the bench's realistic mix
// met ".../members/0a94c8a214124fae3485685838127521"), and refusing it
// failed those requests at random. A digest is not a number anyone types:
// a token of exactly 32, 40 or 64 lower-case hex digits (MD5, SHA-1,
// SHA-256) with at least one letter, between characters that are not
// letters or digits, is left out of the scan. The letter "x" that stands
// in for it keeps the text around it apart, as the digest's letters did.
// What this gives up: an app that deliberately shapes a card number into
// such a token ("4111111111111111" and 16 hex letters) gets it past the
// guard — as it could by encoding it any other way; the guard is for card
// numbers written the way people write them. Only the path and header
// values are scanned this way; bodies and queries are scanned whole (a
// false positive there is refused, which fails closed).
func hasCardOutsideDigests(s string) bool {
	if start, _ := filters.CardIndexString(s); start < 0 {
		return false
	}
	start, _ := filters.CardIndexString(withoutDigests(s))
	return start >= 0
}

// withoutDigests returns s with every hex digest token replaced by "x".
func withoutDigests(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && isAlnum(s[j]) {
			j++
		}
		if j == i { // not a token: copy one byte
			b.WriteByte(s[i])
			i++
			continue
		}
		if isHexDigest(s[i:j]) {
			b.WriteByte('x')
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	return b.String()
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isHexDigest(s string) bool {
	if len(s) != 32 && len(s) != 40 && len(s) != 64 {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'f':
			letter = true
		default:
			return false
		}
	}
	return letter
}

// guardHeaders applies the guard to every value of h, which is what is
// about to leave: redacted values are replaced in place and their names
// added to rep.Cards ("header:"-prefixed by the ledger).
func guardHeaders(d *engine.Decision, h http.Header, rep *filters.Report) error {
	g := d.CardGuard()
	if g == filters.CardsAllow {
		return nil
	}
	for name, vs := range h {
		for i, v := range vs {
			if !hasCardOutsideDigests(v) {
				continue
			}
			out, n, err := filters.GuardCardsString(v, g)
			if err != nil {
				return d.CardRefusal(fmt.Sprintf("header %s", strings.ToLower(name)), err)
			}
			if n > 0 {
				vs[i] = out
				if rep != nil {
					rep.Cards = append(rep.Cards, strings.ToLower(name))
				}
			}
		}
	}
	return nil
}

// guardOpaque scans an opaque body held in memory. Opaque bodies are
// refused rather than redacted under either guard.
func guardOpaque(d *engine.Decision, body []byte) error {
	if d.CardGuard() == filters.CardsAllow {
		return nil
	}
	if start, _ := filters.CardIndex(body); start >= 0 {
		return d.CardRefusal("the body", filters.ErrCardNumber)
	}
	return nil
}

// everything keeps a whole JSON or form body: run with the guard on, it
// finds a card number anywhere in an original body (dry run).
var everything = func() *filters.Mask {
	m, err := filters.Compile([]string{"*"}, nil)
	if err != nil {
		panic(err) // a constant mask
	}
	return m
}()

// originalHasCard reports whether the app's own query (names and values),
// headers (names and values) or body — what dry run would send — hold a
// card number.
func originalHasCard(contentType, rawQuery string, h http.Header, body []byte) bool {
	if rawQuery != "" {
		if q, err := url.ParseQuery(rawQuery); err != nil {
			return true // cannot be read: do not send it as it is
		} else {
			for k, vs := range q {
				if s, _ := filters.CardIndexString(k); s >= 0 {
					return true
				}
				for _, v := range vs {
					if s, _ := filters.CardIndexString(v); s >= 0 {
						return true
					}
				}
			}
		}
	}
	for name, vs := range h {
		// Dry run sends every name the app chose, not only the ones a
		// contract lists: the names are scanned as the values are.
		if s, _ := filters.CardIndexString(name); s >= 0 {
			return true
		}
		for _, v := range vs {
			if s, _ := filters.CardIndexString(v); s >= 0 {
				return true
			}
		}
	}
	if len(body) == 0 {
		return false
	}
	opt := &filters.Options{Cards: filters.CardsBlock}
	var err error
	switch engine.MediaOf(contentType) {
	case engine.MediaJSON:
		_, _, err = everything.JSON(nil, body, opt)
	case engine.MediaForm:
		_, _, err = everything.Form(nil, body, opt)
	default:
		s, _ := filters.CardIndex(body)
		return s >= 0
	}
	return err != nil // a card number, or a body that cannot be read: not sent as it is
}

// sentContentType is the Content-Type Pare sends with a body: the body's
// media type, checked, with only the parameters that describe the bytes
// (charset for text and JSON and forms, boundary for multipart). The
// app's other parameters are not sent: a parameter can carry any text.
func sentContentType(contentType string) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt == "" {
		return ""
	}
	keep := map[string]string{}
	if cs, ok := params["charset"]; ok {
		keep["charset"] = strings.ToLower(cs)
	}
	if b, ok := params["boundary"]; ok && strings.HasPrefix(mt, "multipart/") {
		keep["boundary"] = b
	}
	return mime.FormatMediaType(mt, keep)
}

// scanReader streams an opaque body to the vendor through the card guard:
// bytes pass as soon as they cannot be part of a card number, and a card
// number ends the body with an error (the transport then aborts the
// upstream request; the vendor sees a truncated body without the number).
// It also enforces the body limit while streaming, and counts what passed.
type scanReader struct {
	src  io.Reader
	cw   *filters.CardWriter // nil under CardsAllow
	buf  chunkBuffer
	read int64 // bytes read from the app
	max  int64
	err  error // why the body ended (io.EOF: whole); nil while it streams
	card error // the card refusal that ended it
	tmp  []byte

	// The transport reads the body in its own goroutine, and may still be
	// reading when RoundTrip returns (a vendor that answers early): the
	// exchange reads what became of the stream through outcome.
	mu         sync.Mutex
	end, found error
	in, out    int64
}

// chunkBuffer is what the CardWriter released and the transport has not
// read yet.
type chunkBuffer struct{ b []byte }

func (c *chunkBuffer) Write(p []byte) (int, error) { c.b = append(c.b, p...); return len(p), nil }

func (r *scanReader) Read(p []byte) (int, error) {
	n, err := r.next(p)
	r.mu.Lock()
	r.end, r.found, r.in, r.out = r.err, r.card, r.read, r.out+int64(n)
	r.mu.Unlock()
	return n, err
}

// streamOutcome is what became of a stream so far.
type streamOutcome struct {
	found error // the card refusal that cut it
	end   error // what ended it: io.EOF when it was read whole, nil while it streams
	in    int64 // bytes read from the app
	out   int64 // bytes handed to the vendor
}

func (r *scanReader) outcome() streamOutcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return streamOutcome{found: r.found, end: r.end, in: r.in, out: r.out}
}

func (r *scanReader) next(p []byte) (int, error) {
	for len(r.buf.b) == 0 && r.err == nil {
		n, err := r.src.Read(r.tmp)
		r.read += int64(n)
		if r.read > r.max {
			r.err = errBodyTooLarge
			break
		}
		if r.cw == nil {
			r.buf.b = append(r.buf.b, r.tmp[:n]...)
		} else if n > 0 {
			if _, werr := r.cw.Write(r.tmp[:n]); werr != nil {
				r.err, r.card = werr, werr
				break
			}
		}
		if err == io.EOF {
			if r.cw != nil {
				if cerr := r.cw.Close(); cerr != nil {
					r.err, r.card = cerr, cerr
					break
				}
			}
			r.err = io.EOF
		} else if err != nil {
			r.err = err
		}
	}
	if len(r.buf.b) > 0 {
		n := copy(p, r.buf.b)
		r.buf.b = r.buf.b[:copy(r.buf.b, r.buf.b[n:])]
		return n, nil
	}
	return 0, r.err
}

var errBodyTooLarge = errors.New("the body is larger than the limit")
