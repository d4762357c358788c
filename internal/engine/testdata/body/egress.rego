package egress

decision := {"allow": true, "vendor": "v", "fields": ["a"]} if input.body.a == 1

decision := {"allow": false, "reason": "a is not 1"} if input.body.a != 1
