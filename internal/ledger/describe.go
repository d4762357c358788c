package ledger

import (
	"strings"
	"unicode"
)

// phrases turn recorded field names (or a run of path segments, joined with
// "/") into the words a person reads. Longest match wins; anything not here
// is split into words as it is.
var phrases = map[string]string{
	"email":          "email address",
	"e_mail":         "email address",
	"receipt_email":  "receipt email address",
	"phone":          "phone number",
	"phone_number":   "phone number",
	"mobile":         "mobile phone number",
	"dob":            "date of birth",
	"birthdate":      "date of birth",
	"birth_date":     "date of birth",
	"date_of_birth":  "date of birth",
	"ssn":            "social security number",
	"ip":             "IP address",
	"ip_address":     "IP address",
	"user_agent":     "browser identification",
	"zip":            "postal code",
	"postcode":       "postal code",
	"postal_code":    "postal code",
	"addr":           "address",
	"line1":          "address line 1",
	"line2":          "address line 2",
	"card/number":    "card number",
	"card/cvc":       "card security code",
	"card/cvv":       "card security code",
	"card/exp_month": "card expiry month",
	"card/exp_year":  "card expiry year",
	"pan":            "card number",
	"iban":           "bank account number (IBAN)",
	"lat":            "latitude",
	"lng":            "longitude",
	"lon":            "longitude",
	"geo":            "location",
	"tz":             "time zone",
	"lang":           "language",
	"qty":            "quantity",
}

// words are single words with a fixed spelling (acronyms).
var words = map[string]string{
	"id":   "ID",
	"ip":   "IP",
	"url":  "URL",
	"uri":  "URI",
	"sku":  "SKU",
	"vat":  "VAT",
	"iban": "IBAN",
}

// transformWords say what a transform did, in plain words.
var transformWords = map[string]string{
	"hmac":       "pseudonymised",
	"hash":       "pseudonymised",
	"sha256":     "pseudonymised",
	"pseudonym":  "pseudonymised",
	"tokenize":   "tokenised",
	"tokenise":   "tokenised",
	"redact":     "redacted",
	"mask":       "partly masked",
	"last4":      "last 4 digits only",
	"truncate":   "shortened",
	"generalize": "generalised",
	"generalise": "generalised",
	"year":       "year only",
	"round":      "rounded",
	"drop":       "removed",
}

// Describe turns a field path as recorded ("customer/address/city",
// "items/*/sku", "card/number") into plain words ("customer address city",
// "items SKU", "card number") for people who do not read JSON paths.
// Wildcards and array indexes are dropped; a small dictionary spells out
// common names; a word repeated from the segment before is said once
// ("card/card_number" is "card number").
func Describe(path string) string {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s == "" || s == "*" || isDigits(s) {
			continue
		}
		segs = append(segs, strings.ToLower(splitCamel(s)))
	}
	var out []string
	for i := 0; i < len(segs); {
		n := 0
		for k := len(segs) - i; k > 0; k-- {
			if p, ok := phrases[strings.Join(segs[i:i+k], "/")]; ok {
				out = append(out, strings.Fields(p)...)
				n = k
				break
			}
		}
		if n == 0 {
			for _, w := range strings.FieldsFunc(segs[i], isSep) {
				if fixed, ok := words[w]; ok {
					w = fixed
				}
				out = append(out, w)
			}
			n = 1
		}
		i += n
	}
	// Say a repeated word once: "card card number" -> "card number".
	dedup := out[:0]
	for i, w := range out {
		if i > 0 && strings.EqualFold(w, out[i-1]) {
			continue
		}
		dedup = append(dedup, w)
	}
	if len(dedup) == 0 {
		return path
	}
	return strings.Join(dedup, " ")
}

// DescribeTransform says what a named transform did ("hmac" ->
// "pseudonymised"); unknown names are returned as they are.
func DescribeTransform(name string) string {
	if w, ok := transformWords[strings.ToLower(name)]; ok {
		return w
	}
	return name
}

func isSep(r rune) bool { return r == '_' || r == '-' || r == '.' || r == ' ' }

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// splitCamel puts an underscore before each upper-case letter that follows a
// lower-case one: "firstName" -> "first_Name".
func splitCamel(s string) string {
	var b strings.Builder
	var prev rune
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) && unicode.IsLower(prev) {
			b.WriteByte('_')
		}
		b.WriteRune(r)
		prev = r
	}
	return b.String()
}
