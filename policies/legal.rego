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

# Who asks and who approves, as the two-person rule compares them: "" when not given or not valid.
#
# Without an identity provider they are names from the headers, compared case-insensitively
# ("Anna@x" approving "anna@x" is one person; the engine has already normalised them with PRECIS
# and refused invisible characters). With one (Pare's legal_jwks setting), the engine gives the
# policy the provider's keys as data.pare.legal, and both headers must carry a token the provider
# signed: a name anyone can type proves nothing. The person is then the token's subject.
requester := lower(requester_given) if {
	not identity_tokens
} else := s if {
	s := token_subject(requester_given)
} else := ""

approver := lower(approver_given) if {
	not identity_tokens
} else := s if {
	s := token_subject(approver_given)
} else := ""

# The headers as given, trimmed; "" when missing or not a string.
requester_given := trim_space(r) if {
	r := input.requester
	is_string(r)
} else := ""

approver_given := trim_space(a) if {
	a := input.approver
	is_string(a)
} else := ""

# The identity provider is configured: data.pare.legal is {"jwks": the keys as a JWKS document,
# "" while Pare has none; "audience"; "issuer"}.
identity_tokens if is_object(data.pare.legal)

identity_keys := k if {
	k := data.pare.legal.jwks
	is_string(k)
	k != ""
}

# The subject of a token the identity provider signed for Pare: the signature verifies against its
# keys, the audience and issuer are Pare's, and it has not expired. A token without an expiry is
# refused: it would approve forever. io.jwt.decode_verify reads the clock, so the engine does not
# cache decisions that call it; only legal requests reach it (see legal_refusals and
# decision_identities), so every other decision stays cacheable.
token_subject(t) := sub if {
	is_string(t)
	t != ""
	[valid, _, claims] := io.jwt.decode_verify(t, {
		"cert": identity_keys,
		"aud": data.pare.legal.audience,
		"iss": data.pare.legal.issuer,
	})
	valid
	is_number(claims.exp)
	sub := claims.sub
	is_string(sub)
	sub != ""
	count(sub) <= 256
}

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
	requester_given == ""
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: a legal disclosure needs a second person's approval (X-Legal-Approver)", [who])} if {
	approver_given == ""
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: %s is not a valid token of the company's identity provider (its signature, expiry, audience and issuer are checked)", [who, h])} if {
	identity_keys
	some h, x in {"X-Data-Requester": requester_given, "X-Legal-Approver": approver_given}
	x != ""
	not token_subject(x)
}

legal_refusals contains {"rank": 56, "code": "approver_required", "reason": sprintf("%s: the approver of a legal disclosure must be a different person from its requester", [who])} if {
	approver != ""
	approver == requester
}

# Tokens are required and Pare has no keys to check them with (the identity provider has not
# answered): a condition of the sidecar, not of the request, so it ranks after what the caller
# must fix and is answered 503.
legal_refusals contains {"rank": 57, "code": "identity_unavailable", "reason": sprintf("%s: the identity provider's keys are not available, so the requester and approver of a legal disclosure cannot be checked", [who])} if {
	identity_tokens
	not identity_keys
}

# With tokens, the decision names the people the tokens verified, for the ledger: the engine never
# records the tokens themselves. Merged into every decision (egress.rego); empty but for legal
# requests.
default decision_identities := {}

decision_identities := {"identities": {"requester": requester, "approver": approver}} if {
	legal_request
	identity_tokens
}
