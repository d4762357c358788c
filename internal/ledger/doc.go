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
// # Checkpoints: the ledger as evidence
//
// The chain cannot show records cut off its end, an oldest file deleted, or
// a record rewritten with every later prev recomputed: nothing outside the
// files commits to them. With [Options.Signer] the writer also keeps the
// records' Merkle tree (RFC 6962/9162 as golang.org/x/mod/sumdb/tlog builds
// it: leaf = tlog.RecordHash of the record's line) and signs [Checkpoint]s
// — C2SP tlog-checkpoints in the signed-note format (Ed25519), origin
// OriginPrefix plus an instance id generated with the ledger's first
// checkpoint — every CheckpointEvery records or CheckpointInterval, at each
// rotation and at Close, covering durable records only. Each goes to the
// checkpoint log beside the ledger (CheckpointLogName, JSON lines, see
// [LogEntry]) and replaces the witness file (Options.WitnessPath); the
// latest is [Ledger.Checkpoint]. [Audit] recomputes every checkpoint's root
// from the records; [Prove] and [CheckProof] give and check the inclusion
// proof of one record.
//
// Where the tree lives: in memory only its frontier (the roots of its
// complete subtrees, at most 64 hashes); every log entry stores the
// frontier at its size and where its last record ends, so Open reads only
// the records after the last checkpoint, whatever the ledger's size, and
// rebuilds from the first record only when the log is missing or does not
// match. Proofs recompute the hashes they need from the records (a pass
// over the files, as Verify makes). Because every rotation writes an entry,
// the files that remain after older ones are deleted (retention, once
// shipped) can still be held to the checkpoints and proved from the entry
// at their first record: Audit then reports missing_start with "the
// records that remain match". Open refuses a ledger whose last checkpoint
// covers more records than its files hold: writing on would sign a second
// history under seq numbers already signed.
//
// # When the file goes away
//
// The writer checks, after every fsync, every watchEvery (200 ms) and
// after each rotation's rename, that its path still names the file it has
// open. When it does not (deleted, renamed, replaced), no record of that
// fsync is acknowledged and the ledger fails (Append refused, Err set),
// then relocates: it copies the acknowledged bytes from the open descriptor
// to the rotated name (path.<seq>), moves whatever now sits at the path
// aside (path.replaced-<ns>), takes the lock again if its file went too,
// and continues the chain and the tree in a new file, writing again the
// records it had not acknowledged. Until that works (the directory is
// gone, say) it stays failed and retries.
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
