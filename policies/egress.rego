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
package egress

# The decision object of the contract documented in README.md. Always defined: every key is
# present on allowed and refused requests alike, so the engine never has to guess a default.
default decision := {
	"allow": false,
	"vendor": "",
	"reason": "the policy produced no decision",
	"code": "denied",
	"fields": [],
	"transforms": {},
	"headers": [],
	"query": [],
	"body": "none",
	"cards": "block",
	"tls": true,
	"port": 443,
	"dry_run": false,
}

decision := d if {
	count(deny) == 0
	d := allowed
}

decision := d if {
	count(deny) > 0
	d := refused
}

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

consents := c if {
	c := input.subject.consents
	is_array(c)
} else := []

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

# ---------------------------------------------------------------------------------------------
# Vendor: the contract whose hosts contain the request's host. Exact hosts win over wildcards; a
# wildcard "*.example.com" matches exactly one more label, like a TLS certificate's wildcard.

# The lookups read only the hosts of each contract (data.contracts[id].hosts), never the contracts
# whole: only the matched contract is read in full, which keeps a decision cheap.
# The host is read into a local once: a rule reference inside the comprehension would be looked up
# again for every host of every contract.
exact_vendors := {id | data.contracts[id].hosts[_] == h} if h := host

wildcard_vendors := {id |
	pattern := data.contracts[id].hosts[_]
	wildcard_match(pattern, h)
} if h := host

wildcard_match(pattern, h) if {
	startswith(pattern, "*.")
	suffix := substring(pattern, 1, -1)
	endswith(h, suffix)
	label := trim_suffix(h, suffix)
	label != ""
	not contains(label, ".")
}

candidate_vendors := exact_vendors if count(exact_vendors) > 0

else := wildcard_vendors

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

route_indexes := [i |
	some i, r in object.get(contract, "routes", [])
	m in r.methods
	glob.match(r.path, ["/"], p)
] if {
	m := method
	p := path
}

route := contract.routes[route_indexes[0]]

# Dot segments would let "/recordings/../secrets" match "/recordings/**". They are refused rather
# than resolved: a well-behaved client never sends them.
# A segment (between slashes) that is ".", "..", or one of them with a dot percent-encoded, in any
# case: one regex test instead of a test per segment.
unclean_path if regex.match(`(?i)(^|/)(\.|\.\.|%2e|%2e%2e|\.%2e|%2e\.)(/|$)`, path)

unclean_path if not startswith(path, "/")

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
	some c in consents
	c.purpose == p
	c.status == "granted"
	not withdrawn(p)
}

withdrawn(p) if {
	some c in consents
	c.purpose == p
	c.status == "withdrawn"
}

# ---------------------------------------------------------------------------------------------
# Need-to-know between services: a contract's need_to_know rules name fields that only some
# source services may send. A rule applies when the matched route sends any of its fields (in
# fields or transforms); a service outside the rule then gets those paths stripped, or is refused
# (on_violation: deny, the default).

need_to_know := object.get(contract, "need_to_know", [])

route_fields := object.get(route, "fields", [])

route_transforms := object.get(route, "transforms", {})

route_paths := {p | some p in route_fields} | {p | some p, _ in route_transforms}

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
# The card guard: "allow" is honoured only for a payment processor reached over TLS, and never
# for a service that a need-to-know rule has just stripped (it must not send card numbers by any
# field). Anything else that is not "redact" blocks.

cards_setting := object.get(route, "cards", object.get(contract, "cards", "block"))

cards := "block" if {
	count(violated_rules) > 0
} else := "allow" if {
	cards_setting == "allow"
	contract.role == "payment_processor"
	not plaintext
} else := "redact" if {
	cards_setting == "redact"
} else := "block"

# ---------------------------------------------------------------------------------------------
# The allowed decision.

# The allowed decision is built in one rule, with the route read once into a local: every key is
# computed in place rather than as a rule of its own, each of which would cost a lookup.
allowed := {
	"allow": true,
	"vendor": vendor,
	"reason": concat("", [
		sprintf("%s for purpose %s under contract %s, route %s %s", [vendor_name, purpose, reference, method, rt.path]),
		consent_note,
		strip_note,
	]),
	"code": "",
	"fields": sort(kept_fields),
	"transforms": kept_transforms,
	"headers": sort({lower(h) | some h in array.concat(object.get(contract, "headers", []), object.get(rt, "headers", []))}),
	"query": sort({q | some q in object.get(rt, "query", [])}),
	"body": object.get(rt, "body", "filter"),
	"cards": cards,
	"tls": tls,
	"port": port,
	"dry_run": dry_run,
} if {
	rt := route
}

# What need-to-know leaves of the route's fields and transforms: all of them when nothing is
# stripped (the common case, no per-path test), else those not stripped. stripped_paths is
# stripped evaluated once, as a whole: a membership test against the partial set itself would re-run
# its rule body for every path.
kept_fields := route_fields if {
	count(stripped) == 0
} else := [p | some p in route_fields; not p in stripped_paths]

kept_transforms := route_transforms if {
	count(stripped) == 0
} else := {p: t | some p, t in route_transforms; not p in stripped_paths}

stripped_paths := {p | some p in stripped}

consent_note := sprintf(", with the subject's consent for %s", [concat(", ", sort(consents_needed))]) if {
	count(consents_needed) > 0
} else := ""

strip_note := sprintf("; need-to-know: %d field(s) stripped because service %q may not send them", [count(stripped), source_service]) if {
	count(stripped) > 0
} else := ""

# ---------------------------------------------------------------------------------------------
# The refused decision: the lowest-ranked refusal, nothing may leave.

first_refusal := sort([[d.rank, d.code, d.reason] | some d in deny])[0]

refused := {
	"allow": false,
	"vendor": vendor_id,
	"reason": first_refusal[2],
	"code": first_refusal[1],
	"fields": [],
	"transforms": {},
	"headers": [],
	"query": [],
	"body": "none",
	"cards": "block",
	"tls": tls,
	"port": port,
	"dry_run": dry_run,
}

# ---------------------------------------------------------------------------------------------
# Refusals, by rank.

deny contains {"rank": 10, "code": "unknown_vendor", "reason": sprintf("no contract covers host %s", [host])} if {
	host != ""
	count(candidate_vendors) == 0
}

deny contains {"rank": 10, "code": "unknown_vendor", "reason": "the request names no host"} if host == ""

deny contains {"rank": 11, "code": "denied", "reason": sprintf("host %s is claimed by several contracts (%s); fix the contracts", [host, concat(", ", sort(candidate_vendors))])} if {
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

card_contract if cards_setting == "allow"

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

deny contains {"rank": 40, "code": "route_not_allowed", "reason": sprintf("%s allows no %s request to this path", [who, method])} if {
	count(route_indexes) == 0
	vendor
}

deny contains {"rank": 40, "code": "route_not_allowed", "reason": sprintf("%s: paths with dot segments are refused", [who])} if {
	unclean_path
	vendor
}

deny contains {"rank": 50, "code": "purpose_not_allowed", "reason": sprintf("%s: route %s %s serves only %s, not %s", [who, method, route.path, concat(", ", route_purposes), purpose])} if {
	not purpose in route_purposes
	purpose in contract_purposes
	purpose != ""
}

deny contains {"rank": 50, "code": "purpose_not_allowed", "reason": sprintf("%s allows only the purposes %s, not %s", [who, concat(", ", contract_purposes), purpose])} if {
	off_contract_purpose
	other_purposes != "consent"
}

deny contains {"rank": 60, "code": "gpc_opt_out", "reason": sprintf("%s is a marketing disclosure and the subject's Global Privacy Control signal opts out of it", [who])} if {
	marketing_gated
	gpc
	vendor
}

deny contains {"rank": 70, "code": "consent_unavailable", "reason": sprintf("%s: this request needs the subject's consent (%s) and the consent source is unavailable", [who, concat(", ", sort(consents_needed))])} if {
	count(consents_needed) > 0
	consents_unavailable
	vendor
}

deny contains {"rank": 80, "code": "consent_required", "reason": sprintf("%s: the subject has withdrawn consent for %s", [who, p])} if {
	some p in consents_needed
	withdrawn(p)
	vendor
}

deny contains {"rank": 80, "code": "consent_required", "reason": reason} if {
	some p in consents_needed
	not granted(p)
	not withdrawn(p)
	vendor
	reason := consent_missing_reason(p)
}

consent_missing_reason(p) := sprintf("%s: sharing for marketing needs the subject's granted consent for marketing", [who]) if {
	p == "marketing"
} else := sprintf("%s: purpose %s is outside the contract's purposes (%s) and needs the subject's granted consent for it", [who, p, concat(", ", contract_purposes)])

deny contains {"rank": 90, "code": "source_not_allowed", "reason": sprintf("%s: need-to-know allows fields of this route only from %s, not from service %q", [who, concat(", ", need_to_know[i].services), source_service])} if {
	some i in refused_rules
}
