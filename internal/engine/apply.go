package engine

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/pare-dev/pare/filters"
)

// Media is a body syntax the engine can mask.
type Media int

const (
	MediaUnknown Media = iota
	MediaJSON
	MediaForm
)

// MediaOf classifies a Content-Type header value. Only UTF-8 (or unstated)
// charsets are accepted: a body in another encoding could hide field names
// from the mask.
func MediaOf(contentType string) Media {
	if contentType == "" {
		return MediaUnknown
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return MediaUnknown
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return MediaUnknown
	}
	switch {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return MediaJSON
	case mt == "application/x-www-form-urlencoded":
		return MediaForm
	}
	return MediaUnknown
}

// FilterBody returns what of body may leave under d, appended to dst. An
// opaque decision returns body itself; BodyNone returns an empty body.
// maxOut bounds the filtered body in bytes (0: no bound): transforms can
// make it longer than body. Past it the error is a CodeBodyTooLarge
// refusal wrapping filters.ErrOutputTooLarge.
func (d *Decision) FilterBody(dst []byte, contentType string, body []byte, maxOut int) ([]byte, *filters.Report, error) {
	switch d.Body {
	case BodyOpaque:
		return body, &filters.Report{}, nil
	case BodyNone:
		rep := &filters.Report{}
		if len(body) > 0 {
			rep.Removed = []string{"(body)"}
			rep.RemovedCount = 1
		}
		return dst[:0], rep, nil
	}
	if len(body) == 0 {
		return dst[:0], &filters.Report{}, nil
	}
	var (
		out []byte
		rep *filters.Report
		err error
	)
	opts := &d.opts
	if maxOut > 0 {
		o := d.opts // decisions are shared: never modify d.opts
		o.MaxOutput = maxOut
		opts = &o
	}
	switch MediaOf(contentType) {
	case MediaJSON:
		out, rep, err = d.mask.JSON(dst[:0], body, opts)
	case MediaForm:
		out, rep, err = d.mask.Form(dst[:0], body, opts)
	default:
		mt, _, _ := mime.ParseMediaType(contentType)
		if mt == "" {
			mt = "a body without a Content-Type"
		}
		return nil, nil, refuse(CodeUnsupportedMedia, nil,
			"Pare cannot parse %s; the contract for %s must mark this route body: opaque to send it unfiltered", mt, d.Vendor)
	}
	if err != nil {
		return nil, nil, d.filterError(err, "body")
	}
	return out, rep, nil
}

// FilterQuery returns the query string that may leave.
func (d *Decision) FilterQuery(rawQuery string) (string, *filters.Report, error) {
	if rawQuery == "" {
		return "", &filters.Report{}, nil
	}
	q, rep, err := filters.Query(rawQuery, d.Query, &d.opts)
	if err != nil {
		return "", nil, d.filterError(err, "query")
	}
	return q, rep, nil
}

// FilterHeaders removes, in place, every header the decision does not allow.
func (d *Decision) FilterHeaders(h map[string][]string) *filters.Report {
	return filters.Headers(h, d.headers)
}

func (d *Decision) filterError(err error, where string) error {
	if errors.Is(err, filters.ErrOutputTooLarge) {
		return refuse(CodeBodyTooLarge, err,
			"the %s filtered for %s would be larger than the limit: its transforms (64 characters for each hmac value) make it grow", where, d.Vendor)
	}
	if errors.Is(err, filters.ErrCardNumber) {
		return d.CardRefusal(fmt.Sprintf("the %s (%v)", where, err), err)
	}
	var se *filters.SyntaxError
	if errors.As(err, &se) {
		return refuse(CodeMalformedBody, err, "the %s is not valid: %v", where, err)
	}
	return refuse(CodeMalformedBody, err, "the %s cannot be filtered: %v", where, err)
}

// ParseBody turns a body into the value a policy that reads input.body
// sees. Only called for such policies (Policy.NeedsBody).
func ParseBody(contentType string, body []byte) (ast.Value, error) {
	if len(body) == 0 {
		return ast.Null{}, nil
	}
	switch MediaOf(contentType) {
	case MediaJSON:
		var v any
		if err := util.NewJSONDecoder(bytes.NewReader(body)).Decode(&v); err != nil {
			return nil, refuse(CodeMalformedBody, nil, "the body is not valid JSON")
		}
		return ast.InterfaceToValue(v)
	case MediaForm:
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, refuse(CodeMalformedBody, nil, "the body is not valid form data")
		}
		m := make(map[string]any, len(vals))
		for k, vs := range vals {
			arr := make([]any, len(vs))
			for i, v := range vs {
				arr[i] = v
			}
			m[k] = arr
		}
		return ast.InterfaceToValue(m)
	}
	return ast.Null{}, nil
}
