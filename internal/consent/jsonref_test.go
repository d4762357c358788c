package consent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// The JSON reader the consent file had before jsonfile.go: encoding/json's
// tokens into a yaml.Node tree, checked by the YAML walker. It is slow
// (every token's line counted from the start of the file) but simple, and
// FuzzJSONScanner holds the scanner to it: same files accepted, same state.

func parseJSONReference(name string, data []byte) (map[string][]Consent, error) {
	root, err := jsonRoot(name, data)
	if err != nil {
		return nil, err
	}
	return stateOf(name, root)
}

// jsonRoot parses data as exactly one JSON value and returns it as a yaml.Node tree with lines.
func jsonRoot(name string, data []byte) (*yaml.Node, error) {
	r := jsonReader{name: name, data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	r.dec.UseNumber() // numbers stay text; the walker only wants strings anyway
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, emptyFile(name)
	}
	root, err := r.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s:%d: unexpected data after the JSON value", name, r.line(r.dec.InputOffset()))
	}
	return root, nil
}

// jsonReader turns JSON tokens into yaml.Node values, so that both formats share one walker.
type jsonReader struct {
	name string
	data []byte
	dec  *json.Decoder
}

// line returns the 1-based line of a byte offset. JSON tokens never span lines, so the offset just
// after a token gives the token's line.
func (r *jsonReader) line(off int64) int {
	off = min(max(off, 0), int64(len(r.data)))
	return bytes.Count(r.data[:off], []byte{'\n'}) + 1
}

func (r *jsonReader) fail(err error) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("%s:%d: %v", r.name, r.line(se.Offset), se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s:%d: unexpected end of JSON", r.name, r.line(int64(len(r.data))))
	}
	return fmt.Errorf("%s:%d: %v", r.name, r.line(r.dec.InputOffset()), err)
}

func (r *jsonReader) value(depth int) (*yaml.Node, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.fail(err)
	}
	line := r.line(r.dec.InputOffset())
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("%s:%d: JSON nested deeper than %d levels", r.name, line, maxJSONDepth)
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Line: line, Kind: yaml.SequenceNode, Tag: "!!seq"}
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
		}
		for r.dec.More() {
			if n.Kind == yaml.MappingNode {
				// Token validates the object syntax, so a key is always a string here.
				k, err := r.dec.Token()
				if err != nil {
					return nil, r.fail(err)
				}
				ks, _ := k.(string)
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ks,
					Line: r.line(r.dec.InputOffset())})
			}
			v, err := r.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, v)
		}
		if _, err := r.dec.Token(); err != nil { // the closing delimiter
			return nil, r.fail(err)
		}
		return n, nil
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t, Line: line}, nil
	case json.Number:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: t.String(), Line: line}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t), Line: line}, nil
	default: // nil
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null", Line: line}, nil
	}
}
