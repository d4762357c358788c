package engine

import (
	"errors"
	"fmt"
)

// Code is a stable, bounded refusal code: it is the "error" field of a
// refusal, the outcome of a ledger record and a metric label, so the set is
// closed — anything a policy invents outside it is reported as CodeDenied.
type Code string

const (
	CodeUnknownVendor      Code = "unknown_vendor"
	CodeDenied             Code = "denied"
	CodePurposeRequired    Code = "purpose_required"
	CodePurposeNotAllowed  Code = "purpose_not_allowed"
	CodeConsentRequired    Code = "consent_required"
	CodeConsentUnavailable Code = "consent_unavailable"
	CodeGPCOptOut          Code = "gpc_opt_out"
	CodeSourceNotAllowed   Code = "source_not_allowed"
	CodeLegalBasisRequired Code = "legal_basis_required"
	CodeApproverRequired   Code = "approver_required"
	// CodeIdentityUnavailable: legal requests need the identity provider's
	// tokens checked and Pare has no keys to check them with.
	CodeIdentityUnavailable Code = "identity_unavailable"
	CodeRouteNotAllowed     Code = "route_not_allowed"
	CodeTLSRequired         Code = "tls_required"
	CodeCardNumber          Code = "card_number"

	CodeMalformedBody    Code = "malformed_body"
	CodeUnsupportedMedia Code = "unsupported_media_type"
	CodeBodyTooLarge     Code = "body_too_large"
	CodeNoPolicy         Code = "no_policy"
	CodeEvalError        Code = "policy_error"
	CodeEvalTimeout      Code = "policy_timeout"
	CodeLedgerError      Code = "ledger_unavailable"
	CodeUpstreamError    Code = "vendor_unreachable"
	CodeUpstreamTimeout  Code = "vendor_timeout"
	CodeBadRequest       Code = "bad_request"
	CodeMalformedPath    Code = "malformed_path"
	CodeBodyTimeout      Code = "body_timeout"
	CodeOverloaded       Code = "overloaded"
)

var policyCodes = map[Code]bool{
	CodeUnknownVendor: true, CodeDenied: true, CodePurposeRequired: true,
	CodePurposeNotAllowed: true, CodeConsentRequired: true, CodeConsentUnavailable: true,
	CodeGPCOptOut: true, CodeSourceNotAllowed: true, CodeLegalBasisRequired: true,
	CodeApproverRequired: true, CodeRouteNotAllowed: true, CodeTLSRequired: true,
	CodeIdentityUnavailable: true,
}

// Status is the HTTP status a front end answers with for the code. Ext_proc
// answers with the same number in its immediate response. Plain numbers keep
// net/http out of the engine.
func (c Code) Status() int {
	switch c {
	case CodeMalformedBody, CodeBadRequest, CodeMalformedPath:
		return 400
	case CodeBodyTimeout:
		return 408
	case CodeUnsupportedMedia:
		return 415
	case CodeBodyTooLarge:
		return 413
	case CodeNoPolicy, CodeEvalError, CodeEvalTimeout, CodeLedgerError, CodeConsentUnavailable, CodeOverloaded,
		CodeIdentityUnavailable:
		return 503
	case CodeUpstreamError:
		return 502
	case CodeUpstreamTimeout:
		return 504
	default:
		return 403
	}
}

// Error is a refusal: nothing was sent. Reason is safe to show the caller and
// to log: it never contains a payload value.
type Error struct {
	Code   Code
	Reason string
	Err    error // the cause, for logs; may be nil
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the refusal code of err, CodeEvalError for an unknown error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeEvalError
}
