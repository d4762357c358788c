# Legal disclosures (privacy policy: "We may respond to subpoenas, court orders, or legal
# processes by disclosing ..."). A disclosure under purpose "legal" needs the legal basis (the case
# or order reference, X-Legal-Basis) and a second person's approval: the approver (X-Legal-Approver)
# must be named and differ from the requester (X-Data-Requester). The engine records both in the
# ledger. These rules hold for every contract, not only the legal channel's.
package egress

legal_basis := trim_space(b) if {
	b := input.legal_basis
	is_string(b)
} else := ""

# Names are compared case-insensitively: "Anna@x" approving "anna@x" is one person.
requester := lower(trim_space(r)) if {
	r := input.requester
	is_string(r)
} else := ""

approver := lower(trim_space(a)) if {
	a := input.approver
	is_string(a)
} else := ""

legal_request if purpose == "legal"

# A legal contract serves purpose legal and nothing else, whatever its purposes list says: a
# mistake in the YAML must not turn the courts channel into a general-purpose one.
deny contains {"rank": 50, "code": "purpose_not_allowed", "reason": sprintf("%s is a legal disclosure channel: only purpose legal is allowed", [who])} if {
	contract.role == "legal"
	purpose != ""
	not legal_request
}

# The basis and approver checks apply to purpose legal only: grouped behind it, they cost one rule
# on every other request.
deny contains refusal if {
	legal_request
	some refusal in legal_refusals
}

legal_refusals contains {"rank": 55, "code": "legal_basis_required", "reason": sprintf("%s: a legal disclosure needs its legal basis, the case or order reference (X-Legal-Basis)", [who])} if {
	legal_basis == ""
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: a legal disclosure must name its requester (X-Data-Requester)", [who])} if {
	requester == ""
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: a legal disclosure needs a second person's approval (X-Legal-Approver)", [who])} if {
	approver == ""
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: the approver of a legal disclosure must be a different person from its requester", [who])} if {
	approver != ""
	approver == requester
}
