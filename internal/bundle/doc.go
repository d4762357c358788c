// Package bundle carries Pare's policy as a signed OPA bundle: it builds one
// from a policies directory, reads and verifies one, and keeps an engine's
// policy in step with a bundle server (Source).
//
// The transport, the tarball format, the signatures (.signatures.json, a JWT
// over every file's hash), ETag and long polling, backoff and the parsing of
// Rego are OPA's own (v1/download, v1/bundle, v1/plugins/rest). What this
// package adds is what a fleet of sidecars needs around them:
//
//   - A Pare bundle holds the policies directory verbatim: the Rego modules and
//     the contracts as their YAML files under contracts/, so that a contract
//     error still names contracts/<vendor>.yaml:line. (`opa build` merges data
//     into one data.json and would lose both the files and the lines.) OPA's
//     reader verifies every file of the tarball against the signature; the
//     engine then loads exactly those verified bytes through the same
//     compile/validate path as a local directory (engine.Load).
//   - The bundle's manifest revision is the engine's content revision (the
//     SHA-256 over the loaded files), checked on activation, so the revision in
//     a ledger record, in /debug/policy and in pare_policy_info is the same
//     string whether the policy came from a directory or a bundle.
//   - Every bundle must be signed by a configured key: an unsigned or wrongly
//     signed bundle, one over the size limit, or one that does not compile is
//     refused, logged with the file and the reason, counted, and the policy in
//     force stays.
//   - A bundle built before the one in force is refused (built_at, signed in
//     the manifest), so a bundle server cannot roll a fleet back to an older
//     policy.
//   - The last activated bundle is persisted (atomically, fsync'd) and verified
//     again when read back, so a restart while the bundle server is down comes
//     up on the last good policy.
package bundle
