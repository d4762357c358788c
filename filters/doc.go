// Package filters owns Pare's payload minimizers: it reduces an outbound
// body, query string or header set to what a vendor contract allows, before
// the request leaves.
//
// The engine decides (through OPA) which paths a vendor may receive; this
// package only applies that decision. It knows nothing about HTTP servers,
// OPA or contracts, so every front end (the HTTP proxy, an ext_proc server)
// gets the same minimization, and the filters can be tested and fuzzed on
// their own.
//
// # Paths
//
// A path uses the syntax of OPA's json.filter: segments separated by "/",
// leading slashes ignored, "~1" for a "/" and "~0" for a "~" inside a
// segment. A segment that is all digits matches an array index as well as an
// object key with that name. The segment "*" matches any key or index at its
// level; a key literally named "*" can only be reached through it. Empty
// segments ("a//b", "a/") and "~" followed by anything but 0 or 1 are rejected
// by Compile rather than guessed at: in a field allowlist a typo must fail
// loudly, not match something else.
//
// A path keeps the whole subtree under it; anything not reached by a path is
// removed (default deny). For masks without "*", Mask.JSON gives the same
// value as json.filter(doc, paths), including its two less obvious rules:
// arrays are compacted (unselected elements are dropped, later ones shift
// left), and a container on the way to a path is kept even when nothing
// beneath it matched (it becomes {} or []). Also as in json.filter, a scalar
// found where a path expected a container is kept as it is: a contract that
// names "card/last4" sends "card" whole when it turns out to be a string. The
// card guard still applies to it, and when a transform was configured beneath
// it the scalar is sent as "[REDACTED]" instead, since we cannot tell which
// part the transform was meant for. A "*" behaves as if it were expanded to
// every key or index present, and so selects nothing in a scalar or an empty
// container: "items/*/sku" removes an empty "items" array entirely, where
// "items/0/sku" would keep it as []. Mask.JSON is tested against json.filter
// on OPA's own cases and by a differential fuzz test (wildcards expanded).
//
// # Transforms
//
// A transform rewrites values instead of removing them: hmac, last4, redact,
// year and truncate:N (see ParseTransform). A transformed path is sent even
// when it is not among the fields. A transform applies to the scalar at its
// path, or to every scalar leaf beneath it when the path names an object or
// array; the deepest transform on a path wins. Strings are transformed by
// their unescaped content, numbers and booleans by their literal text, and
// null stays null. The result is always a string. A value a transform cannot
// handle (year of "n/a", last4 of a value of four characters or fewer) is
// sent as "[REDACTED]" and still reported as transformed: failing closed
// keeps the request flowing without leaking the original.
//
// # Card guard
//
// Promise 4 keeps card numbers for the payment processor. Every string and
// number that is about to leave untransformed, and every object key or form
// name that leaves, is scanned for card numbers; CardIndex,
// CardIndexString, GuardCardsString and AppendRedactCards scan any other
// value (a header, a decoded path segment), and CardWriter scans a stream
// (an opaque body) with the same result, carrying what it needs across
// Writes and holding back only the bytes of an unfinished number.
//
// What counts as a card number, for card numbers written the way people
// write them (cardscan.go has the rules, cardiin.go the schemes):
//
//   - digits of any script (unicode.Nd: ASCII, fullwidth, Arabic-Indic,
//     Devanagari, mathematical ...), read as their values;
//   - joined into one number by up to 4 separators between two digits
//     (spaces of every kind, including no-break, narrow, figure and
//     ideographic ones; tabs; dashes and minus signs; dots; slashes) and up
//     to 5 invisible characters (NUL, so that UTF-16 text read as bytes is
//     found; zero-width characters; soft hyphens), which do not split a
//     group of digits;
//   - any 13 to 19 consecutive digits of such a number, not only the whole
//     of it: a window starts at the first digit of a group (or after zeros
//     padding it, or right after a card number), and a window that spans
//     groups ends at the end of one, while inside one group more digits may
//     follow it (an expiry or CVV typed on). So "4111 1111 1111 1111 123",
//     "41111111111111111229" and "0004111111111111111" hold a card number;
//   - that passes the Luhn check and whose first digits are in the range of
//     a card scheme that issues numbers of its length (Visa, Mastercard
//     including 2221-2720, American Express, Discover, JCB, Diners Club,
//     UnionPay, Maestro, Mir, RuPay, Troy, Verve and others): a Luhn-valid
//     IMEI, ICCID or timestamp is not a card number;
//   - in JSON numbers, both as written ("4.111111111111111e15": '.' joins
//     the digits) and by value (411111111111111e1 is 4111111111111110),
//     and in JSON strings after unescaping, form values after decoding.
//
// Options.Cards decides what happens: CardsBlock (the zero value) fails the
// request with ErrCardNumber, CardsRedact replaces each card number, with
// the separators inside it, by "[CARD REDACTED]" (card numbers that share
// digits become one placeholder; zeros padding one go with it; a number
// containing one becomes that string; a key or form pair containing one is
// removed), CardsAllow skips the scan. Transformed values are not scanned:
// last4 is how a card number may leave.
//
// Known limits. A card number split across two values (two fields, two
// headers, a form's two pairs) is not found: each value is scanned alone.
// Nor is one glued after other digits ("12344111111111111111"), one whose
// digits are separated otherwise (commas, underscores, line breaks, more
// than 4 spaces), spelled out, encoded (base64, HTML entities, hex,
// percent-encoding inside JSON, a compressed body: CardWriter sees the
// compressed bytes), in UTF-16 outside ASCII or in other encodings, or in
// a JSON string in exponent form. Schemes outside the table (UATP, which
// starts with 1 like every current microsecond timestamp; 12-digit
// Maestro; private-label and gift cards) are not card numbers to the
// guard. Someone who means to hide a card number can; the guard is for
// card numbers typed, pasted and exported. The other way round, a
// look-alike with a scheme's prefix passes Luhn one time in ten: on the
// corpus under testdata/cards, 2% of phone numbers, ids, IBANs, timestamps
// and the like are taken for card numbers, against 2.7% for Presidio's and
// 2.9% for Google DLP's rules, while they miss four card numbers in five
// there (BENCHMARKS.md, "Card guard"). A run of 20 or more digits without
// separators (a bank account, a long reference) is taken for a card number
// about one time in ten, one in four when its first digits are a scheme's
// prefix: the price of finding a CVV typed onto a card number.
//
// # JSON
//
// Mask.JSON is a hand-written single-pass scanner and writer rather than
// encoding/json or OPA: encoding/json round-trips numbers through float64 and
// loses key order (and is several times slower), and json.filter needs the
// body converted into an OPA AST first. Numbers and untransformed strings
// are copied byte for byte, key order is kept, whitespace between tokens is
// not (the output is compact). The whole input is validated, removed parts
// included, and rejected with a *SyntaxError when it is not a single valid
// JSON value: this includes duplicate keys in an object (compared after
// unescaping), because parsers disagree on which duplicate wins and a body
// the policy read one way and the vendor reads another is a smuggling
// vector, and invalid UTF-8, for the same reason (RFC 8259 requires UTF-8,
// and decoders differ in how they repair it). A body whose top value is not
// an object or array returns ErrNotContainer: no path can select the root.
//
// # Forms and query strings
//
// Mask.Form reads application/x-www-form-urlencoded bodies with Stripe/Rails
// bracket nesting: "card[number]" is the path card/number, "items[0][sku]" is
// items/0/sku, and "expand[]" is numbered by occurrence (expand/0, expand/1).
// Kept pairs are copied in their original encoding and order; transformed or
// redacted values are re-encoded. Indices are kept as sent (a form has no
// array to compact). Values are octets: invalid UTF-8 passes through. A raw
// ";" is rejected, as Go's net/url does, because some servers treat it as a
// pair separator. Query filters a query string by base name with the same
// parser.
//
// # Reports
//
// Every filter returns a Report of the paths kept, removed, transformed and
// card-guarded, for the disclosure ledger. Reports and errors contain paths
// only, never values. A JSON report lists at most twice the body's size
// plus 8 KiB of path bytes: each path repeats the keys above it, so a body
// of many members under a long key would otherwise list gigabytes. Past
// that the lists stop and Report.Truncated is set; the body is filtered all
// the same and RemovedCount stays exact. Only hostile bodies get there.
//
// # Limits
//
// Time and memory are linear in the size of the input, whatever it holds:
// every byte is scanned a bounded number of times (a kept subtree at most
// three times by the light validator, see fastRetry, and once by the
// emitting walk), duplicate keys and form prefixes are found through
// seeded hash tables, and no path is built per member beyond the report's
// budget. Tests count the work in steps (see jsonWalker.steps) and hold it
// to 16 per input byte on adversarial bodies; the fuzz targets to 32.
//
// Two limits reject what no real payload needs, with a *SyntaxError (the
// engine's 400 malformed_body):
//   - JSON nesting deeper than 1000 containers, and form or query names of
//     more than 1000 segments ("a[b][c]" has three). The JSON walk recurses,
//     at about a kilobyte of stack per level; at the 10000 of encoding/json
//     a 20 KB body took 8 MiB of stack. Jackson's default is 1000 too, and
//     simdjson's 1024; payloads nest a handful of levels.
//   - Inputs over 2 GiB: offsets are kept in 32 bits.
package filters
