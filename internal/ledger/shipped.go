package ledger

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Retention: once the fleet's database holds a prefix of the ledger, the
// rotated files that held it may be deleted, and the files that remain no
// longer begin at seq 1. Audit reports that as missing_start — the oldest
// files were deleted — unless a Shipped marker, signed with the ledger's
// key, says that exactly those records went to the database and were
// confirmed there. An attacker who can write the ledger's volume but does
// not hold the key cannot make one, nor stretch one over more files than
// were shipped: the remaining files must begin right after it, chained to
// its hash, under the checkpoint of its size.

// shippedHeader starts the text of every marker: it cannot be read as a
// checkpoint (whose second line is a number), nor a checkpoint as a marker.
const shippedHeader = "pare-ledger shipped"

// ShippedName is the file beside the ledger at path that holds the latest
// Shipped marker.
func ShippedName(path string) string { return path + ".shipped" }

// Shipped says that records 1..Seq of the ledger Origin were copied to
// Sink and confirmed there together with the checkpoint of Seq records,
// so that the local files holding them could be deleted. It is a signed
// note (the ledger's key, as checkpoints); its text is
//
//	pare-ledger shipped
//	<origin>
//	<seq>
//	<last: hex SHA-256 of record seq's line>
//	<root: base64 root of the tree of seq records>
//	<time of record seq, RFC 3339>
//	<sink: where the records are, no credentials>
type Shipped struct {
	Origin string    `json:"origin"`
	Seq    uint64    `json:"seq"`
	Last   string    `json:"last"` // the prev of record Seq+1
	Root   tlog.Hash `json:"root"`
	Time   time.Time `json:"time"`
	Sink   string    `json:"sink"`
	// Note is the signed marker as written.
	Note []byte `json:"-"`
}

func (m *Shipped) text() (string, error) {
	for _, s := range []string{m.Origin, m.Sink} {
		if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
			return "", fmt.Errorf("shipped marker: origin and sink must be non-empty, without spaces or control characters: %q", s)
		}
	}
	if m.Seq == 0 {
		return "", errors.New("shipped marker: seq 0 ships nothing")
	}
	if b, err := hex.DecodeString(m.Last); err != nil || len(b) != 32 {
		return "", fmt.Errorf("shipped marker: last %q is not a SHA-256 in hex", m.Last)
	}
	return shippedHeader + "\n" + m.Origin + "\n" + strconv.FormatUint(m.Seq, 10) + "\n" + m.Last + "\n" +
		base64.StdEncoding.EncodeToString(m.Root[:]) + "\n" + m.Time.UTC().Format(time.RFC3339Nano) + "\n" + m.Sink + "\n", nil
}

// SignShipped signs the marker m with s (the ledger's key).
func SignShipped(s note.Signer, m Shipped) ([]byte, error) {
	text, err := m.text()
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: text}, s)
}

// OpenShipped parses a signed marker. With verifiers, one of them must
// have signed it; without, the signature is not checked (say so to the
// user, as for checkpoints).
func OpenShipped(msg []byte, verifiers ...note.Verifier) (*Shipped, error) {
	var text string
	if len(verifiers) == 0 {
		_, err := note.Open(msg, nil)
		var unv *note.UnverifiedNoteError
		if !errors.As(err, &unv) {
			return nil, fmt.Errorf("shipped marker: %w", err)
		}
		text = unv.Note.Text
	} else {
		n, err := note.Open(msg, note.VerifierList(verifiers...))
		if err != nil {
			var unv *note.UnverifiedNoteError
			if errors.As(err, &unv) {
				return nil, errors.New("shipped marker: not signed by the given key(s)")
			}
			return nil, fmt.Errorf("shipped marker: %w", err)
		}
		text = n.Text
	}
	m, err := parseShippedText(text)
	if err != nil {
		return nil, err
	}
	m.Note = append([]byte(nil), msg...)
	return m, nil
}

// parseShippedText reads a marker's text strictly: exactly the lines
// SignShipped writes, in their canonical form.
func parseShippedText(text string) (*Shipped, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 8 || lines[7] != "" || lines[0] != shippedHeader {
		return nil, errors.New("shipped marker: not a marker (want the header and six lines)")
	}
	var m Shipped
	m.Origin = lines[1]
	seq, err := strconv.ParseUint(lines[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("shipped marker: seq %q", lines[2])
	}
	m.Seq = seq
	m.Last = lines[3]
	if m.Root, err = tlog.ParseHash(lines[4]); err != nil {
		return nil, fmt.Errorf("shipped marker: root %q: %w", lines[4], err)
	}
	if m.Time, err = time.Parse(time.RFC3339Nano, lines[5]); err != nil {
		return nil, fmt.Errorf("shipped marker: time %q: %w", lines[5], err)
	}
	m.Sink = lines[6]
	canon, err := m.text()
	if err != nil {
		return nil, err
	}
	if canon != text {
		return nil, errors.New("shipped marker: not in canonical form")
	}
	return &m, nil
}

// WriteShipped replaces the marker beside the ledger at path, durably
// (a temporary file renamed over it, the directory fsync'd): a crash
// leaves the old marker or the new one, never a torn one.
func WriteShipped(path string, msg []byte) error {
	if err := writeFileAtomic(ShippedName(path), msg, true); err != nil {
		return fmt.Errorf("shipped marker %s: %w", ShippedName(path), err)
	}
	return nil
}
