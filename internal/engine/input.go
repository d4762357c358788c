package engine

import (
	"encoding/binary"
	"encoding/json"
	"sort"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is what a front end knows about an outbound request before its body
// is looked at. Field names follow the policy input documented in
// policies/README.md.
type Input struct {
	Method  string
	Scheme  string
	Host    string // lower-case, no port
	Port    int
	Path    string
	Query   map[string][]string
	Headers map[string]string // lower-case names; credential values already replaced

	Purpose    string
	Subject    string
	GPC        bool
	Consents   []Consent
	ConsentErr string // non-empty when the consent source failed

	LegalBasis string
	Requester  string
	Approver   string
	Service    string
}

// Consent is one purpose's current state for a subject, as the consent
// source reports it.
type Consent struct {
	Purpose  string    `json:"purpose"`
	Status   string    `json:"status"`
	Time     time.Time `json:"time"`
	Evidence Evidence  `json:"evidence"`
}

// Evidence records the explicit action by which a consent was given.
type Evidence struct {
	Action        string `json:"action,omitempty"`
	Where         string `json:"where,omitempty"`
	PolicyVersion string `json:"policy_version,omitempty"`
}

func str(s string) *ast.Term { return ast.StringTerm(s) }

// value builds the policy input directly as an OPA value: handing OPA a Go
// struct would round-trip it through encoding/json on every request.
func (in *Input) value(body ast.Value) ast.Value {
	req := ast.NewObject(
		ast.Item(str("method"), str(in.Method)),
		ast.Item(str("scheme"), str(in.Scheme)),
		ast.Item(str("host"), str(in.Host)),
		ast.Item(str("port"), ast.IntNumberTerm(in.Port)),
		ast.Item(str("path"), str(in.Path)),
		ast.Item(str("query"), ast.NewTerm(stringsMap(in.Query))),
		ast.Item(str("headers"), ast.NewTerm(stringMap(in.Headers))),
	)
	consents := make([]*ast.Term, 0, len(in.Consents))
	for _, c := range in.Consents {
		consents = append(consents, ast.ObjectTerm(
			ast.Item(str("purpose"), str(c.Purpose)),
			ast.Item(str("status"), str(c.Status)),
			ast.Item(str("time"), str(c.Time.UTC().Format(time.RFC3339))),
			ast.Item(str("evidence"), ast.ObjectTerm(
				ast.Item(str("action"), str(c.Evidence.Action)),
				ast.Item(str("where"), str(c.Evidence.Where)),
				ast.Item(str("policy_version"), str(c.Evidence.PolicyVersion)),
			)),
		))
	}
	subject := ast.NewObject(
		ast.Item(str("id"), str(in.Subject)),
		ast.Item(str("gpc"), ast.BooleanTerm(in.GPC)),
		ast.Item(str("consents"), ast.ArrayTerm(consents...)),
		ast.Item(str("consents_error"), str(in.ConsentErr)),
	)
	obj := ast.NewObject(
		ast.Item(str("request"), ast.NewTerm(req)),
		ast.Item(str("purpose"), str(in.Purpose)),
		ast.Item(str("subject"), ast.NewTerm(subject)),
		ast.Item(str("legal_basis"), str(in.LegalBasis)),
		ast.Item(str("requester"), str(in.Requester)),
		ast.Item(str("approver"), str(in.Approver)),
		ast.Item(str("source"), ast.ObjectTerm(ast.Item(str("service"), str(in.Service)))),
	)
	if body != nil {
		obj.Insert(str("body"), ast.NewTerm(body))
	}
	return obj
}

func stringMap(m map[string]string) ast.Object {
	o := ast.NewObjectWithCapacity(len(m))
	for k, v := range m {
		o.Insert(str(k), str(v))
	}
	return o
}

func stringsMap(m map[string][]string) ast.Object {
	o := ast.NewObjectWithCapacity(len(m))
	for k, vs := range m {
		arr := make([]*ast.Term, len(vs))
		for i, v := range vs {
			arr[i] = str(v)
		}
		o.Insert(str(k), ast.ArrayTerm(arr...))
	}
	return o
}

// MarshalJSON renders the input as the policy sees it (without a body), for
// `proxy explain` and tests.
func (in *Input) MarshalJSON() ([]byte, error) {
	return json.Marshal(in.value(nil))
}

// appendKey writes the parts of the input the policy reads into dst, each
// length-prefixed so that no two inputs share a key. Parts the policy never
// refers to (request ids in headers, subject ids) stay out of the key, which
// is what makes the decision cache hit on real traffic.
func (in *Input) appendKey(dst []byte, refs inputRefs) []byte {
	s := func(v string) {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	if refs.has("request", "method") {
		s(in.Method)
	}
	if refs.has("request", "scheme") {
		s(in.Scheme)
	}
	if refs.has("request", "host") {
		s(in.Host)
	}
	if refs.has("request", "port") {
		dst = binary.AppendVarint(dst, int64(in.Port))
	}
	if refs.has("request", "path") {
		s(in.Path)
	}
	if refs.has("request", "query") {
		for _, k := range sortedKeys(in.Query) {
			s(k)
			dst = binary.AppendUvarint(dst, uint64(len(in.Query[k])))
			for _, v := range in.Query[k] {
				s(v)
			}
		}
		s("")
	}
	if refs.has("request", "headers") {
		for _, k := range sortedKeys(in.Headers) {
			s(k)
			s(in.Headers[k])
		}
		s("")
	}
	if refs.has("purpose") {
		s(in.Purpose)
	}
	if refs.has("subject", "id") {
		s(in.Subject)
	}
	if refs.has("subject", "gpc") {
		if in.GPC {
			s("1")
		} else {
			s("0")
		}
	}
	if refs.has("subject", "consents") {
		dst = binary.AppendUvarint(dst, uint64(len(in.Consents)))
		for _, c := range in.Consents {
			s(c.Purpose)
			s(c.Status)
			s(c.Time.UTC().Format(time.RFC3339Nano))
			s(c.Evidence.Action)
			s(c.Evidence.Where)
			s(c.Evidence.PolicyVersion)
		}
	}
	if refs.has("subject", "consents_error") {
		s(in.ConsentErr)
	}
	if refs.has("legal_basis") {
		s(in.LegalBasis)
	}
	if refs.has("requester") {
		s(in.Requester)
	}
	if refs.has("approver") {
		s(in.Approver)
	}
	if refs.has("source", "service") {
		s(in.Service)
	}
	return dst
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
