// Package pipeline owns what happens to one outbound request, whatever front
// end received it: the request is checked and turned into the policy input,
// the engine decides, the payload is minimised and card-guarded, the
// disclosure is recorded in the ledger before anything leaves, and the
// vendor's answer (or the failure) is recorded after. pipeline.go holds the
// stages in the order they run.
//
// Front ends only adapt: the forward proxy, the CONNECT interceptor and the
// transparent TLS listener (package proxy) and the Envoy ext_proc server
// each turn what they received into a Request, drive one Exchange through
// the stages, and render its Refusal or send its Outbound. None of them
// decides, filters or records anything itself, so they cannot drift apart.
//
// The package knows HTTP's data model (methods, header maps, status codes)
// but no server: it never reads from or writes to a connection.
package pipeline
