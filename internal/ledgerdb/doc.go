// Package ledgerdb owns the fleet's disclosure ledger in PostgreSQL: the
// schema and its versioned migrations, the [Shipper] that copies one
// sidecar's local ledger and its signed checkpoints into it, the central
// [Verify] that holds every instance's records to their chain and
// checkpoints, and the fleet-wide [Query] that reports are built from.
//
// # The local ledger stays the write-ahead log
//
// Nothing leaves a sidecar without a durable local record (internal/ledger);
// shipping is asynchronous and never in the request path. The Shipper reads
// the ledger's files and its checkpoint log — it does not sit in the writer
// — and ships only records the writer has made durable, in order, in
// transactions keyed by (origin, seq): each one checks, under a row lock,
// that the database's head for the instance is the record just before the
// batch, inserts the batch and the checkpoints it completes, and moves the
// head. A crash or an outage at any point is resumed from the head the
// database reports; a batch whose commit may or may not have happened is
// recognised by the head it left.
//
// # What the database holds
//
// One row per record: the line exactly as the ledger wrote it (bytea, so
// every hash can be recomputed) and the columns people ask by (subject,
// vendor, time, kind, decision id, purpose, service), partitioned by month
// of the record's time; one row per checkpoint log entry (the signed note
// and the tree's frontier); one row per instance with the head shipped.
//
// # Why verify centrally
//
// Whoever can write the database can change rows. [Verify] recomputes,
// per instance, the chain (gaps, forks, changed lines), the columns against
// the line they index (a changed subject would hide a record from the
// person's report), the Merkle root of every shipped signed checkpoint, and
// the head the shipper recorded. What it cannot see is the same as for a
// local ledger: someone holding an instance's signing key can re-sign a
// consistent history, and records after the newest shipped checkpoint can
// be cut without a trace.
package ledgerdb
