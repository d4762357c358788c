# Tests of the bundled contracts (contracts/*.yaml): for each vendor what is allowed, exactly, what
# is stripped, and what is refused. Helpers (req, to, granted, refused, ...) are in egress_test.rego.
package egress_test

import data.egress

# ---------------------------------------------------------------------------------------------
# Stripe (PSP-2024-03): payments; card data only here and only from billing.

stripe_headers := ["accept", "authorization", "content-type", "idempotency-key", "stripe-version"]

test_stripe_payment_intent_from_billing if {
	d := egress.decision with input as req({})
	d.allow
	d.vendor == "stripe"
	d.code == ""
	d.reason == "Stripe for purpose payment under contract PSP-2024-03, route POST /v1/payment_intents"
	d.fields == [
		"amount",
		"confirm",
		"currency",
		"description",
		"metadata/order_id",
		"payment_method",
		"payment_method_data/billing_details/address/country",
		"payment_method_data/billing_details/address/postal_code",
		"payment_method_data/card/cvc",
		"payment_method_data/card/exp_month",
		"payment_method_data/card/exp_year",
		"payment_method_data/card/number",
		"payment_method_data/type",
	]
	d.transforms == {"metadata/crm_id": "hmac"}
	d.headers == stripe_headers
	d.query == []
	d.body == "filter"
	d.cards == "allow"
	d.tls == true
	d.port == 443
	d.dry_run == false
}

# The checkout payload (shared/payloads/checkout.form) carries the customer's phone, date of
# birth, street address, device, session and internal metadata: none of it is in the mask.
test_stripe_payment_intent_strips_the_rest_of_checkout if {
	d := egress.decision with input as req({})
	every p in ["receipt_email", "customer", "customer/phone", "customer/date_of_birth", "device", "session", "metadata", "metadata/risk_score", "billing_address", "card"] {
		not p in d.fields
	}
}

test_stripe_customer_gets_the_minimum if {
	d := egress.decision with input as to("api.stripe.com", "POST", "/v1/customers", "payment")
	d.allow
	d.fields == ["address/country", "address/postal_code", "email", "name"]
	d.transforms == {}
	d.headers == stripe_headers
	d.cards == "allow"
}

# Creating a customer carries no card fields, so any service may do it -- but not with a card
# number in it: only billing may send Stripe card data, in any field (issue 9).
test_stripe_customer_from_another_service if {
	inp := object.union(to("api.stripe.com", "POST", "/v1/customers", "payment"), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp
	d.allow
	d.cards == "block"
	d.cards_code == "source_not_allowed"
}

test_stripe_get_customer_sends_no_body if {
	d := egress.decision with input as to("api.stripe.com", "GET", "/v1/customers/cus_9f3b2c", "payment")
	d.allow
	d.body == "none"
	d.fields == []
	d.query == ["expand"]
}

test_stripe_card_data_from_another_service_is_refused if {
	inp := object.union(req({}), {"source": {"service": "webapp"}})
	d := egress.decision with input as inp
	refused(d, "source_not_allowed")
	d.vendor == "stripe"
	d.reason == "Stripe (contract PSP-2024-03): need-to-know allows fields of this route only from billing, not from service \"webapp\""
}

test_stripe_unknown_route_is_refused if {
	d := egress.decision with input as to("api.stripe.com", "POST", "/v1/charges", "payment")
	refused(d, "route_not_allowed")
}

test_stripe_delete_customer_is_refused if {
	d := egress.decision with input as to("api.stripe.com", "DELETE", "/v1/customers/cus_9f3b2c", "payment")
	refused(d, "route_not_allowed")
}

test_stripe_wrong_purpose_is_refused if {
	d := egress.decision with input as req({"purpose": "support"})
	refused(d, "consent_required")
	contains(d.reason, "purpose support is outside the contract's purposes (payment)")
}

test_stripe_marketing_without_consent_is_refused if {
	d := egress.decision with input as req({"purpose": "marketing"})
	refused(d, "consent_required")
}

# The app's plain-HTTP request to its sidecar reaches Stripe over TLS.
test_stripe_is_reached_over_tls if {
	d := egress.decision with input as req({"request": {"scheme": "http", "port": 80}})
	d.allow
	d.tls == true
	d.port == 443
}

# Were the contract ever edited to allow plain HTTP, nothing would go to the payment processor.
test_stripe_plaintext_is_refused if {
	c := object.union(data.contracts.stripe, {"plaintext": true})
	d := egress.decision with input as req({"request": {"scheme": "http", "port": 80}}) with data.contracts.stripe as c
	refused(d, "tls_required")
}

# Card numbers and every other personal datum travel over TLS: no bundled contract opts out.
test_every_bundled_contract_requires_tls if {
	every c in data.contracts {
		not c.plaintext
		not c.port
	}
}

test_stripe_purpose_missing_is_refused if {
	d := egress.decision with input as req({"purpose": ""})
	refused(d, "purpose_required")
}

# ---------------------------------------------------------------------------------------------
# Object storage (HOST-2023-11): opaque uploads of recordings and site assets only.

storage_host := "webinar-co-media.storage.example-cloud.com"

storage_headers := ["authorization", "content-md5", "content-type", "x-amz-content-sha256", "x-amz-date"]

test_hosting_recording_upload_is_opaque if {
	d := egress.decision with input as to(storage_host, "PUT", "/recordings/wb_101/2026-11-20.mp4", "hosting")
	d.allow
	d.vendor == "hosting"
	d.body == "opaque"
	d.fields == []
	d.transforms == {}
	d.headers == storage_headers
	d.query == ["partNumber", "uploadId", "uploads"]
	d.cards == "block"
}

test_hosting_asset_upload_may_set_cache_control if {
	d := egress.decision with input as to(storage_host, "PUT", "/assets/css/site.css", "hosting")
	d.allow
	d.body == "opaque"
	d.headers == array.concat(["authorization", "cache-control"], array.slice(storage_headers, 1, 5))
	d.query == []
}

test_hosting_delete_recording_sends_nothing if {
	d := egress.decision with input as to(storage_host, "DELETE", "/recordings/wb_101/2026-11-20.mp4", "hosting")
	d.allow
	d.body == "none"
}

test_hosting_other_prefixes_are_refused if {
	every p in ["/exports/users.csv", "/backups/db.sql", "/recordings", "/assetsx/a.png"] {
		d := egress.decision with input as to(storage_host, "PUT", p, "hosting")
		refused(d, "route_not_allowed")
	}
}

test_hosting_path_traversal_is_refused if {
	d := egress.decision with input as to(storage_host, "PUT", "/recordings/../exports/users.csv", "hosting")
	refused(d, "route_not_allowed")
}

test_hosting_other_buckets_are_unknown if {
	d := egress.decision with input as to("someone-else.storage.example-cloud.com", "PUT", "/recordings/x.mp4", "hosting")
	refused(d, "unknown_vendor")
}

test_hosting_wrong_purpose_is_refused if {
	d := egress.decision with input as to(storage_host, "PUT", "/recordings/x.mp4", "marketing")
	refused(d, "consent_required")
}

# ---------------------------------------------------------------------------------------------
# Eventbrite (EVT-2025-02): registration; the email and the name, nothing else.

eventbrite_host := "www.eventbriteapi.com"

test_eventbrite_registration_gets_email_and_name if {
	d := egress.decision with input as to(eventbrite_host, "POST", "/v3/events/123456/attendees/", "event_registration")
	d.allow
	d.vendor == "eventbrite"
	d.fields == ["email", "first_name", "last_name"]
	d.transforms == {}
	d.headers == ["accept", "authorization", "content-type"]
	d.body == "filter"
	d.cards == "block"
}

# attendee.json's company, job title, phone, country, answers, consents, IP and UTM source stay.
test_eventbrite_registration_strips_the_rest_of_the_attendee if {
	d := egress.decision with input as to(eventbrite_host, "POST", "/v3/events/123456/attendees/", "event_registration")
	every p in ["company", "job_title", "phone", "country", "registered_at", "answers", "consents", "ip", "utm_source"] {
		not p in d.fields
	}
}

test_eventbrite_batch_registration if {
	d := egress.decision with input as to(eventbrite_host, "POST", "/v3/events/123456/attendees/batch/", "event_registration")
	d.allow
	d.fields == ["attendees/*/email", "attendees/*/first_name", "attendees/*/last_name"]
}

test_eventbrite_attendee_list if {
	d := egress.decision with input as to(eventbrite_host, "GET", "/v3/events/123456/attendees/", "event_registration")
	d.allow
	d.body == "none"
	d.query == ["continuation", "status"]
}

test_eventbrite_unknown_route_is_refused if {
	d := egress.decision with input as to(eventbrite_host, "POST", "/v3/users/me/organizations/", "event_registration")
	refused(d, "route_not_allowed")
}

test_eventbrite_marketing_without_consent_is_refused if {
	d := egress.decision with input as to(eventbrite_host, "POST", "/v3/events/1/attendees/", "marketing")
	refused(d, "consent_required")
}

test_eventbrite_marketing_with_consent_is_allowed if {
	inp := with_consents(to(eventbrite_host, "POST", "/v3/events/1/attendees/", "marketing"), [granted("marketing")])
	d := egress.decision with input as inp
	d.allow
	endswith(d.reason, "with the subject's consent for marketing")
}

test_eventbrite_marketing_with_gpc_is_refused if {
	inp := object.union(to(eventbrite_host, "POST", "/v3/events/1/attendees/", "marketing"), {"subject": {"gpc": true, "consents": [granted("marketing")]}})
	d := egress.decision with input as inp
	refused(d, "gpc_opt_out")
}

# ---------------------------------------------------------------------------------------------
# Zendesk (SUP-2024-07): support tickets; requester name and email, no billing or device data,
# card numbers in free text redacted.

zendesk_host := "webinarco.zendesk.com"

zendesk_ticket_fields := [
	"ticket/comment/body",
	"ticket/comment/public",
	"ticket/priority",
	"ticket/requester/email",
	"ticket/requester/name",
	"ticket/subject",
	"ticket/tags",
	"ticket/via/channel",
]

test_zendesk_new_ticket if {
	inp := object.union(to(zendesk_host, "POST", "/api/v2/tickets", "support"), {"source": {"service": "support"}})
	d := egress.decision with input as inp
	d.allow
	d.vendor == "zendesk"
	d.fields == zendesk_ticket_fields
	d.transforms == {}
	d.headers == ["accept", "authorization", "content-type"]
	d.body == "filter"
	d.cards == "redact"
}

test_zendesk_new_ticket_json_suffix if {
	d := egress.decision with input as to(zendesk_host, "POST", "/api/v2/tickets.json", "support")
	d.allow
	d.fields == zendesk_ticket_fields
}

# ticket.json: custom_fields (plan, VAT id), metadata (LTV, account manager, IP), the requester's
# phone and locale are not in the mask.
test_zendesk_strips_billing_and_device_data if {
	d := egress.decision with input as to(zendesk_host, "POST", "/api/v2/tickets", "support")
	every p in ["ticket", "ticket/custom_fields", "ticket/metadata", "ticket/metadata/ip", "ticket/requester", "ticket/requester/phone", "ticket/requester/locale_id"] {
		not p in d.fields
	}
}

test_zendesk_update_ticket_needs_no_requester if {
	d := egress.decision with input as to(zendesk_host, "PUT", "/api/v2/tickets/4711", "support")
	d.allow
	d.fields == ["ticket/comment/body", "ticket/comment/public", "ticket/priority", "ticket/status"]
}

test_zendesk_unknown_route_is_refused if {
	d := egress.decision with input as to(zendesk_host, "POST", "/api/v2/users", "support")
	refused(d, "route_not_allowed")
}

test_zendesk_wrong_purpose_is_refused if {
	d := egress.decision with input as to(zendesk_host, "POST", "/api/v2/tickets", "payment")
	refused(d, "consent_required")
}

# ---------------------------------------------------------------------------------------------
# Mailchimp (MKT-2025-01): a marketing recipient; nothing without marketing consent, nothing
# under GPC, but withdrawals always go through.

mailchimp_host := "us21.api.mailchimp.com"

subscribe := to(mailchimp_host, "POST", "/3.0/lists/a1b2c3/members", "marketing")

test_mailchimp_subscribe_with_consent if {
	d := egress.decision with input as with_consents(subscribe, [granted("marketing")])
	d.allow
	d.vendor == "mailchimp"
	d.fields == ["email_address", "merge_fields/FNAME", "merge_fields/LNAME", "status"]
	d.transforms == {}
	d.headers == ["accept", "authorization", "content-type"]
	d.cards == "block"
	d.reason == "Mailchimp for purpose marketing under contract MKT-2025-01, route POST /3.0/lists/*/members, with the subject's consent for marketing"
}

test_mailchimp_upsert_with_consent if {
	d := egress.decision with input as with_consents(to(mailchimp_host, "PUT", "/3.0/lists/a1b2c3/members/9e107d9d372bb6826bd81d3542a419d6", "marketing"), [granted("marketing")])
	d.allow
	d.fields == ["email_address", "merge_fields/FNAME", "merge_fields/LNAME", "status", "status_if_new"]
}

test_mailchimp_strips_everything_but_email_and_name if {
	d := egress.decision with input as with_consents(subscribe, [granted("marketing")])
	every p in ["merge_fields", "merge_fields/PHONE", "merge_fields/ADDRESS", "merge_fields/BIRTHDAY", "tags", "interests", "ip_signup", "location"] {
		not p in d.fields
	}
}

test_mailchimp_without_consent_is_refused if {
	d := egress.decision with input as subscribe
	refused(d, "consent_required")
	d.reason == "Mailchimp (contract MKT-2025-01): sharing for marketing needs the subject's granted consent for marketing"
}

test_mailchimp_withdrawn_consent_is_refused if {
	d := egress.decision with input as with_consents(subscribe, [withdrawn("marketing")])
	refused(d, "consent_required")
	d.reason == "Mailchimp (contract MKT-2025-01): the subject has withdrawn consent for marketing"
}

test_mailchimp_gpc_is_refused_even_with_consent if {
	inp := object.union(subscribe, {"subject": {"gpc": true, "consents": [granted("marketing")]}})
	d := egress.decision with input as inp
	refused(d, "gpc_opt_out")
}

test_mailchimp_consent_unavailable_is_refused if {
	inp := object.union(subscribe, {"subject": {"consents": [], "consents_error": "GET consent service: 503"}})
	d := egress.decision with input as inp
	refused(d, "consent_unavailable")
}

# The vendor is a marketing recipient: a non-marketing purpose still needs marketing consent.
test_mailchimp_is_marketing_whatever_the_purpose if {
	inp := with_consents(to(mailchimp_host, "POST", "/3.0/lists/a1b2c3/members", "support"), [granted("support")])
	d := egress.decision with input as inp
	refused(d, "consent_required")
	contains(d.reason, "consent for marketing")
}

test_mailchimp_unsubscribe_goes_through_without_consent_and_under_gpc if {
	inp := object.union(to(mailchimp_host, "PATCH", "/3.0/lists/a1b2c3/members/9e107d9d372bb6826bd81d3542a419d6", "opt_out"), {"subject": {"gpc": true, "consents": [withdrawn("marketing")]}})
	d := egress.decision with input as inp
	d.allow
	d.fields == ["status"]
}

test_mailchimp_permanent_delete_goes_through if {
	d := egress.decision with input as to(mailchimp_host, "POST", "/3.0/lists/a1b2c3/members/9e107d9d372bb6826bd81d3542a419d6/actions/delete-permanent", "opt_out")
	d.allow
	d.body == "none"
}

test_mailchimp_opt_out_route_cannot_carry_marketing if {
	inp := with_consents(to(mailchimp_host, "PATCH", "/3.0/lists/a1b2c3/members/x", "marketing"), [granted("marketing")])
	d := egress.decision with input as inp
	refused(d, "purpose_not_allowed")
}

test_mailchimp_subscribe_cannot_pose_as_opt_out if {
	d := egress.decision with input as to(mailchimp_host, "POST", "/3.0/lists/a1b2c3/members", "opt_out")
	refused(d, "purpose_not_allowed")
}

test_mailchimp_other_data_centres_are_unknown if {
	d := egress.decision with input as to("us1.api.mailchimp.com", "POST", "/3.0/lists/a1b2c3/members", "marketing")
	refused(d, "unknown_vendor")
}

test_mailchimp_unknown_route_is_refused if {
	d := egress.decision with input as with_consents(to(mailchimp_host, "POST", "/3.0/campaigns", "marketing"), [granted("marketing")])
	refused(d, "route_not_allowed")
}

# ---------------------------------------------------------------------------------------------
# Sister company (IGA-2024-01): exactly processing and storage.

sister_host := "ingest.webinar-group.example"

sister_events := object.union(to(sister_host, "POST", "/v1/events", "processing"), {"source": {"service": "analytics"}})

test_sister_processing_from_analytics if {
	d := egress.decision with input as sister_events
	d.allow
	d.vendor == "sister"
	d.fields == ["events/*/country", "events/*/occurred_at", "events/*/type", "events/*/webinar_id"]
	d.transforms == {"events/*/attendee_ref": "hmac"}
	d.headers == ["accept", "authorization", "content-type"]
	d.cards == "block"
}

test_sister_processing_from_another_service_strips_the_attendee if {
	d := egress.decision with input as object.union(sister_events, {"source": {"service": "webapp"}})
	d.allow
	d.fields == ["events/*/country", "events/*/occurred_at", "events/*/type", "events/*/webinar_id"]
	d.transforms == {}
	endswith(d.reason, "need-to-know: 1 field(s) stripped because service \"webapp\" may not send them")
}

test_sister_storage_is_opaque_archive_only if {
	d := egress.decision with input as to(sister_host, "PUT", "/v1/archive/recordings/wb_101.mp4", "storage")
	d.allow
	d.body == "opaque"
	d2 := egress.decision with input as to(sister_host, "PUT", "/v1/archive/users.csv", "storage")
	refused(d2, "route_not_allowed")
}

test_sister_route_purposes_are_kept_apart if {
	d := egress.decision with input as object.union(sister_events, {"purpose": "storage"})
	refused(d, "purpose_not_allowed")
	d2 := egress.decision with input as to(sister_host, "PUT", "/v1/archive/recordings/wb_101.mp4", "processing")
	refused(d2, "purpose_not_allowed")
}

test_sister_other_purposes_are_refused_even_with_consent if {
	every p in ["marketing", "analytics", "support"] {
		d := egress.decision with input as with_consents(object.union(sister_events, {"purpose": p}), [granted(p)])
		refused(d, "purpose_not_allowed")
		contains(d.reason, "allows only the purposes processing, storage")
	}
}

test_sister_is_reached_over_tls if {
	d := egress.decision with input as object.union(sister_events, {"request": {"scheme": "http", "port": 80}})
	d.allow
	d.tls == true
}
