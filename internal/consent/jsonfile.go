package consent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// The JSON consent file is read by a scanner of its own, in one pass, into
// consent events: no tree of the whole file, and lines counted as the bytes
// go by. Why not encoding/json: its Token API allocates per token and gives
// byte offsets only (turning an offset into a line meant counting newlines
// from the start of the file for every token: quadratic, 40,000 subjects
// took minutes), and Unmarshal can neither report duplicate keys nor lines.
// encoding/json/jsontext would do, but is an experiment in this Go release.
// The scanner accepts exactly what encoding/json accepts (FuzzJSONScanner
// compares the two) and reports the same problems, at the same lines, as
// the YAML walker does for the same document.

// jsonScanner reads one JSON consent file.
type jsonScanner struct {
	w      *walker
	data   []byte
	pos    int
	line   int
	intern map[string]string // repeated values (purposes, evidence) stored once
	steps  int               // bytes examined; TestLoadIsLinear bounds it
	syntax error             // the first syntax error: reading stops there
	events []Consent         // scratch: one subject's history
	recent [64]string        // see keep
}

// errJSONStop unwinds the scanner after a syntax error.
type errJSONStop struct{}

// jsonKind is what a JSON value is, for "got a list" messages.
type jsonKind int

const (
	jsonScalar jsonKind = iota
	jsonNull
	jsonMapping
	jsonList
)

func (k jsonKind) String() string {
	switch k {
	case jsonNull:
		return "null"
	case jsonMapping:
		return "a mapping"
	case jsonList:
		return "a list"
	}
	return "a scalar"
}

// parseJSONFile reads a JSON consent file into the current state per
// subject (see latest). Syntax errors end the reading and are the only
// error reported, as they are for the YAML reader; every other problem is
// collected.
func parseJSONFile(name string, data []byte) (map[string][]Consent, error) {
	state, _, err := scanJSON(name, data)
	return state, err
}

// scanJSON is parseJSONFile that also says how many bytes it examined.
func scanJSON(name string, data []byte) (state map[string][]Consent, steps int, err error) {
	s := &jsonScanner{w: &walker{name: name}, data: data, line: 1, intern: map[string]string{}}
	defer func() { steps = s.steps }()
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, 0, emptyFile(name)
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(errJSONStop); !ok {
				panic(r)
			}
			state, err = nil, s.syntax
		}
	}()
	state = s.document()
	s.ws()
	if s.pos < len(s.data) {
		s.fail(s.line, "unexpected data after the JSON value")
	}
	if err := s.w.err(); err != nil {
		return nil, s.steps, err
	}
	return state, s.steps, nil
}

func (s *jsonScanner) fail(line int, format string, args ...any) {
	s.syntax = fmt.Errorf("%s:%d: %s", s.w.name, line, fmt.Sprintf(format, args...))
	panic(errJSONStop{})
}

// ws skips whitespace, counting lines.
func (s *jsonScanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case '\n':
			s.line++
		case ' ', '\t', '\r':
		default:
			return
		}
		s.pos++
		s.steps++
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *jsonScanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *jsonScanner) unexpected(context string) {
	if s.pos >= len(s.data) {
		s.fail(s.line, "unexpected end of JSON input")
	}
	c := s.data[s.pos]
	s.fail(s.line, "invalid character %s %s", quoteChar(c), context)
}

// quoteChar quotes a byte as encoding/json's messages do.
func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c < utf8.RuneSelf:
		return "'" + strings.Trim(fmt.Sprintf("%q", rune(c)), `"'`) + "'"
	}
	return fmt.Sprintf("%q", rune(c))
}

// object reads an object, calling fn for each key with the key's line; fn
// must read the value. Duplicate keys are reported (and their values read
// and dropped) under what.
func (s *jsonScanner) object(what string, depth int, fn func(key string, line int)) {
	s.pos++ // {
	s.steps++
	if s.peek() == '}' {
		s.pos++
		return
	}
	// Keys seen so far, for duplicates: a few in an event, a map only for
	// the many subject ids. Keys are interned except subject ids, each of
	// which is a map key of the state anyway.
	var fewArr [8]keyLine
	few := fewArr[:0]
	var many map[string]int
	ids := what == "subjects"
	for {
		if s.peek() != '"' {
			s.unexpected("looking for beginning of object key string")
		}
		line := s.line
		key := s.str(!ids)
		if s.peek() != ':' {
			s.unexpected("after object key")
		}
		s.pos++
		first, dup := 0, false
		if many != nil {
			first, dup = many[key]
		} else {
			for _, kl := range few {
				if kl.key == key {
					first, dup = kl.line, true
				}
			}
		}
		if dup {
			s.w.addf(line, "duplicate key %q in %s (first at line %d)", clip(key), what, first)
			s.skip(depth + 1)
		} else {
			if many == nil && len(few) < 8 {
				few = append(few, keyLine{key, line})
			} else {
				if many == nil {
					many = make(map[string]int, 64)
					for _, kl := range few {
						many[kl.key] = kl.line
					}
				}
				many[key] = line
			}
			fn(key, line)
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return
		default:
			s.unexpected("after object key:value pair")
		}
	}
}

type keyLine struct {
	key  string
	line int
}

// array reads an array, calling fn to read each element.
func (s *jsonScanner) array(depth int, fn func()) {
	s.pos++ // [
	s.steps++
	if s.peek() == ']' {
		s.pos++
		return
	}
	for {
		fn()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return
		default:
			s.unexpected("after array element")
		}
	}
}

// kind says what the next value is, without reading it.
func (s *jsonScanner) kind(depth int) (jsonKind, int) {
	if depth > maxJSONDepth {
		s.fail(s.line, "JSON nested deeper than %d levels", maxJSONDepth)
	}
	switch s.peek() {
	case '{':
		return jsonMapping, s.line
	case '[':
		return jsonList, s.line
	case 'n':
		return jsonNull, s.line
	case 0:
		s.unexpected("")
	}
	return jsonScalar, s.line
}

// skip reads a value of any kind and drops it.
func (s *jsonScanner) skip(depth int) {
	switch k, _ := s.kind(depth); k {
	case jsonMapping:
		s.object("", depth, func(string, int) { s.skip(depth + 1) })
	case jsonList:
		s.array(depth, func() { s.skip(depth + 1) })
	default:
		s.scalar()
	}
}

// scalar reads a string, number, boolean or null and returns its text as
// the YAML walker sees it: a string's value, a number or boolean as
// written, null as "". A string is interned when keep is set.
func (s *jsonScanner) scalar(keep ...bool) string {
	switch c := s.peek(); {
	case c == '"':
		return s.str(len(keep) == 0 || keep[0])
	case c == 't':
		s.literal("true")
		return "true"
	case c == 'f':
		s.literal("false")
		return "false"
	case c == 'n':
		s.literal("null")
		return ""
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	s.unexpected("looking for beginning of value")
	return ""
}

func (s *jsonScanner) literal(lit string) {
	for i := range len(lit) {
		if s.pos >= len(s.data) {
			s.fail(s.line, "unexpected end of JSON input")
		}
		if s.data[s.pos] != lit[i] {
			s.unexpected(fmt.Sprintf("in literal %s (expecting %s)", lit, quoteChar(lit[i])))
		}
		s.pos++
		s.steps++
	}
}

// number reads a number by JSON's grammar and returns it as written.
func (s *jsonScanner) number() string {
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.data) && s.data[s.pos] >= '0' && s.data[s.pos] <= '9' {
			s.pos++
			s.steps++
			n++
		}
		return n
	}
	need := func(context string) {
		if digits() == 0 {
			s.unexpected(context)
		}
	}
	if s.data[s.pos] == '-' {
		s.pos++
	}
	if s.pos < len(s.data) && s.data[s.pos] == '0' {
		s.pos++
	} else {
		need("in numeric literal")
	}
	if s.pos < len(s.data) && s.data[s.pos] == '.' {
		s.pos++
		need("after decimal point in numeric literal")
	}
	if s.pos < len(s.data) && (s.data[s.pos] == 'e' || s.data[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.data) && (s.data[s.pos] == '+' || s.data[s.pos] == '-') {
			s.pos++
		}
		need("in exponent of numeric literal")
	}
	return s.keep(s.data[start:s.pos])
}

// str reads a string literal, interned when keep is set. Without escapes
// the bytes are the value; with escapes encoding/json decodes them, so
// surrogate pairs and invalid UTF-8 come out as it has them.
func (s *jsonScanner) str(keep bool) string {
	start := s.pos
	// The common string: printable ASCII, no escape. Found with one
	// IndexByte, checked with one tight loop.
	if end := bytes.IndexByte(s.data[start+1:], '"'); end >= 0 {
		seg := s.data[start+1 : start+1+end]
		plain := true
		for _, c := range seg {
			if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
				plain = false
				break
			}
		}
		if plain {
			s.pos = start + end + 2
			s.steps += end + 2
			if !keep {
				return string(seg)
			}
			return s.keep(seg)
		}
	}
	s.pos++ // "
	escaped, ascii := false, true
	for {
		if s.pos >= len(s.data) {
			s.fail(s.line, "unexpected end of JSON input")
		}
		c := s.data[s.pos]
		s.steps++
		switch {
		case c == '"':
			s.pos++
			raw := s.data[start:s.pos]
			if !escaped && (ascii || utf8.Valid(raw)) {
				if !keep {
					return string(raw[1 : len(raw)-1])
				}
				return s.keep(raw[1 : len(raw)-1])
			}
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				s.fail(s.line, "%v", err)
			}
			if !keep {
				return v
			}
			return s.keepString(v)
		case c == '\\':
			escaped = true
			s.pos++
			if s.pos >= len(s.data) {
				s.fail(s.line, "unexpected end of JSON input")
			}
			switch e := s.data[s.pos]; e {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				for i := 1; i <= 4; i++ {
					if s.pos+i >= len(s.data) {
						s.fail(s.line, "unexpected end of JSON input")
					}
					if !isHex(s.data[s.pos+i]) {
						s.pos += i
						s.unexpected("in \\u hexadecimal character escape")
					}
				}
				s.pos += 4
			default:
				s.unexpected("in string escape code")
			}
		case c < 0x20:
			s.unexpected("in string literal")
		case c >= utf8.RuneSelf:
			ascii = false
		}
		s.pos++
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// keep returns b as a string, stored once for all equal values: keys,
// purposes, statuses and evidence repeat across a million subjects. The
// format's keys are found without a map lookup.
func (s *jsonScanner) keep(b []byte) string {
	for _, k := range knownKeys {
		if len(k) == len(b) && k == string(b) {
			return k
		}
	}
	// A few recent values, by a hash of four bytes, before the map: the
	// values that repeat repeat a lot, and hashing each whole is the cost.
	var slot *string
	if len(b) > 0 {
		slot = &s.recent[(len(b)*31+int(b[0])*7+int(b[len(b)/2])*3+int(b[len(b)-1]))%len(s.recent)]
		if *slot == string(b) {
			return *slot
		}
	}
	v, ok := s.intern[string(b)]
	if !ok {
		v = s.keepString(string(b))
	}
	if slot != nil {
		*slot = v
	}
	return v
}

var knownKeys = [...]string{"subjects", "purpose", "status", "time", "evidence", "action", "where", "policy_version", StatusGranted, StatusWithdrawn}

func (s *jsonScanner) keepString(v string) string {
	if x, ok := s.intern[v]; ok {
		return x
	}
	if len(s.intern) < 1<<16 && len(v) <= 256 {
		s.intern[v] = v
	}
	return v
}

// text reads a value that must be a string (a scalar: numbers and booleans
// as written, null as ""), reporting anything else as the YAML walker does.
func (s *jsonScanner) text(what string, depth int) string {
	k, line := s.kind(depth)
	if k == jsonMapping || k == jsonList {
		s.w.addf(line, "%s must be a string, got %s", what, k)
		s.skip(depth)
		return ""
	}
	// Times are parsed, not kept: interning them would fill the table.
	return s.scalar(what != "time")
}

func (s *jsonScanner) document() map[string][]Consent {
	state := map[string][]Consent{}
	k, line := s.kind(0)
	if k != jsonMapping {
		s.w.addf(line, "the top level must be a mapping, got %s", k)
		s.skip(0)
		return state
	}
	found := false
	s.object("the top level", 0, func(key string, kline int) {
		if key != "subjects" {
			s.w.addf(kline, "unknown key %q in the top level (known: %s)", clip(key), strings.Join(docKeys, ", "))
			s.skip(1)
			return
		}
		found = true
		s.subjects(state)
	})
	if !found {
		s.w.addf(line, "missing key \"subjects\"")
	}
	return state
}

// subjects reads the subjects and stores each one's current state; the
// events of a subject are scratch, reused for the next.
func (s *jsonScanner) subjects(state map[string][]Consent) {
	k, line := s.kind(1)
	switch k {
	case jsonNull:
		s.scalar()
		return
	case jsonMapping:
	default:
		s.w.addf(line, "subjects must be a mapping, got %s", k)
		s.skip(1)
		return
	}
	s.object("subjects", 1, func(id string, kline int) {
		if strings.TrimSpace(id) == "" {
			s.w.addf(kline, "a subject id must not be empty")
			s.skip(2)
			return
		}
		k, vline := s.kind(2)
		switch k {
		case jsonNull:
			s.scalar()
			return
		case jsonList:
		default:
			s.w.addf(vline, "the consents of a subject must be a list, got %s", k)
			s.skip(2)
			return
		}
		events := s.events[:0]
		s.array(2, func() {
			if c, ok := s.consent(3); ok {
				events = append(events, c)
			}
		})
		s.events = events
		if len(events) > 0 {
			state[id] = latest(events)
		}
	})
}

// consent reads one event and checks it; ok is false when anything is wrong
// with it.
func (s *jsonScanner) consent(depth int) (Consent, bool) {
	var c Consent
	k, line := s.kind(depth)
	if k != jsonMapping {
		s.w.addf(line, "a consent event must be a mapping, got %s", k)
		s.skip(depth)
		return c, false
	}
	before := len(s.w.problems)
	var lines [len(eventFields)]int
	lines[fieldEvent] = line
	timeReported := false
	s.object("a consent event", depth, func(key string, kline int) {
		switch key {
		case "purpose":
			lines[fieldPurpose] = kline
			c.Purpose = s.text(key, depth+1)
		case "status":
			lines[fieldStatus] = kline
			c.Status = s.text(key, depth+1)
		case "time":
			lines[fieldTime] = kline
			prev := len(s.w.problems)
			_, vline := s.kind(depth + 1)
			if v := s.text(key, depth+1); v != "" {
				t, err := time.Parse(time.RFC3339Nano, v)
				if err != nil {
					s.w.addf(vline, "time must be an RFC 3339 timestamp such as 2026-10-01T10:00:00Z, got %q", clip(v))
				} else {
					c.Time = t.UTC()
				}
			}
			timeReported = len(s.w.problems) > prev
		case "evidence":
			lines[fieldEvidence] = kline
			s.evidence(&c, &lines, depth+1)
		default:
			s.w.addf(kline, "unknown key %q in a consent event (known: %s)", clip(key), strings.Join(consentKeys, ", "))
			s.skip(depth + 1)
		}
	})
	for _, p := range check(c) {
		if p.field == "time" && timeReported {
			continue
		}
		f := fieldOf(p.field)
		line := lines[f]
		if line == 0 {
			// A missing field: point at the evidence mapping if there is one, else the event.
			if line = lines[fieldOf(strings.Split(p.field, ".")[0])]; line == 0 {
				line = lines[fieldEvent]
			}
		}
		s.w.addf(line, "%s", p.msg)
	}
	return c, len(s.w.problems) == before
}

func (s *jsonScanner) evidence(c *Consent, lines *[len(eventFields)]int, depth int) {
	k, line := s.kind(depth)
	switch k {
	case jsonNull:
		s.scalar()
		return
	case jsonMapping:
	default:
		s.w.addf(line, "evidence must be a mapping, got %s", k)
		s.skip(depth)
		return
	}
	s.object("evidence", depth, func(key string, kline int) {
		switch key {
		case "action":
			lines[fieldAction] = kline
			c.Evidence.Action = s.text("evidence."+key, depth+1)
		case "where":
			lines[fieldWhere] = kline
			c.Evidence.Where = s.text("evidence."+key, depth+1)
		case "policy_version":
			lines[fieldPolicyVersion] = kline
			c.Evidence.PolicyVersion = s.text("evidence."+key, depth+1)
		default:
			s.w.addf(kline, "unknown key %q in evidence (known: %s)", clip(key), strings.Join(evidenceKeys, ", "))
			s.skip(depth + 1)
		}
	})
}

// The fields of an event whose lines problems are reported at.
const (
	fieldEvent = iota
	fieldPurpose
	fieldStatus
	fieldTime
	fieldEvidence
	fieldAction
	fieldWhere
	fieldPolicyVersion
)

var eventFields = [...]string{"", "purpose", "status", "time", "evidence", "evidence.action", "evidence.where", "evidence.policy_version"}

func fieldOf(name string) int {
	for i, f := range eventFields {
		if f == name {
			return i
		}
	}
	return fieldEvent
}
