# Tests of the generic logic of egress.rego: vendor and route matching, refusal ranking, consent,
# need-to-know, the card guard and the shape of the decision. Tests of the bundled contracts are
# in contracts_test.rego, of the legal rules in legal_test.rego.
package egress_test

import data.egress

# ---------------------------------------------------------------------------------------------
# Helpers shared by every test file of this package.

# A request as the engine builds it (see README.md, "Policy input"); req(...) merges overrides
# into it recursively, so a test states only what it is about.
base_input := {
	"request": {
		"method": "POST",
		"scheme": "https",
		"host": "api.stripe.com",
		"port": 443,
		"path": "/v1/payment_intents",
		"query": {},
		"headers": {"content-type": "application/x-www-form-urlencoded"},
	},
	"purpose": "payment",
	"subject": {"id": "u-123", "gpc": false, "consents": [], "consents_error": ""},
	"legal_basis": "",
	"requester": "",
	"approver": "",
	"source": {"service": "billing"},
}

req(overrides) := object.union(base_input, overrides)

# to(host, method, path, purpose) is the common override.
to(host, method, path, purpose) := req({"request": {"host": host, "method": method, "path": path}, "purpose": purpose})

granted(p) := {"purpose": p, "status": "granted", "time": "2026-10-01T10:00:00Z", "evidence": {"action": "checked a box", "where": "signup form /register", "policy_version": "2026-09"}}

withdrawn(p) := {"purpose": p, "status": "withdrawn", "time": "2026-10-02T10:00:00Z", "evidence": {"action": "unchecked a box", "where": "account settings", "policy_version": "2026-09"}}

with_consents(inp, cs) := object.union(inp, {"subject": {"consents": cs}})

decision_keys := {"allow", "vendor", "reason", "code", "route", "fields", "transforms", "headers", "query", "body", "cards", "cards_code", "tls", "port", "dry_run"}

# refused(d, code) holds when d refuses with code and lets nothing leave.
refused(d, code) if {
	d.allow == false
	d.code == code
	d.fields == []
	d.transforms == {}
	d.headers == []
	d.query == []
	d.body == "none"
	d.cards == "block"
}

# A minimal contract for tests of the generic logic, independent of the bundled contracts.
fixture := {
	"name": "Test Vendor",
	"reference": "TST-1",
	"role": "support",
	"hosts": ["api.test.example"],
	"purposes": ["support"],
	"routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a", "b/c"]}],
}

# ---------------------------------------------------------------------------------------------
# Shape of the decision.

test_allowed_decision_has_exactly_the_documented_keys if {
	d := egress.decision with input as req({})
	d.allow
	{k | some k, _ in d} == decision_keys
}

test_refused_decision_has_exactly_the_documented_keys if {
	d := egress.decision with input as to("evil.example", "POST", "/", "payment")
	{k | some k, _ in d} == decision_keys
}

test_empty_input_is_refused_not_undefined if {
	d := egress.decision with input as {}
	refused(d, "unknown_vendor")
	d.reason == "the request names no host"
}

test_no_contracts_loaded_refuses_everything if {
	d := egress.decision with input as req({}) with data.contracts as {}
	refused(d, "unknown_vendor")
}

# ---------------------------------------------------------------------------------------------
# Vendor matching.

test_unknown_host_is_refused if {
	d := egress.decision with input as to("api.unknown-vendor.example", "POST", "/v1/x", "payment")
	refused(d, "unknown_vendor")
	d.vendor == ""
	d.reason == "no contract covers host api.unknown-vendor.example"
}

test_host_match_ignores_case_and_trailing_dot if {
	d := egress.decision with input as to("API.Stripe.COM.", "POST", "/v1/payment_intents", "payment")
	d.allow
	d.vendor == "stripe"
}

test_subdomain_of_exact_host_is_not_the_vendor if {
	d := egress.decision with input as to("evil.api.stripe.com", "POST", "/v1/payment_intents", "payment")
	refused(d, "unknown_vendor")
}

test_wildcard_host_matches_one_label if {
	c := object.union(fixture, {"hosts": ["*.api.test.example"]})
	d := egress.decision with input as to("us21.api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.allow
	d.vendor == "t"
}

test_wildcard_host_does_not_match_two_labels_or_the_apex if {
	c := object.union(fixture, {"hosts": ["*.api.test.example"]})
	d1 := egress.decision with input as to("a.b.api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	refused(d1, "unknown_vendor")
	d2 := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	refused(d2, "unknown_vendor")
}

test_exact_host_wins_over_wildcard if {
	w := object.union(fixture, {"hosts": ["*.test.example"]})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"exact": fixture, "wild": w}
	d.vendor == "exact"
}

test_host_claimed_twice_is_refused if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"one": fixture, "two": fixture}
	refused(d, "denied")
	contains(d.reason, "claimed by several contracts (one, two)")
}

# ---------------------------------------------------------------------------------------------
# Transport.

# The app speaks plain HTTP to its sidecar; the proxy originates TLS to the vendor because the
# decision says tls: true.
test_plain_http_from_the_app_is_sent_over_tls if {
	d := egress.decision with input as req({"request": {"scheme": "http", "port": 80}})
	d.allow
	d.tls == true
	d.port == 443
}

test_plaintext_contract_allows_http_without_cards if {
	c := object.union(fixture, {"plaintext": true})
	d := egress.decision with input as req({"request": {"scheme": "http", "host": "api.test.example", "port": 80, "path": "/v1/things"}, "purpose": "support"}) with data.contracts as {"t": c}
	d.allow
	d.tls == false
	d.port == 80
	d.cards == "block"
}

test_plaintext_payment_processor_is_refused if {
	c := object.union(fixture, {"plaintext": true, "role": "payment_processor"})
	d := egress.decision with input as req({"request": {"scheme": "http", "host": "api.test.example", "port": 80, "path": "/v1/things"}, "purpose": "support"}) with data.contracts as {"t": c}
	refused(d, "tls_required")
	d.tls == false
	d.reason == "Test Vendor (contract TST-1) allows plain HTTP, but card data travels over TLS only"
}

test_plaintext_with_cards_allowed_is_refused if {
	c := object.union(fixture, {"plaintext": true, "routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a"], "cards": "allow"}]})
	d := egress.decision with input as req({"request": {"scheme": "http", "host": "api.test.example", "port": 80, "path": "/v1/things"}, "purpose": "support"}) with data.contracts as {"t": c}
	refused(d, "tls_required")
}

test_other_explicit_port_is_refused if {
	d := egress.decision with input as req({"request": {"port": 8443}})
	refused(d, "denied")
	contains(d.reason, "allows port 443 only")
}

test_default_ports_are_accepted if {
	every inp in [
		req({"request": {"scheme": "http", "port": 80}}),
		req({"request": {"scheme": "https", "port": 443}}),
		json.remove(base_input, ["request/port"]),
	] {
		d := egress.decision with input as inp
		d.allow
	}
}

test_contract_port_is_reported if {
	c := object.union(fixture, {"port": 8443})
	d := egress.decision with input as req({"request": {"host": "api.test.example", "port": 8443, "path": "/v1/things"}, "purpose": "support"}) with data.contracts as {"t": c}
	d.allow
	d.port == 8443
}

# ---------------------------------------------------------------------------------------------
# Routes.

test_first_matching_route_wins if {
	c := object.union(fixture, {"routes": [
		{"methods": ["POST"], "path": "/v1/things", "fields": ["first"]},
		{"methods": ["POST"], "path": "/v1/*", "fields": ["second"]},
	]})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.fields == ["first"]
}

test_method_must_match if {
	d := egress.decision with input as to("api.test.example", "PUT", "/v1/things", "support") with data.contracts as {"t": fixture}
	refused(d, "route_not_allowed")
	d.reason == "Test Vendor (contract TST-1) allows no PUT request to this path"
}

test_method_is_case_insensitive if {
	d := egress.decision with input as to("api.test.example", "post", "/v1/things", "support") with data.contracts as {"t": fixture}
	d.allow
}

test_single_star_does_not_cross_slashes if {
	c := object.union(fixture, {"routes": [{"methods": ["GET"], "path": "/v1/things/*", "body": "none"}]})
	d := egress.decision with input as to("api.test.example", "GET", "/v1/things/1/secret", "support") with data.contracts as {"t": c}
	refused(d, "route_not_allowed")
}

test_dot_segments_are_refused if {
	c := object.union(fixture, {"routes": [{"methods": ["PUT"], "path": "/public/**", "body": "opaque"}]})
	every p in [
		"/public/../private/x", "/public/./x", "/public/%2E%2E/private", "/public/..", "/public/.",
		"/public/%2e", "/public/%2E.", "/public/.%2e/x", "/public/%2e%2E/", "public/x", "./public/x", "",
	] {
		d := egress.decision with input as to("api.test.example", "PUT", p, "support") with data.contracts as {"t": c}
		refused(d, "route_not_allowed")
		d.route == ""
	}
}

# Dots that make no dot segment: the path is the route's.
test_dots_inside_segments_are_paths if {
	c := object.union(fixture, {"routes": [{"methods": ["PUT"], "path": "/public/**", "body": "opaque"}]})
	every p in ["/public/3.0/x", "/public/.well-known", "/public/a..b", "/public/...", "/public/%2e%2e%2e", "/public/x.%2e", "/public/%2ex"] {
		d := egress.decision with input as to("api.test.example", "PUT", p, "support") with data.contracts as {"t": c}
		d.allow
		d.route == "/public/**"
	}
}

test_route_defaults if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": fixture}
	d.allow
	d.body == "filter"
	d.cards == "block"
	d.headers == []
	d.query == []
	d.transforms == {}
	d.tls == true
	d.port == 443
	d.dry_run == false
}

test_dry_run_travels_in_allowed_and_refused_decisions if {
	c := object.union(fixture, {"dry_run": true})
	d1 := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d1.allow
	d1.dry_run == true
	d2 := egress.decision with input as to("api.test.example", "DELETE", "/v1/things", "support") with data.contracts as {"t": c}
	refused(d2, "route_not_allowed")
	d2.dry_run == true
}

test_headers_are_lower_cased_and_merged if {
	c := object.union(fixture, {
		"headers": ["Authorization"],
		"routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a"], "headers": ["x-request-id", "authorization"]}],
	})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.headers == ["authorization", "x-request-id"]
}

# ---------------------------------------------------------------------------------------------
# Purposes and consent.

test_purpose_missing_is_refused if {
	d := egress.decision with input as req({"purpose": ""})
	refused(d, "purpose_required")
	contains(d.reason, "X-Data-Purpose")
}

test_purpose_absent_from_input_is_refused if {
	d := egress.decision with input as object.remove(base_input, {"purpose"})
	refused(d, "purpose_required")
}

test_purpose_is_case_insensitive if {
	d := egress.decision with input as req({"purpose": " Payment "})
	d.allow
}

test_off_contract_purpose_needs_consent if {
	d := egress.decision with input as req({"purpose": "analytics"})
	refused(d, "consent_required")
	d.reason == "Stripe (contract PSP-2024-03): purpose analytics is outside the contract's purposes (payment) and needs the subject's granted consent for it"
}

test_off_contract_purpose_with_consent_is_allowed_and_says_so if {
	d := egress.decision with input as with_consents(req({"purpose": "analytics"}), [granted("analytics")])
	d.allow
	endswith(d.reason, ", with the subject's consent for analytics")
}

test_consent_for_another_purpose_does_not_count if {
	d := egress.decision with input as with_consents(req({"purpose": "analytics"}), [granted("marketing")])
	refused(d, "consent_required")
}

test_withdrawn_consent_is_refused if {
	d := egress.decision with input as with_consents(req({"purpose": "analytics"}), [withdrawn("analytics")])
	refused(d, "consent_required")
	contains(d.reason, "withdrawn consent for analytics")
}

test_withdrawal_wins_over_grant if {
	d := egress.decision with input as with_consents(req({"purpose": "analytics"}), [granted("analytics"), withdrawn("analytics")])
	refused(d, "consent_required")
}

test_consent_unavailable_refuses_consent_gated_requests if {
	inp := object.union(req({"purpose": "analytics"}), {"subject": {"consents": [granted("analytics")], "consents_error": "consent service timed out"}})
	d := egress.decision with input as inp
	refused(d, "consent_unavailable")
	not contains(d.reason, "timed out")
}

test_consent_unavailable_does_not_stop_requests_that_need_no_consent if {
	d := egress.decision with input as object.union(req({}), {"subject": {"consents_error": "consent service timed out"}})
	d.allow
}

test_marketing_purpose_needs_marketing_consent_anywhere if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "marketing") with data.contracts as {"t": fixture}
	refused(d, "consent_required")
	contains(d.reason, "needs the subject's granted consent for marketing")
}

test_gpc_refuses_marketing_whatever_the_consents if {
	inp := object.union(to("api.test.example", "POST", "/v1/things", "marketing"), {"subject": {"gpc": true, "consents": [granted("marketing")]}})
	d := egress.decision with input as inp with data.contracts as {"t": fixture}
	refused(d, "gpc_opt_out")
}

test_gpc_does_not_affect_other_purposes if {
	d := egress.decision with input as object.union(req({}), {"subject": {"gpc": true}})
	d.allow
}

test_other_purposes_deny_ignores_consent if {
	c := object.union(fixture, {"other_purposes": "deny"})
	inp := with_consents(to("api.test.example", "POST", "/v1/things", "analytics"), [granted("analytics")])
	d := egress.decision with input as inp with data.contracts as {"t": c}
	refused(d, "purpose_not_allowed")
	d.reason == "Test Vendor (contract TST-1) allows only the purposes support, not analytics"
}

test_route_purposes_narrow_and_consent_cannot_widen_them if {
	c := object.union(fixture, {
		"purposes": ["support", "billing"],
		"routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a"], "purposes": ["support"]}],
	})
	inp := with_consents(to("api.test.example", "POST", "/v1/things", "billing"), [granted("billing")])
	d := egress.decision with input as inp with data.contracts as {"t": c}
	refused(d, "purpose_not_allowed")
	contains(d.reason, "serves only support, not billing")
}

test_missing_subject_is_no_consent if {
	d := egress.decision with input as object.remove(req({"purpose": "analytics"}), {"subject"})
	refused(d, "consent_required")
}

# ---------------------------------------------------------------------------------------------
# Need-to-know.

ntk_contract(mode) := object.union(fixture, {
	"need_to_know": [{"fields": ["b/c"], "services": ["billing"], "on_violation": mode}],
	"cards": "redact",
})

test_need_to_know_allows_the_named_service if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": ntk_contract("strip")}
	d.allow
	d.fields == ["a", "b/c"]
	d.cards == "redact"
}

test_need_to_know_strip_removes_the_fields_and_blocks_cards if {
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": ntk_contract("strip")}
	d.allow
	d.fields == ["a"]
	d.cards == "block"
	contains(d.reason, "1 field(s) stripped because service \"webapp\" may not send them")
}

# A rule with cards: true names the only services that may send the processor a card number
# anywhere in a request: another service's request on any route is card-guarded, and a card
# number found is refused as source_not_allowed (the vendor may receive card data, this service
# may not send it).
cards_contract := object.union(fixture, {
	"role": "payment_processor",
	"cards": "allow",
	"routes": [
		{"methods": ["POST"], "path": "/v1/things", "fields": ["a", "b/c"]},
		{"methods": ["POST"], "path": "/v1/other", "fields": ["name"]},
	],
	"need_to_know": [{"fields": ["b/c"], "services": ["billing"], "cards": true}],
})

test_need_to_know_cards_the_named_service_may_send_card_data if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/other", "support") with data.contracts as {"t": cards_contract}
	d.allow
	d.cards == "allow"
}

test_need_to_know_cards_other_services_are_guarded_on_every_route if {
	inp := object.union(to("api.test.example", "POST", "/v1/other", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": cards_contract}
	d.allow
	d.cards == "block"
	d.cards_code == "source_not_allowed"
}

test_need_to_know_without_cards_keeps_the_route_setting if {
	c := json.patch(cards_contract, [{"op": "replace", "path": "/need_to_know/0/cards", "value": false}])
	inp := object.union(to("api.test.example", "POST", "/v1/other", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": c}
	d.cards == "allow"
}

test_card_number_is_the_code_for_vendors_without_card_data if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": fixture}
	d.allow
	d.cards == "block"
	d.cards_code == "card_number"
}

test_need_to_know_deny_refuses if {
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": ntk_contract("deny")}
	refused(d, "source_not_allowed")
	d.reason == "Test Vendor (contract TST-1): need-to-know allows fields of this route only from billing, not from service \"webapp\""
}

test_need_to_know_defaults_to_deny if {
	c := object.union(fixture, {"need_to_know": [{"fields": ["b/c"], "services": ["billing"]}]})
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": c}
	refused(d, "source_not_allowed")
}

test_need_to_know_missing_source_is_a_violation if {
	inp := object.remove(to("api.test.example", "POST", "/v1/things", "support"), {"source"})
	d := egress.decision with input as inp with data.contracts as {"t": ntk_contract("deny")}
	refused(d, "source_not_allowed")
}

test_need_to_know_strip_of_a_child_under_a_broader_path_refuses if {
	c := object.union(fixture, {
		"routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a", "b"]}],
		"need_to_know": [{"fields": ["b/c"], "services": ["billing"], "on_violation": "strip"}],
	})
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": c}
	refused(d, "source_not_allowed")
}

test_need_to_know_strip_covers_wildcards_and_transforms if {
	c := object.union(fixture, {
		"routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a", "items/*/card/number"], "transforms": {"items/*/card/name": "redact"}}],
		"need_to_know": [{"fields": ["items/0/card"], "services": ["billing"], "on_violation": "strip"}],
	})
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": c}
	d.allow
	d.fields == ["a"]
	d.transforms == {}
}

test_need_to_know_ignores_routes_without_the_fields if {
	c := object.union(fixture, {"need_to_know": [{"fields": ["z"], "services": ["billing"], "on_violation": "deny"}]})
	inp := object.union(to("api.test.example", "POST", "/v1/things", "support"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp with data.contracts as {"t": c}
	d.allow
}

# ---------------------------------------------------------------------------------------------
# The card guard.

test_cards_default_to_block if {
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": fixture}
	d.cards == "block"
}

test_cards_allow_is_only_honoured_for_payment_processors if {
	c := object.union(fixture, {"cards": "allow"})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.cards == "block"
}

test_route_cards_override_the_contract if {
	c := object.union(fixture, {"cards": "block", "routes": [{"methods": ["POST"], "path": "/v1/things", "fields": ["a"], "cards": "redact"}]})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.cards == "redact"
}

test_unknown_cards_value_blocks if {
	c := object.union(fixture, {"cards": "sure"})
	d := egress.decision with input as to("api.test.example", "POST", "/v1/things", "support") with data.contracts as {"t": c}
	d.cards == "block"
}

# ---------------------------------------------------------------------------------------------
# Refusal ranking: the most fundamental problem is reported.

test_port_is_reported_before_purpose_and_route if {
	d := egress.decision with input as req({"request": {"port": 8443, "path": "/nope"}, "purpose": ""})
	d.code == "denied"
}

test_purpose_is_reported_before_route if {
	d := egress.decision with input as req({"request": {"path": "/nope"}, "purpose": ""})
	d.code == "purpose_required"
}

test_gpc_is_reported_before_consent_unavailable if {
	inp := object.union(to("api.test.example", "POST", "/v1/things", "marketing"), {"subject": {"gpc": true, "consents_error": "down"}})
	d := egress.decision with input as inp with data.contracts as {"t": fixture}
	d.code == "gpc_opt_out"
}

# Reasons are safe to log and to return to the caller: they never carry a value from the request
# other than the host, the method and the declared purpose.
test_reasons_carry_no_request_values if {
	inp := object.union(req({"purpose": "analytics"}), {
		"subject": {"id": "u-secret-42"},
		"request": {"path": "/v1/payment_intents", "query": {"email": ["maria@example.org"]}},
		"source": {"service": "billing"},
	})
	d := egress.decision with input as inp
	not contains(d.reason, "u-secret-42")
	not contains(d.reason, "maria@example.org")
}
