// Package ledger owns Pare's disclosure ledger: the durable, tamper-evident
// record of every request the proxy let out to a vendor, of the vendor's
// answer and of every request it refused.
//
// # Format
//
// The ledger is a file of JSON lines, one [Record] per line. Each record
// carries the hex SHA-256 of the previous record's line (the bytes of that
// line without its trailing newline) in its prev field; the first record of a
// ledger has an empty prev. Changing, dropping, reordering or inserting a line
// therefore breaks the chain, which [Verify] detects and locates.
//
// # Guarantees
//
//   - Durable before ack: [Ledger.Append] returns nil only after the record's
//     line has been written and fsync'd. The proxy writes a "disclosure"
//     record with [Ledger.Write] before it forwards anything to a vendor — the
//     line is in the file, so a process crash (kill -9) after the send loses
//     nothing — and answers the app only once that line is fsync'd. What a
//     machine crash can lose is the record of a request sent in the
//     millisecond before its fsync, whose answer the app never got. When a
//     write or fsync fails, recovery cuts the file back to its last durable
//     line, and the records it cut — written, so perhaps already sent — are
//     written again after it (up to three times) before they are failed. A
//     record can also be on disk for a request the proxy then did not send
//     (a cancelled context, a crash before the send, a Close in the failed
//     state): the ledger over-reports; it must not under-report.
//   - Group commit: one writer goroutine writes whatever appenders queued with
//     one write; a syncer goroutine fsyncs meanwhile, each fsync covering every
//     write made before it started, so under load one fsync serves many
//     records and a record is written without waiting for another's fsync
//     (except across a rotation or a failure, which wait for the disk).
//   - Fail closed: when a write or an fsync fails, Append returns an error (the
//     proxy answers 503 and sends nothing) and the ledger stays failed until a
//     retry can re-establish a known state on disk. See [Ledger.Append].
//   - The chain survives restarts (Open reads the tail of the file, and
//     removes a torn last line left by a crash) and rotation by size (the first
//     record of a new file points at the last record of the rotated one).
//   - One writer per ledger: Open takes an exclusive lock on "<path>.lock" so
//     two processes cannot fork the chain.
//
// # What a record never holds
//
// A record names fields (paths such as "customer/email"), never their values:
// no payload value, no credential, no query string. The caller guarantees it
// for the fields it passes; Append additionally cuts anything from a '?' out of
// Path, because a query string can carry personal data. Records do hold the
// data subject's identifier, so ledger files are created with mode 0600.
//
// # Reading
//
// [Verify] checks the chain across rotated files with bounded memory, [Query]
// selects what was disclosed about a person, and [BuildReport] turns that into
// the report a privacy officer hands to the person (GDPR Art. 15(1)(c), HIPAA
// 45 CFR 164.528), rendered by [WriteHTML], [WriteCSV] and [WriteJSON].
package ledger
