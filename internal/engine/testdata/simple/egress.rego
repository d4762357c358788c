package egress

# A minimal policy for the engine's tests: one vendor, decisions from data.
default decision := {"allow": false, "code": "unknown_vendor", "reason": "no contract covers this host"}

special := {"broken", "types"}

decision := data.vendors[input.request.host] if not special[input.purpose]

decision := {"allow": true, "vendor": "x", "fieldz": []} if input.purpose == "broken"

decision := {"allow": "yes", "vendor": 3, "fields": "a"} if input.purpose == "types"
