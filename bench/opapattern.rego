# The "usual way" of row 4: a generic OPA policy that a small proxy queries
# for every request (POST /v1/data/bench/result) with the body in the input,
# and that answers with the body filtered by json.filter to the fields of the
# vendor's contract. The contracts are Pare's own YAML files, loaded by the
# harness under data.contracts, so both rows send the same field lists.
#
# What it leaves out compared with Pare (all of it work Pare does and this
# does not): hmac transforms (the field is sent as is), the card guard,
# header and query filtering, need-to-know rules, consent and the ledger.
package bench

import rego.v1

routes contains r if {
	some c in data.contracts
	input.host in c.hosts
	input.purpose in c.purposes
	some r in c.routes
	input.method in r.methods
	glob.match(r.path, ["/"], input.path)
}

route := r if {
	count(routes) == 1
	some r in routes
}

fields := array.concat(object.get(route, "fields", []), [k | some k, _ in object.get(route, "transforms", {})])

# json.filter has no wildcard for array elements: "attendees/*/email" is
# applied to each element of the array "attendees".
plain_fields := [f | some f in fields; not contains(f, "/*/")]

star_prefixes := {p |
	some f in fields
	parts := split(f, "/*/")
	count(parts) == 2
	p := parts[0]
}

star_fields(p) := [parts[1] |
	some f in fields
	parts := split(f, "/*/")
	parts[0] == p
]

expanded := {p: [json.filter(x, star_fields(p)) | some x in object.get(input.body, p, [])] | some p in star_prefixes}

default result := {"allow": false, "reason": "no contract route matches"}

result := {"allow": true, "body": object.union(json.filter(input.body, plain_fields), expanded)} if route
