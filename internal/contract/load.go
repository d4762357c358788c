package contract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Extensions are the contract file extensions, the data file extensions OPA's loader reads.
var Extensions = []string{".yaml", ".yml", ".json"}

// LoadDir loads and validates every contract file directly in dir (the contracts directory, e.g.
// "policies/contracts"). Errors name files as dir/<file>:line.
func LoadDir(dir string) (map[string]*Contract, error) {
	return load(os.DirFS(dir), ".", filepath.ToSlash(dir))
}

// LoadFS loads and validates every contract file directly in dir of fsys (e.g. "contracts" in
// the embedded policies). Errors name files by their path in fsys. A missing dir is an error
// matching fs.ErrNotExist.
func LoadFS(fsys fs.FS, dir string) (map[string]*Contract, error) {
	return load(fsys, dir, dir)
}

func load(fsys fs.FS, dir, display string) (map[string]*Contract, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("contracts %s: %w", display, err)
	}
	var errs []error
	contracts := map[string]*Contract{}
	for _, e := range entries {
		name := e.Name()
		shown := path.Join(display, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		if e.IsDir() {
			// OPA's loader would load it as data.contracts.<dir>, which the policy would then
			// take for a vendor.
			errs = append(errs, &Error{File: shown, Msg: "subdirectories are not allowed in the contracts directory (OPA would load this one as a vendor)"})
			continue
		}
		if !isContractFile(name) {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", shown, err))
			continue
		}
		c, err := Parse(shown, b)
		if err != nil {
			errs = append(errs, err)
		}
		if c == nil {
			continue
		}
		if prev, ok := contracts[c.ID]; ok {
			errs = append(errs, &Error{File: shown, Line: c.line(), Msg: fmt.Sprintf("vendor %q is also defined in %s", c.ID, prev.File)})
			continue
		}
		contracts[c.ID] = c
	}
	if err := validateSet(contracts); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return contracts, nil
}

func isContractFile(name string) bool {
	for _, ext := range Extensions {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// vendorIDRe: a vendor id is a plain Rego identifier, so data.contracts.<id> needs no quoting.
var vendorIDRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Parse decodes one contract file strictly and validates it. file is the name shown in errors;
// its base name up to the first dot is the vendor id the single top-level key must spell
// ("contracts/stripe.yaml" → stripe). When only validation fails the contract is returned with
// the error, so a caller can still report on the rest of the set.
func Parse(file string, data []byte) (*Contract, error) {
	id, _, _ := strings.Cut(path.Base(filepath.ToSlash(file)), ".")

	// The node tree gives line numbers for semantic errors; the strict typed decode below gives
	// unknown keys and type mismatches.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "empty file: want one top-level key, the vendor id " + strconv.Quote(id)}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: root.Line, Msg: fmt.Sprintf("want a mapping with one key, the vendor id %q", id)}
	}
	var errs []error
	if !vendorIDRe.MatchString(id) {
		errs = append(errs, &Error{File: file, Msg: fmt.Sprintf("file name gives vendor id %q: want lower-case letters, digits and _ , starting with a letter", id)})
	}
	if len(root.Content) != 2 {
		keys := make([]string, 0, len(root.Content)/2)
		for i := 0; i+1 < len(root.Content); i += 2 {
			keys = append(keys, root.Content[i].Value)
		}
		errs = append(errs, &Error{File: file, Line: root.Line, Msg: fmt.Sprintf("want exactly one top-level key, the vendor id %q; found %d (%s)", id, len(keys), strings.Join(keys, ", "))})
		return nil, errors.Join(errs...)
	}
	key, val := root.Content[0], root.Content[1]
	if key.Value != id {
		errs = append(errs, &Error{File: file, Line: key.Line, Msg: fmt.Sprintf("top-level key %q must be the vendor id %q given by the file name", key.Value, id)})
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var m map[string]*Contract
	if err := dec.Decode(&m); err != nil {
		return nil, errors.Join(append(errs, yamlError(file, err))...)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, errors.Join(append(errs, &Error{File: file, Line: extra.Line, Msg: "more than one YAML document: a contract file holds one"})...)
	} else if !errors.Is(err, io.EOF) {
		return nil, errors.Join(append(errs, yamlError(file, err))...)
	}
	c := m[key.Value]
	if c == nil {
		return nil, errors.Join(append(errs, &Error{File: file, Line: key.Line, Msg: "the contract is empty"})...)
	}
	c.ID, c.File, c.node = id, file, val
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// yamlLineRe finds go-yaml's "line N: message" (syntax errors and each unmarshal error).
var (
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// yamlError rewrites go-yaml's errors as file:line errors, one per problem.
func yamlError(file string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	errs := make([]error, 0, len(msgs))
	for _, msg := range msgs {
		e := &Error{File: file, Msg: strings.TrimPrefix(msg, "yaml: ")}
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
			// go-yaml numbers lines from 1 for scanner errors but from 0 for parser errors
			// (its parser.fail adds 1 only for the scanner's); put the latter right.
			if isParserProblem(e.Msg) {
				e.Line++
			}
		}
		if m := yamlUnknownRe.FindStringSubmatch(e.Msg); m != nil {
			e.Msg = fmt.Sprintf("unknown key %q (a misspelled key is an error: it would silently change what leaves)", m[1])
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// isParserProblem reports whether msg is one of go-yaml's parser (not scanner) problems.
func isParserProblem(msg string) bool {
	for _, p := range []string{"did not find expected ", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// HostIndex returns vendor id → sorted hosts, for the admin /debug/policy page.
func HostIndex(contracts map[string]*Contract) map[string][]string {
	idx := make(map[string][]string, len(contracts))
	for id, c := range contracts {
		hosts := append([]string(nil), c.Hosts...)
		sort.Strings(hosts)
		idx[id] = hosts
	}
	return idx
}
