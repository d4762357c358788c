# Tests of the legal disclosure rules (legal.rego) and the legal channel's contract (LEG-2024-05).
package egress_test

import data.egress

legal_request := req({
	"request": {"host": "disclosures.legal.example", "method": "POST", "path": "/v1/disclosures", "headers": {"content-type": "application/json"}},
	"purpose": "legal",
	"legal_basis": "Subpoena 2026-CV-0142, District Court",
	"requester": "anna.legal@webinar-co.example",
	"approver": "piotr.dpo@webinar-co.example",
	"source": {"service": "legal-desk"},
})

test_legal_disclosure_with_basis_and_second_approver if {
	d := egress.decision with input as legal_request
	d.allow
	d.vendor == "legal"
	d.fields == ["account/created_at", "account/email", "account/id", "account/name", "reference"]
	d.transforms == {}
	d.headers == ["accept", "authorization", "content-type"]
	d.body == "filter"
	d.cards == "block"
	d.reason == "Legal Disclosures Channel for purpose legal under contract LEG-2024-05, route POST /v1/disclosures"
}

# What a subscriber-records response does not need stays home: login IPs, payment and usage.
test_legal_disclosure_strips_the_rest if {
	d := egress.decision with input as legal_request
	every p in ["account", "account/login_ips", "account/phone", "payments", "webinars", "card"] {
		not p in d.fields
	}
}

test_legal_without_basis_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"legal_basis": "  "})
	refused(d, "legal_basis_required")
	contains(d.reason, "X-Legal-Basis")
}

test_legal_without_approver_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"approver": ""})
	refused(d, "approver_required")
	contains(d.reason, "second person's approval")
}

test_legal_approver_equal_to_requester_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"approver": " Anna.Legal@webinar-co.example"})
	refused(d, "approver_required")
	contains(d.reason, "different person")
}

test_legal_without_requester_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"requester": ""})
	refused(d, "approver_required")
	contains(d.reason, "X-Data-Requester")
}

test_legal_fields_missing_from_input_are_refused if {
	d := egress.decision with input as object.remove(legal_request, {"legal_basis", "requester", "approver"})
	refused(d, "legal_basis_required")
}

test_legal_requester_or_approver_missing_from_input_is_refused if {
	every k in ["requester", "approver"] {
		d := egress.decision with input as object.remove(legal_request, {k})
		refused(d, "approver_required")
	}
}

test_legal_fields_of_the_wrong_type_are_refused if {
	d := egress.decision with input as object.union(legal_request, {"legal_basis": true})
	refused(d, "legal_basis_required")
}

# Reasons never carry the case reference or who asked: they go back to the caller and into logs.
test_legal_reasons_carry_no_names if {
	d := egress.decision with input as object.union(legal_request, {"approver": "anna.legal@webinar-co.example"})
	not contains(d.reason, "anna")
	not contains(d.reason, "Subpoena")
}

test_legal_channel_refuses_other_purposes_even_with_consent if {
	every p in ["support", "marketing", "processing"] {
		d := egress.decision with input as with_consents(object.union(legal_request, {"purpose": p}), [granted(p)])
		refused(d, "purpose_not_allowed")
	}
}

# The legal-channel rule holds even if a contract of role legal lists more purposes by mistake.
test_legal_role_limits_purposes_whatever_the_yaml if {
	c := object.union(data.contracts.legal, {"purposes": ["legal", "support"]})
	d := egress.decision with input as object.union(legal_request, {"purpose": "support"}) with data.contracts.legal as c
	refused(d, "purpose_not_allowed")
	contains(d.reason, "only purpose legal")
}

test_legal_unknown_route_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"request": {"path": "/v1/disclosures/1/documents"}})
	refused(d, "route_not_allowed")
}

test_legal_is_reached_over_tls if {
	d := egress.decision with input as object.union(legal_request, {"request": {"scheme": "http", "port": 80}})
	d.allow
	d.tls == true
}

test_legal_purpose_missing_is_refused if {
	d := egress.decision with input as object.union(legal_request, {"purpose": ""})
	refused(d, "purpose_required")
}

# Purpose legal elsewhere follows the same rules: a basis and a second approver are always needed.
test_legal_purpose_to_another_vendor_needs_a_basis if {
	d := egress.decision with input as to("webinarco.zendesk.com", "POST", "/api/v2/tickets", "legal")
	refused(d, "legal_basis_required")
}

# ---------------------------------------------------------------------------------------------
# With the company's identity provider (Pare's legal_jwks): requester and approver are tokens it
# signed, verified here; the person is the token's subject. The keys below were made for these
# tests only: idp_key is the provider's, stranger_key signs tokens the provider never issued.

idp_key := {"kty": "EC", "crv": "P-256", "kid": "idp-test-0", "alg": "ES256", "x": "01m8hPxKfuXwI33xIYvvGOlUZDmnWvK_2p3ANWFTz4Y", "y": "TEnGtIBv-KZtbU-SOQwIaZJPC2U6EvECvVG9o_Qp31Q", "d": "lArM_lpR5qFt06t7-FOqljN5EK3ctX8qUJ1WdFd2y70"}

stranger_key := {"kty": "EC", "crv": "P-256", "kid": "idp-test-1", "alg": "ES256", "x": "zJBxSwSyZvl92jug0deNds0VawYhRvegkYBLMFlFtnE", "y": "oAhCggpkeKkn-91odbN5Iyo1lBJmI7_WBtfHjuFM1ss", "d": "5HHvXEoaFGKSqdGTOmrWBLCDypZsEpatRHzGgpRPMss"}

# What the engine gives the policy as data.pare.legal: the provider's public keys.
identity := {
	"jwks": json.marshal({"keys": [object.remove(idp_key, {"d"})]}),
	"audience": "pare-legal",
	"issuer": "https://idp.webinar-co.example",
}

now_s := floor(time.now_ns() / 1000000000)

# A token with the claims the provider puts in it, signed with key; claims overrides them.
token(sub, claims, key) := io.jwt.encode_sign(
	{"alg": "ES256", "typ": "JWT", "kid": key.kid},
	object.union({"sub": sub, "iss": identity.issuer, "aud": identity.audience, "iat": now_s, "exp": now_s + 600}, claims),
	key,
)

anna := token("anna.legal@webinar-co.example", {}, idp_key)

piotr := token("piotr.dpo@webinar-co.example", {}, idp_key)

legal_with_tokens(requester, approver) := object.union(legal_request, {"requester": requester, "approver": approver})

test_tokens_of_two_people_allow_and_name_them if {
	d := egress.decision with input as legal_with_tokens(anna, piotr) with data.pare.legal as identity
	d.allow
	d.vendor == "legal"
	d.identities == {"requester": "anna.legal@webinar-co.example", "approver": "piotr.dpo@webinar-co.example"}
}

test_tokens_requesters_own_token_as_approver_is_refused if {
	d := egress.decision with input as legal_with_tokens(anna, anna) with data.pare.legal as identity
	refused(d, "approver_required")
	contains(d.reason, "different person")
	d.identities == {"requester": "anna.legal@webinar-co.example", "approver": "anna.legal@webinar-co.example"}
}

# A second token for the same person (another login) is still one person.
test_tokens_second_token_of_the_requester_is_refused if {
	again := token("anna.legal@webinar-co.example", {"iat": now_s - 5, "jti": "second"}, idp_key)
	d := egress.decision with input as legal_with_tokens(anna, again) with data.pare.legal as identity
	refused(d, "approver_required")
	contains(d.reason, "different person")
}

test_tokens_invalid_approver_is_refused if {
	bad := {
		"expired": token("piotr.dpo@webinar-co.example", {"exp": now_s - 60}, idp_key),
		"not yet valid": token("piotr.dpo@webinar-co.example", {"nbf": now_s + 600}, idp_key),
		"no expiry": io.jwt.encode_sign({"alg": "ES256", "kid": idp_key.kid}, {"sub": "piotr.dpo@webinar-co.example", "iss": identity.issuer, "aud": identity.audience}, idp_key),
		"wrong audience": token("piotr.dpo@webinar-co.example", {"aud": "crm"}, idp_key),
		"no audience": io.jwt.encode_sign({"alg": "ES256", "kid": idp_key.kid}, {"sub": "piotr.dpo@webinar-co.example", "iss": identity.issuer, "exp": now_s + 600}, idp_key),
		"wrong issuer": token("piotr.dpo@webinar-co.example", {"iss": "https://evil.example"}, idp_key),
		"wrong signature": token("piotr.dpo@webinar-co.example", {}, stranger_key),
		"wrong signature, the provider's kid": token("piotr.dpo@webinar-co.example", {}, object.union(stranger_key, {"kid": idp_key.kid})),
		"no subject": token("", {}, idp_key),
		"subject not a string": token("piotr.dpo@webinar-co.example", {"sub": 42}, idp_key),
		"a name": "piotr.dpo@webinar-co.example",
		"garbage": "a.b.c",
		"alg none": concat(".", [base64url.encode_no_pad(`{"alg":"none"}`), split(piotr, ".")[1], ""]),
		"HS256 keyed with the public key": io.jwt.encode_sign({"alg": "HS256"}, {"sub": "piotr.dpo@webinar-co.example", "iss": identity.issuer, "aud": identity.audience, "exp": now_s + 600}, {"kty": "oct", "k": base64url.encode_no_pad(identity.jwks)}),
	}
	every _, t in bad {
		d := egress.decision with input as legal_with_tokens(anna, t) with data.pare.legal as identity
		refused(d, "approver_required")
		contains(d.reason, "X-Legal-Approver is not a valid token")
		d.identities == {"requester": "anna.legal@webinar-co.example", "approver": ""}
	}
}

test_tokens_invalid_requester_is_refused if {
	expired := token("anna.legal@webinar-co.example", {"exp": now_s - 60}, idp_key)
	d := egress.decision with input as legal_with_tokens(expired, piotr) with data.pare.legal as identity
	refused(d, "approver_required")
	contains(d.reason, "X-Data-Requester is not a valid token")
}

test_tokens_missing_are_refused if {
	d := egress.decision with input as legal_with_tokens(anna, "  ") with data.pare.legal as identity
	refused(d, "approver_required")
	contains(d.reason, "second person's approval")
	d2 := egress.decision with input as object.remove(legal_with_tokens(anna, piotr), {"requester"}) with data.pare.legal as identity
	refused(d2, "approver_required")
	contains(d2.reason, "X-Data-Requester")
}

# No keys (the provider has not answered yet): legal requests are refused 503, whatever the tokens.
test_tokens_without_keys_are_refused_unavailable if {
	d := egress.decision with input as legal_with_tokens(anna, piotr) with data.pare.legal as object.union(identity, {"jwks": ""})
	refused(d, "identity_unavailable")
	d.identities == {"requester": "", "approver": ""}
}

# What the caller must fix is reported before what the sidecar lacks.
test_tokens_without_keys_report_a_missing_basis_first if {
	d := egress.decision with input as object.union(legal_with_tokens(anna, piotr), {"legal_basis": ""}) with data.pare.legal as object.union(identity, {"jwks": ""})
	refused(d, "legal_basis_required")
}

# Every other request is decided as without an identity provider: no token is read, nothing is
# added to the decision (so it stays cacheable).
test_tokens_do_not_touch_other_requests if {
	inp := to("webinarco.zendesk.com", "POST", "/api/v2/tickets", "support")
	d := egress.decision with input as inp with data.pare.legal as object.union(identity, {"jwks": ""})
	d.allow
	object.keys(d) == decision_keys
	d == egress.decision with input as inp
}

test_names_add_no_identities_to_the_decision if {
	d := egress.decision with input as legal_request
	d.allow
	object.keys(d) == decision_keys
}
