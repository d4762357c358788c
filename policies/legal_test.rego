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
