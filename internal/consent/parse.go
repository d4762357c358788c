package consent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The file format is documented on File. YAML is read into a yaml.Node tree and checked by a
// walker, which rejects unknown keys itself rather than through yaml.v3's KnownFields (which would
// not say where) and knows the line of every field, so each problem is reported as file:line, all
// of them at once. JSON is read by a scanner of its own (jsonfile.go) straight into events, with
// the same checks and messages: yaml.v3 cannot read every valid JSON file (it rejects UTF-16
// surrogate escapes such as "\ud83d\ude00", which JSON encoders emit for emoji), and a tree of a
// file of a million subjects would take many times the file's size.

// maxProblems bounds the problems listed in one error, so that a file of garbage does not produce
// a log line of megabytes; the count of the rest is still given.
const maxProblems = 50

// maxJSONDepth bounds JSON nesting. The format is five levels deep; anything much deeper is not a
// consent file, and the bound keeps the recursive reader's stack small on hostile input.
const maxJSONDepth = 32

// Keys of the file format, in the order they are listed in "unknown key" messages.
var (
	docKeys      = []string{"subjects"}
	consentKeys  = []string{"purpose", "status", "time", "evidence"}
	evidenceKeys = []string{"action", "where", "policy_version"}
)

// fileFormat returns "yaml" or "json" from the file name's extension. The extension decides, not
// sniffing, so that a JSON file never silently gets YAML's looser rules.
func fileFormat(name string) (string, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml":
		return "yaml", nil
	case ".json":
		return "json", nil
	default:
		return "", fmt.Errorf("%s: unknown consent file format: want a .yaml, .yml or .json extension", name)
	}
}

// parseFile parses and validates a consent file of the given format ("yaml" or "json") and returns
// the current state per subject (see latest). name only labels the errors, as name:line: message.
// It never panics, whatever data holds.
func parseFile(name, format string, data []byte) (map[string][]Consent, error) {
	switch format {
	case "yaml":
	case "json":
		return parseJSONFile(name, data)
	default:
		return nil, fmt.Errorf("%s: unknown consent file format %q", name, format)
	}
	root, err := yamlRoot(name, data)
	if err != nil {
		return nil, err
	}
	return stateOf(name, root)
}

// stateOf walks a consents document and keeps each subject's current state.
func stateOf(name string, root *yaml.Node) (map[string][]Consent, error) {
	w := walker{name: name}
	history := w.document(root)
	if err := w.err(); err != nil {
		return nil, err
	}
	state := make(map[string][]Consent, len(history))
	for subject, events := range history {
		if len(events) > 0 {
			state[subject] = latest(events)
		}
	}
	return state, nil
}

// yamlLineRE finds the line in yaml.v3's messages, "yaml: line 3: ..." and (inside a TypeError)
// "line 3: ...".
var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlRoot parses data as exactly one YAML document and returns its top node.
func yamlRoot(name string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, emptyFile(name)
		}
		return nil, yamlError(name, err)
	}
	// A second document would be ignored by a plain Unmarshal: the operator would see
	// consents in the file that Pare does not have.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(name, err)
	default:
		return nil, fmt.Errorf("%s:%d: more than one YAML document; a consent file holds one", name, extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, emptyFile(name)
	}
	return doc.Content[0], nil
}

// emptyFile is an error, not an empty state: an empty file is far more often a truncated write or
// a mistake than an intent to drop every consent, and keeping the last good state is the better
// answer to it. An intentionally empty file says "subjects: {}".
func emptyFile(name string) error {
	return fmt.Errorf("%s: file is empty; write \"subjects: {}\" for a file without consents", name)
}

// yamlError rewrites a yaml.v3 error as name:line: message lines.
func yamlError(name string, err error) error {
	var lines []string
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		lines = te.Errors
	} else {
		lines = []string{err.Error()}
	}
	errs := make([]error, 0, len(lines))
	for _, l := range lines {
		if m := yamlLineRE.FindStringSubmatch(l); m != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %s", name, m[1], m[2]))
		} else {
			errs = append(errs, fmt.Errorf("%s: %s", name, strings.TrimPrefix(l, "yaml: ")))
		}
	}
	return errors.Join(errs...)
}

// walker checks a document tree against the file format and collects every problem with its line.
type walker struct {
	name     string
	problems []string
}

func (w *walker) addf(line int, format string, args ...any) {
	w.problems = append(w.problems, fmt.Sprintf("%s:%d: %s", w.name, line, fmt.Sprintf(format, args...)))
}

func (w *walker) err() error {
	if len(w.problems) == 0 {
		return nil
	}
	shown := w.problems[:min(len(w.problems), maxProblems)]
	errs := make([]error, 0, len(shown)+1)
	for _, p := range shown {
		errs = append(errs, errors.New(p))
	}
	if rest := len(w.problems) - len(shown); rest > 0 {
		errs = append(errs, fmt.Errorf("%s: and %d more problems", w.name, rest))
	}
	return errors.Join(errs...)
}

// isNull reports whether n is an explicit or implicit null (a key with no value).
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// kindName names a node's kind for messages.
func kindName(n *yaml.Node) string {
	switch {
	case isNull(n):
		return "null"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
	default:
		return "a scalar"
	}
}

// mapping calls fn for each key of the mapping n, in order. It reports a non-mapping (a null counts
// as an empty mapping when allowNull), non-scalar and duplicate keys, and keys not in known (when
// known is non-nil). It returns false when n is not a mapping.
func (w *walker) mapping(n *yaml.Node, what string, allowNull bool, known []string, fn func(key string, k, v *yaml.Node)) bool {
	if allowNull && isNull(n) {
		return true
	}
	if !w.noAlias(n) {
		return false
	}
	if n.Kind != yaml.MappingNode {
		w.addf(n.Line, "%s must be a mapping, got %s", what, kindName(n))
		return false
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !w.noAlias(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			w.addf(k.Line, "keys of %s must be strings, got %s", what, kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.addf(k.Line, "duplicate key %q in %s (first at line %d)", clip(k.Value), what, first)
			continue
		}
		seen[k.Value] = k.Line
		if known != nil && !contains(known, k.Value) {
			w.addf(k.Line, "unknown key %q in %s (known: %s)", clip(k.Value), what, strings.Join(known, ", "))
			continue
		}
		fn(k.Value, k, v)
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// noAlias reports an alias as a problem. Aliases have no use in a list of consent events, and
// following them would let a small file expand into a huge state.
func (w *walker) noAlias(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		w.addf(n.Line, "YAML aliases are not supported in a consent file")
		return false
	}
	return true
}

// str returns the text of a scalar; null is "". YAML scalars of other types (a number as a
// policy_version, say) are taken as written.
func (w *walker) str(n *yaml.Node, what string) string {
	if isNull(n) || !w.noAlias(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		w.addf(n.Line, "%s must be a string, got %s", what, kindName(n))
		return ""
	}
	return n.Value
}

func (w *walker) document(root *yaml.Node) map[string][]Consent {
	history := map[string][]Consent{}
	found := false
	ok := w.mapping(root, "the top level", false, docKeys, func(_ string, _, v *yaml.Node) {
		found = true
		w.subjects(v, history)
	})
	if ok && !found {
		w.addf(root.Line, "missing key \"subjects\"")
	}
	return history
}

func (w *walker) subjects(n *yaml.Node, history map[string][]Consent) {
	// nil known: any key is a subject id.
	w.mapping(n, "subjects", true, nil, func(id string, k, v *yaml.Node) {
		if strings.TrimSpace(id) == "" {
			w.addf(k.Line, "a subject id must not be empty")
			return
		}
		if isNull(v) {
			return
		}
		if !w.noAlias(v) {
			return
		}
		if v.Kind != yaml.SequenceNode {
			w.addf(v.Line, "the consents of a subject must be a list, got %s", kindName(v))
			return
		}
		events := make([]Consent, 0, len(v.Content))
		for _, item := range v.Content {
			if c, ok := w.consent(item); ok {
				events = append(events, c)
			}
		}
		history[id] = events
	})
}

// consent reads one event and checks it; ok is false when anything is wrong with it.
func (w *walker) consent(n *yaml.Node) (Consent, bool) {
	var c Consent
	before := len(w.problems)
	lines := map[string]int{"": n.Line}
	timeReported := false
	if !w.mapping(n, "a consent event", false, consentKeys, func(key string, k, v *yaml.Node) {
		lines[key] = k.Line
		switch key {
		case "purpose":
			c.Purpose = w.str(v, key)
		case "status":
			c.Status = w.str(v, key)
		case "time":
			prev := len(w.problems)
			c.Time = w.time(v)
			timeReported = len(w.problems) > prev
		case "evidence":
			w.mapping(v, "evidence", true, evidenceKeys, func(key string, k, v *yaml.Node) {
				lines["evidence."+key] = k.Line
				s := w.str(v, "evidence."+key)
				switch key {
				case "action":
					c.Evidence.Action = s
				case "where":
					c.Evidence.Where = s
				default:
					c.Evidence.PolicyVersion = s
				}
			})
		}
	}) {
		return c, false
	}
	for _, p := range check(c) {
		if p.field == "time" && timeReported {
			continue // an unparsable time was reported already; "time is required" would confuse
		}
		line, found := lines[p.field]
		if !found {
			// A missing field: point at the evidence mapping if there is one, else the event.
			if line, found = lines[strings.Split(p.field, ".")[0]]; !found {
				line = n.Line
			}
		}
		w.addf(line, "%s", p.msg)
	}
	return c, len(w.problems) == before
}

// time parses an RFC 3339 timestamp. Only RFC 3339, not every form YAML calls a timestamp: a bare
// date or a time without zone would leave the order of events to the reader's time zone.
func (w *walker) time(n *yaml.Node) time.Time {
	s := w.str(n, "time")
	if s == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		w.addf(n.Line, "time must be an RFC 3339 timestamp such as 2026-10-01T10:00:00Z, got %q", clip(s))
		return time.Time{}
	}
	return t.UTC()
}
