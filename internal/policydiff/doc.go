// Package policydiff compares two versions of Pare's policy by what they
// let out: it compiles both (a policies directory, a signed bundle or a git
// revision, each through engine.Load as serve compiles a policy), decides
// every case of the generated input space of their contracts
// (package inputspace, over the union of both contract sets) under each,
// and reports the differences: fields, transforms, query parameters,
// headers and data categories that start or stop leaving, refusals that
// appear or disappear, card guard, body mode, TLS, port and dry-run
// changes — grouped per vendor, route, method, purpose and the conditions
// (source service, consent state, Global Privacy Control, legal headers)
// under which they happen, with a count and an example case for each
// group. Nothing is dropped: a group stands for every case that differs
// the same way, and the counts add up to the cases that differ.
//
// What the input space cannot show is not taken on trust: a NEW policy that
// decides on input OLD does not read (a header, a query parameter), on the
// body or on the clock is reported as unverified and counted as widening.
//
// It is `proxy diff OLD NEW`: Markdown for a pull request comment, JSON for
// tools, and Report.Widens for the exit code that makes CI ask a privacy
// reviewer.
package policydiff
