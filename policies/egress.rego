# Pare's generic egress policy.
#
# Every outbound request is matched to one vendor contract (data.contracts.<vendor>, one YAML file
# per vendor under contracts/) and one route of it; the decision says exactly which fields,
# transforms, headers and query parameters may leave. Everything else is refused or removed.
#
# The policy never reads input.body: decisions depend on request metadata only, so the engine
# does not parse bodies for the decision (it still parses them to apply the field masks).
#
# Refusals are collected in the partial set `deny` as {"rank", "code", "reason"} objects; the
# decision reports the one with the lowest rank, so the most fundamental problem is the one the
# caller sees. Special rules (see legal.rego) add to `deny` without touching this file.
#
# How the policy is laid out for speed (see README.md, "Writing fast, cacheable Rego"):
# - Rules that read no input (the indexes in "Contracts, indexed") depend on the contracts only;
#   the engine evaluates them once per policy load, so a request looks a vendor or route up.
# - The path is read by one rule only, route_match; the engine checks that, and then keys its
#   decision cache on route_match instead of the path, so distinct resource ids share decisions.
# - Consents are read field by field (input.subject.consents[i].status), so the cache key holds
#   the purposes and statuses only, not each subject's times and evidence.
# - Refusals that share a precondition which fails on an ordinary allowed request are grouped
#   behind it (vendor_refusals, purpose_refusals, consent_refusals): every rule of `deny` is
#   evaluated on every request, and a group costs one rule until its precondition holds.
package egress

# The decision object of the contract documented in README.md. Always defined: every key is
# present on allowed and refused requests alike, so the engine never has to guess a default.
default decision := {
	"allow": false,
	"vendor": "",
	"reason": "the policy produced no decision",
	"code": "denied",
	"route": "",
	"fields": [],
	"transforms": {},
	"headers": [],
	"query": [],
	"body": "none",
	"cards": "block",
	"cards_code": "card_number",
	"tls": true,
	"port": 443,
	"dry_run": false,
}

decision := object.union(allowed, decision_identities) if count(deny) == 0

decision := object.union(refused, decision_identities) if count(deny) > 0

# ---------------------------------------------------------------------------------------------
# Normalised input. Every value is type-checked here: a missing or mistyped input field becomes
# "" (or false, or []) so that a malformed input can only lead to a refusal, never to a rule that
# silently does not fire. Input is only ever read by explicit paths (never `input` as a whole):
# the engine keys its decision cache on the paths the policy reads, and parses bodies only for
# policies that read input.body.

# Each field is read by its full path (input.request.host, not input.request): the engine keys
# its decision cache on exactly the paths read, so request ids in headers or the subject's id
# never split the cache.
host := trim_suffix(lower(h), ".") if {
	h := input.request.host
	is_string(h)
} else := ""

method := upper(m) if {
	m := input.request.method
	is_string(m)
} else := ""

# Read by route_match only (see there).
path := p if {
	p := input.request.path
	is_string(p)
} else := ""

scheme := lower(s) if {
	s := input.request.scheme
	is_string(s)
} else := ""

request_port := p if {
	p := input.request.port
	is_number(p)
} else := 0

purpose := lower(trim_space(p)) if {
	p := input.purpose
	is_string(p)
} else := ""

source_service := s if {
	s := input.source.service
	is_string(s)
} else := ""

gpc if input.subject.gpc == true

# The consent source failed: anything that needs consent must fail closed.
consents_unavailable if {
	e := input.subject.consents_error
	not e in {"", null, false}
}

# consent_status(p, s): the subject's consents hold an entry for purpose p with status s. Read
# field by field, never as whole records: the engine keys its decision cache on the fields read,
# so subjects whose consents have the same purposes and statuses share decisions whatever their
# times and evidence. A numeric index means consents is an array (JSON object keys are strings).
consent_status(p, s) if {
	some i
	input.subject.consents[i].purpose == p
	is_number(i)
	input.subject.consents[i].status == s
}

# ---------------------------------------------------------------------------------------------
# Contracts, indexed. The rules of this section read no input, only data.contracts: the engine
# evaluates them once per policy load, so per request a vendor or a route is a lookup instead of
# a scan of every contract. (`opa eval` and `opa test` evaluate them per query: same answers.)

# Each index is a document of rules with a key in the head (vendors_by_host[h]), so that `opa eval`
# computes only the entry a request looks up, while the engine computes the whole document once.

# Exact host -> the ids of the contracts that list it.
vendors_by_host[h] := {id | some id, c in data.contracts; h in c.hosts} if {
	some c in data.contracts
	some h in c.hosts
}

# A wildcard host "*.example.com" matches exactly one more label, like a TLS certificate's
# wildcard. Indexed by what follows the star (".example.com") -> the ids of the contracts.
vendors_by_wildcard[suffix] := {id |
	some id, c in data.contracts
	some p in c.hosts
	startswith(p, "*.")
	substring(p, 1, -1) == suffix
} if {
	some c in data.contracts
	some pattern in c.hosts
	startswith(pattern, "*.")
	suffix := substring(pattern, 1, -1)
}

# Contract id -> method -> [[route index, path glob], ...], in the contract's order.
routes_by_method[id][m] := [[i, pattern] | some i, r in c.routes; m in r.methods; pattern := r.path] if {
	some id, c in data.contracts
	some r in c.routes
	some m in r.methods
}

# Contract id -> route index -> what the route sends, computed from the contract alone. The card
# guard of a route when no need-to-know rule strips it: "allow" is honoured only for a payment
# processor reached over TLS; anything else that is not "redact" blocks.
route_table[id][i] := {
	"headers": sort({lower(h) | some h in array.concat(object.get(c, "headers", []), object.get(r, "headers", []))}),
	"query": sort({q | some q in object.get(r, "query", [])}),
	"body": object.get(r, "body", "filter"),
	"fields": fields,
	"sorted_fields": sort(fields),
	"transforms": object.get(r, "transforms", {}),
	"cards": route_cards(cards_setting, object.get(c, "role", ""), object.get(c, "plaintext", false)),
} if {
	some id, c in data.contracts
	some i, r in c.routes
	fields := object.get(r, "fields", [])
	cards_setting := object.get(r, "cards", object.get(c, "cards", "block"))
}

route_cards(setting, role, plaintext) := "allow" if {
	setting == "allow"
	role == "payment_processor"
	not plaintext == true
} else := "redact" if {
	setting == "redact"
} else := "block"

# ---------------------------------------------------------------------------------------------
# Vendor: the contract whose hosts contain the request's host. Exact hosts win over wildcards.

# What follows the host's first label: "us21.api.example.com" -> ".api.example.com".
host_suffix := substring(h, i, -1) if {
	h := host
	i := indexof(h, ".")
	i > 0
}

candidate_vendors := ids if {
	ids := vendors_by_host[host]
} else := ids if {
	ids := vendors_by_wildcard[host_suffix]
} else := set()

vendor := v if {
	count(candidate_vendors) == 1
	some v in candidate_vendors
}

contract := data.contracts[vendor]

default vendor_id := ""

vendor_id := vendor

vendor_name := object.get(contract, "name", vendor)

reference := object.get(contract, "reference", "(no reference)")

# "Stripe (contract PSP-2024-03)": every reason names the vendor and its contract.
who := sprintf("%s (contract %s)", [vendor_name, reference])

plaintext if contract.plaintext == true

tls := false if plaintext

else := true

default_port := 80 if plaintext

else := 443

default port := 443

port := object.get(contract, "port", default_port)

default dry_run := false

dry_run if contract.dry_run == true

# ---------------------------------------------------------------------------------------------
# Route: the first route of the contract whose methods contain the request method and whose path
# glob ("*" = one path segment, "**" = any number) matches the path. First match wins, so a
# contract lists specific routes before general ones.

# route_match is everything the policy reads of the path: the first matching route's index ([] when
# none matches, [i] otherwise) and whether the path has dot segments. No other rule reads the path,
# directly or through the rules below (the engine checks this when it loads the policy): the
# decision then depends on the path only through route_match, and the engine keys its decision
# cache on route_match, not on the path, so "/v1/customers/cus_1" and "/v1/customers/cus_2" share
# one decision. A rule that needs more of the path must add it to route_match.
# Without a contract there is no route and nothing to check in the path: a request to a host no
# contract covers costs no path matching, however long its path.
#
# Dot segments would let "/recordings/../secrets" match "/recordings/**". They are refused rather
# than resolved: a well-behaved client never sends them. A dot segment is a segment (after a slash)
# that is ".", "..", or one of them with a dot percent-encoded ("%2e", in either case); a path that
# does not start with "/" is refused too. Two patterns, each starting with a literal ("/." and
# "/%2"), rather than one alternation: Go's regexp then finds candidates with a string search, which
# is what makes the test cheap (one alternation took ~10 µs per path).
#
# One rule, the route list and the dot test computed in place: this rule is evaluated for every
# request whose path is new to the engine, and every rule evaluated costs.
route_match := {
	"first": array.slice([i | some [i, pattern] in routes_by_method[v][m]; glob.match(pattern, ["/"], p)], 0, 1),
	"dot_segments": [
		regex.match(`/\.(\.|%2[eE])?(/|$)`, p),
		regex.match(`/%2[eE](\.|%2[eE])?(/|$)`, p),
		startswith(p, "/"),
	] != [false, false, true],
} if {
	v := vendor
	m := method
	p := path
} else := {"first": [], "dot_segments": false}

route := contract.routes[route_match.first[0]]

# What the matched route sends (route_table, computed once per load).
route_sends := route_table[vendor][route_match.first[0]]

# ---------------------------------------------------------------------------------------------
# Purposes. A route serves the contract's purposes unless it narrows them. A purpose the contract
# serves but the route does not is refused outright; a purpose outside the contract needs the
# subject's consent for it, unless the contract says other purposes are never allowed.

contract_purposes := object.get(contract, "purposes", [])

route_purposes := object.get(route, "purposes", contract_purposes)

other_purposes := object.get(contract, "other_purposes", "consent")

off_contract_purpose if {
	purpose != ""
	not purpose in contract_purposes
}

# The purpose is one the contract and the route serve: no purpose refusal can apply.
purpose_served if {
	purpose in route_purposes
	purpose in contract_purposes
}

# Routes flagged opt_out carry a subject's withdrawal to the vendor (unsubscribe, erasure). They
# are exempt from the marketing gate: refusing them would keep the person on the list.
opt_out_route if route.opt_out == true

marketing_request if purpose == "marketing"

marketing_request if contract.marketing == true

marketing_gated if {
	marketing_request
	not opt_out_route
}

consents_needed contains purpose if {
	off_contract_purpose
	other_purposes == "consent"
}

consents_needed contains "marketing" if marketing_gated

# Consent is the current state per purpose; a withdrawal wins over any grant, so a store that
# returns both for one purpose fails closed.
granted(p) if {
	consent_status(p, "granted")
	not withdrawn(p)
}

withdrawn(p) if consent_status(p, "withdrawn")

# ---------------------------------------------------------------------------------------------
# Need-to-know between services: a contract's need_to_know rules name fields that only some
# source services may send. A rule applies when the matched route sends any of its fields (in
# fields or transforms); a service outside the rule then gets those paths stripped, or is refused
# (on_violation: deny, the default).

need_to_know := object.get(contract, "need_to_know", [])

route_paths := {p | some p in route_sends.fields} | {p | some p, _ in route_sends.transforms}

# The service check comes first: for the services a rule names (the common case) no path is
# compared at all.
violated_rules := {i |
	some i, rule in need_to_know
	not service in rule.services
	some f in rule.fields
	some p in route_paths
	overlaps(p, f)
} if service := source_service

stripped := {p |
	some i in violated_rules
	rule := need_to_know[i]
	object.get(rule, "on_violation", "deny") == "strip"
	some f in rule.fields
	some p in route_paths
	below(p, f)
}

# A rule in deny mode refuses; so does a strip rule whose field sits under a broader route path
# ("payment_method_data" when the rule names "payment_method_data/card/number"): the mask cannot
# keep the parent and drop the child, so stripping is impossible and the request fails closed.
refused_rules := {i |
	some i in violated_rules
	object.get(need_to_know[i], "on_violation", "deny") != "strip"
} | {i |
	some i in violated_rules
	some f in need_to_know[i].fields
	some p in route_paths
	above(p, f)
}

# Path relations over "/"-separated segments where "*" matches any one segment on either side.
# below: p is f or inside f's subtree. above: p is a strict ancestor of f.
below(p, f) if {
	ps := split(p, "/")
	fs := split(f, "/")
	count(ps) >= count(fs)
	every i, s in fs {
		segment_match(ps[i], s)
	}
}

above(p, f) if {
	ps := split(p, "/")
	fs := split(f, "/")
	count(ps) < count(fs)
	every i, s in ps {
		segment_match(s, fs[i])
	}
}

overlaps(p, f) if below(p, f)

overlaps(p, f) if above(p, f)

segment_match(a, b) if a == b

segment_match(a, _) if a == "*"

segment_match(_, b) if b == "*"

# ---------------------------------------------------------------------------------------------
# The card guard: the route's setting (route_cards), except that a service a need-to-know rule
# has just stripped must not send card numbers by any field: it gets "block". A need-to-know rule
# with `cards: true` names the only services that may send card numbers to the vendor at all --
# in any field, the path, the query or a header, not only in the rule's own fields -- so another
# service's request is guarded as for a vendor that may not receive card data. cards_code says
# which refusal a card number found then is: source_not_allowed when the vendor may receive card
# data but this service may not send it, card_number otherwise.

cards := "block" if count(violated_rules) > 0

else := "block" if {
	route_sends.cards == "allow"
	card_services_restricted
	not card_entitled
}

else := route_sends.cards

card_services_restricted if {
	some rule in need_to_know
	rule.cards == true
}

card_entitled if {
	some rule in need_to_know
	rule.cards == true
	source_service in rule.services
}

cards_code := "source_not_allowed" if {
	cards == "block"
	route_sends.cards == "allow"
} else := "card_number"

# ---------------------------------------------------------------------------------------------
# The allowed decision.

# The allowed decision is built in one rule, with the route's table entry read once into a local:
# every key is computed in place rather than as a rule of its own, each of which would cost a
# lookup.
allowed := {
	"allow": true,
	"vendor": vendor,
	"reason": concat("", [
		sprintf("%s for purpose %s under contract %s, route %s %s", [vendor_name, purpose, reference, method, rt.path]),
		consent_note,
		strip_note,
	]),
	"code": "",
	"route": rt.path,
	"fields": kept_fields,
	"transforms": kept_transforms,
	"headers": sends.headers,
	"query": sends.query,
	"body": sends.body,
	"cards": cards,
	"cards_code": cards_code,
	"tls": tls,
	"port": port,
	"dry_run": dry_run,
} if {
	rt := route
	sends := route_sends
}

# What need-to-know leaves of the route's fields and transforms: all of them when nothing is
# stripped (the common case, no per-path test), else those not stripped. stripped_paths is
# stripped evaluated once, as a whole: a membership test against the partial set itself would re-run
# its rule body for every path.
kept_fields := route_sends.sorted_fields if {
	count(stripped) == 0
} else := sort([p | some p in route_sends.fields; not p in stripped_paths])

stripped_paths := {p | some p in stripped}

kept_transforms := route_sends.transforms if {
	count(stripped) == 0
} else := {p: t | some p, t in route_sends.transforms; not p in stripped_paths}

consent_note := sprintf(", with the subject's consent for %s", [concat(", ", sort(consents_needed))]) if {
	count(consents_needed) > 0
} else := ""

strip_note := sprintf("; need-to-know: %d field(s) stripped because service %q may not send them", [count(stripped), source_service]) if {
	count(stripped) > 0
} else := ""

# ---------------------------------------------------------------------------------------------
# The refused decision: the lowest-ranked refusal, nothing may leave. "route" is the matched
# route's path glob, "" when no route matched.

first_refusal := sort([[d.rank, d.code, d.reason] | some d in deny])[0]

refused := {
	"allow": false,
	"vendor": vendor_id,
	"reason": first_refusal[2],
	"code": first_refusal[1],
	"route": refused_route,
	"fields": [],
	"transforms": {},
	"headers": [],
	"query": [],
	"body": "none",
	"cards": "block",
	"cards_code": "card_number",
	"tls": tls,
	"port": port,
	"dry_run": dry_run,
}

refused_route := p if {
	p := route.path
	route_match.dot_segments == false
	is_string(p)
} else := ""

# ---------------------------------------------------------------------------------------------
# Refusals, by rank. To add one, write a `deny contains {"rank": n, "code": c, "reason": r} if
# {...}` rule here or in a file of its own (as legal.rego does); see README.md.

# The host: no contract, or several, cover it.
deny contains refusal if {
	count(candidate_vendors) != 1
	some refusal in vendor_refusals
}

vendor_refusals contains {"rank": 10, "code": "unknown_vendor", "reason": sprintf("no contract covers host %s", [host])} if {
	host != ""
	count(candidate_vendors) == 0
}

vendor_refusals contains {"rank": 10, "code": "unknown_vendor", "reason": "the request names no host"} if host == ""

vendor_refusals contains {"rank": 11, "code": "denied", "reason": sprintf("host %s is claimed by several contracts (%s); fix the contracts", [host, concat(", ", sort(candidate_vendors))])} if {
	count(candidate_vendors) > 1
}

# The app talks plain HTTP to its sidecar (absolute-form requests through HTTP_PROXY); the proxy
# originates the connection to the vendor, over TLS whenever the decision says tls: true -- which
# is every contract that does not opt into plaintext. So the request's own scheme is not what
# reaches the vendor and is not refused. What is refused is card data over plain HTTP: a contract
# that allows plaintext but is a payment processor or allows card numbers (a combination contract
# validation also rejects) gets no request at all.
deny contains {"rank": 20, "code": "tls_required", "reason": sprintf("%s allows plain HTTP, but card data travels over TLS only", [who])} if {
	plaintext
	card_contract
}

card_contract if contract.role == "payment_processor"

card_contract if object.get(route, "cards", object.get(contract, "cards", "block")) == "allow"

card_contract if object.get(contract, "cards", "block") == "allow"

# The upstream port is the contract's (the decision's "port"); a request that names another
# explicit port than its scheme's default asked for a service the contract does not cover.
deny contains {"rank": 21, "code": "denied", "reason": sprintf("%s allows port %d only", [who, port])} if {
	not request_port in {0, port, scheme_default_port}
}

scheme_default_port := 80 if scheme == "http"

else := 443

deny contains {"rank": 30, "code": "purpose_required", "reason": sprintf("%s: every request must declare its purpose (X-Data-Purpose)", [who])} if {
	purpose == ""
	vendor
}

# No route, or a path with dot segments. Both are one refusal; when both apply, the first reason
# is reported (as the lower one would be).
deny contains {"rank": 40, "code": "route_not_allowed", "reason": route_refusal_reason} if {
	vendor
	not route_clean
}

route_clean if {
	count(route_match.first) == 1
	route_match.dot_segments == false
}

route_refusal_reason := sprintf("%s allows no %s request to this path", [who, method]) if {
	count(route_match.first) == 0
} else := sprintf("%s: paths with dot segments are refused", [who])

# The purpose is not one the route serves.
deny contains refusal if {
	not purpose_served
	some refusal in purpose_refusals
}

purpose_refusals contains {"rank": 50, "code": "purpose_not_allowed", "reason": sprintf("%s: route %s %s serves only %s, not %s", [who, method, route.path, concat(", ", route_purposes), purpose])} if {
	not purpose in route_purposes
	purpose in contract_purposes
	purpose != ""
}

purpose_refusals contains {"rank": 50, "code": "purpose_not_allowed", "reason": sprintf("%s allows only the purposes %s, not %s", [who, concat(", ", contract_purposes), purpose])} if {
	off_contract_purpose
	other_purposes != "consent"
}

# The request needs the subject's consent: GPC, the consent source, the consent itself.
deny contains refusal if {
	count(consents_needed) > 0
	some refusal in consent_refusals
}

consent_refusals contains {"rank": 60, "code": "gpc_opt_out", "reason": sprintf("%s is a marketing disclosure and the subject's Global Privacy Control signal opts out of it", [who])} if {
	marketing_gated
	gpc
	vendor
}

consent_refusals contains {"rank": 70, "code": "consent_unavailable", "reason": sprintf("%s: this request needs the subject's consent (%s) and the consent source is unavailable", [who, concat(", ", sort(consents_needed))])} if {
	consents_unavailable
	vendor
}

consent_refusals contains {"rank": 80, "code": "consent_required", "reason": sprintf("%s: the subject has withdrawn consent for %s", [who, p])} if {
	some p in consents_needed
	withdrawn(p)
	vendor
}

consent_refusals contains {"rank": 80, "code": "consent_required", "reason": reason} if {
	some p in consents_needed
	not granted(p)
	not withdrawn(p)
	vendor
	reason := consent_missing_reason(p)
}

consent_missing_reason(p) := sprintf("%s: sharing for marketing needs the subject's granted consent for marketing", [who]) if {
	p == "marketing"
} else := sprintf("%s: purpose %s is outside the contract's purposes (%s) and needs the subject's granted consent for it", [who, p, concat(", ", contract_purposes)])

deny contains {"rank": 90, "code": "source_not_allowed", "reason": sprintf("%s: need-to-know allows fields of this route only from %s, not from service %q", [who, concat(", ", contract.need_to_know[i].services), source_service])} if {
	some i in refused_rules
}
