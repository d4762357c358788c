// Package consent provides the consent sources of Pare: where the proxy finds out which purposes
// a data subject has agreed to.
//
// The privacy policy says that marketing and other off-contract purposes need the user's consent
// by an explicit action. The policy (Rego) decides; this package only answers "what is the
// current consent state of subject X", which the proxy puts in input.subject.consents. When a
// source fails the proxy sets input.subject.consents_error instead, and the policy refuses the
// consent-gated requests only (fail closed), with code consent_unavailable.
//
// These sources implement [Source]:
//
//   - [File]: a YAML or JSON file, strictly validated, hot-reloaded with fsnotify; an invalid edit
//     keeps the last good state.
//   - [HTTP]: a consent service, GET {base}/{subject}, with a short TTL cache (a withdrawal takes
//     effect within the TTL), a bounded LRU, coalesced concurrent lookups and a per-lookup timeout.
//   - [Postgres]: the table pare_consents in PostgreSQL ([PostgresSchema]), with a cache kept current
//     by LISTEN/NOTIFY (a committed withdrawal takes effect at once) and nothing cached while the
//     listener is down; a database that is down fails lookups (closed), as the HTTP source does.
//   - [None] and [Static]: no consents at all, or a fixed in-memory set (tests, no config).
//
// Every source returns the current state: one [Consent] per purpose, the latest event winning,
// sorted by purpose. Sources never log consent evidence, and log subject ids at debug level only:
// ids are pseudonymous, but a log line linking a person to "withdrew marketing" is itself personal
// data.
package consent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Consent statuses. Only these two exist: "pending" or "unknown" states would be read by
// somebody's policy as "not withdrawn", so the sources refuse them.
const (
	StatusGranted   = "granted"
	StatusWithdrawn = "withdrawn"
)

// Evidence records how consent was given or withdrawn, so that a disclosure made under it can be
// justified later: what the user did (the explicit action), where, and under which version of the
// privacy policy.
type Evidence struct {
	Action        string `json:"action" yaml:"action"`
	Where         string `json:"where" yaml:"where"`
	PolicyVersion string `json:"policy_version" yaml:"policy_version"`
}

// Consent is one consent event, or (as returned by a [Source]) the current state of one purpose.
type Consent struct {
	Purpose  string    `json:"purpose" yaml:"purpose"`
	Status   string    `json:"status" yaml:"status"` // StatusGranted or StatusWithdrawn
	Time     time.Time `json:"time" yaml:"time"`
	Evidence Evidence  `json:"evidence" yaml:"evidence"`
}

// Source returns a subject's current consent state.
//
// Lookup returns one Consent per purpose (the latest event wins; on a tie the withdrawal wins),
// sorted by purpose, never nil on success so that it encodes as [] in the policy input. An unknown
// or empty subject has no consents: an empty list and a nil error. A non-nil error means the state
// is unknown; the caller must then treat every consent-gated purpose as refused, never as granted.
// The returned slice belongs to the caller. Implementations are safe for concurrent use.
type Source interface {
	Lookup(ctx context.Context, subject string) ([]Consent, error)
}

var (
	_ Source = None{}
	_ Source = Static(nil)
	_ Source = (*File)(nil)
	_ Source = (*HTTP)(nil)
	_ Source = (*Postgres)(nil)
)

// None is the source used when no consent source is configured: nobody has consented to anything,
// so consent-gated purposes are refused rather than failing as unavailable.
type None struct{}

// Lookup returns an empty list.
func (None) Lookup(context.Context, string) ([]Consent, error) { return []Consent{}, nil }

// Static is a fixed in-memory source, subject id → consent events (a history is allowed, as in
// the file source). It is not validated; it exists for tests and embedding.
type Static map[string][]Consent

// Lookup returns the subject's latest state per purpose.
func (s Static) Lookup(_ context.Context, subject string) ([]Consent, error) {
	return latest(s[subject]), nil
}

// latest reduces a history of events to the current state: one event per purpose, the one with
// the latest time. On equal times the withdrawal wins, because honouring a grant that may have
// been revoked at the same instant is the privacy failure, and refusing is recoverable. Among
// equal times and statuses the later event in input order wins. The result is sorted by purpose
// (stable policy input, comparable in tests) and is a fresh slice.
func latest(events []Consent) []Consent {
	out := make([]Consent, 0, len(events))
	// A subject has a few purposes: a linear search beats a map (and its
	// allocation, a million times over when a file of subjects loads).
	var idx map[string]int
	if len(events) > 16 {
		idx = make(map[string]int, len(events))
	}
	for _, e := range events {
		i, seen := -1, false
		if idx != nil {
			i, seen = idx[e.Purpose]
		} else {
			for j := range out {
				if out[j].Purpose == e.Purpose {
					i, seen = j, true
					break
				}
			}
		}
		if !seen {
			if idx != nil {
				idx[e.Purpose] = len(out)
			}
			out = append(out, e)
			continue
		}
		if supersedes(e, out[i]) {
			out[i] = e
		}
	}
	slices.SortFunc(out, func(a, b Consent) int { return cmp.Compare(a.Purpose, b.Purpose) })
	return out
}

// supersedes reports whether event e replaces the current state cur (see latest).
func supersedes(e, cur Consent) bool {
	switch {
	case e.Time.After(cur.Time):
		return true
	case e.Time.Before(cur.Time):
		return false
	case e.Status == cur.Status:
		return true
	default:
		return e.Status == StatusWithdrawn
	}
}

// problem is one thing wrong with a consent event: the field at fault ("" for the event as a
// whole) and what is wrong, without position; the caller adds file:line or the list index.
type problem struct{ field, msg string }

// check returns what is wrong with one consent event. Both the file and the HTTP source apply it,
// so that a service cannot hand the policy what a file may not contain. A grant must carry the
// explicit action: the privacy policy promises consent "by an explicit action", and a grant nobody
// can account for is not consent.
func check(c Consent) []problem {
	var problems []problem
	if strings.TrimSpace(c.Purpose) == "" {
		problems = append(problems, problem{"purpose", "purpose is required"})
	}
	switch c.Status {
	case StatusGranted:
		if strings.TrimSpace(c.Evidence.Action) == "" {
			problems = append(problems, problem{"evidence.action",
				"evidence.action is required for a grant (consent must be an explicit action)"})
		}
	case StatusWithdrawn:
	case "":
		problems = append(problems, problem{"status", "status is required"})
	default:
		problems = append(problems, problem{"status",
			fmt.Sprintf("status must be %q or %q, got %q", StatusGranted, StatusWithdrawn, clip(c.Status))})
	}
	if c.Time.IsZero() {
		problems = append(problems, problem{"time", "time is required"})
	}
	return problems
}

// clip shortens a value echoed in an error, so that a garbage file cannot make a huge log line.
func clip(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
