package ledger

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// appendMid appends what encoding/json writes for r between `{"seq":N,` and
// `"prev":"..."}`. Written by hand because reflection-based encoding was a
// twentieth of the proxy's CPU under load; FuzzAppendMid holds it to
// encoding/json byte for byte, and strings that need escaping still go
// through encoding/json (rare: ids, hosts and paths are plain ASCII).
func appendMid(dst []byte, r *Record) []byte {
	dst = append(dst, `"time":"`...)
	dst = r.Time.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `",`...)
	dst = appendField(dst, "kind", r.Kind)
	dst = appendField(dst, "decision_id", r.DecisionID)
	dst = appendField(dst, "vendor", r.Vendor)
	if r.Recipient != "" {
		dst = appendField(dst, "recipient", r.Recipient)
	}
	dst = appendField(dst, "host", r.Host)
	dst = appendField(dst, "method", r.Method)
	dst = appendField(dst, "path", r.Path)
	if r.PathHash != "" {
		dst = appendField(dst, "path_hash", r.PathHash)
	}
	dst = appendField(dst, "purpose", r.Purpose)
	dst = appendField(dst, "subject", r.Subject)
	dst = appendField(dst, "service", r.Service)
	if r.LegalBasis != "" {
		dst = appendField(dst, "legal_basis", r.LegalBasis)
	}
	if r.Requester != "" {
		dst = appendField(dst, "requester", r.Requester)
	}
	if r.Approver != "" {
		dst = appendField(dst, "approver", r.Approver)
	}
	dst = appendField(dst, "revision", r.Revision)
	dst = appendList(dst, "fields_sent", r.FieldsSent)
	dst = appendList(dst, "fields_removed", r.FieldsRemoved)
	if r.FieldsRemovedCount != 0 {
		dst = append(dst, `"fields_removed_count":`...)
		dst = strconv.AppendInt(dst, int64(r.FieldsRemovedCount), 10)
		dst = append(dst, ',')
	}
	dst = appendList(dst, "transformed", r.Transformed)
	if len(r.CardsRedacted) > 0 {
		dst = appendList(dst, "cards_redacted", r.CardsRedacted)
	}
	if len(r.Transforms) > 0 {
		dst = append(dst, `"transforms":{`...)
		keys := make([]string, 0, len(r.Transforms))
		for k := range r.Transforms {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendString(dst, r.Transforms[k])
		}
		dst = append(dst, `},`...)
	}
	dst = appendField(dst, "outcome", r.Outcome)
	dst = append(dst, `"status":`...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, `,"bytes_in":`...)
	dst = strconv.AppendInt(dst, r.BytesIn, 10)
	dst = append(dst, `,"bytes_out":`...)
	dst = strconv.AppendInt(dst, r.BytesOut, 10)
	dst = append(dst, `,"dry_run":`...)
	dst = strconv.AppendBool(dst, r.DryRun)
	if r.Truncated {
		dst = append(dst, `,"truncated":true`...)
	}
	return append(dst, ',')
}

func appendField(dst []byte, name, v string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	dst = appendString(dst, v)
	return append(dst, ',')
}

// appendList writes a list the way encoding/json writes a slice: null when
// nil (prepare never leaves these nil, but the encoder does not rely on it).
func appendList(dst []byte, name string, vs []string) []byte {
	dst = append(dst, '"')
	dst = append(dst, name...)
	if vs == nil {
		return append(dst, `":null,`...)
	}
	dst = append(dst, `":[`...)
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, `],`...)
}

// appendString writes s as a JSON string. Printable ASCII other than the
// characters encoding/json escapes (quote, backslash, and <, >, & for HTML
// safety) is copied; anything else is left to encoding/json itself.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
