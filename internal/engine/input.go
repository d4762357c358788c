package engine

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"sort"
	"strings"
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

// The input's keys, shared by every input built (terms are never modified
// once built, by the engine or by OPA).
var (
	kRequest, kMethod, kScheme, kHost         = str("request"), str("method"), str("scheme"), str("host")
	kPort, kPath, kQuery, kHeaders            = str("port"), str("path"), str("query"), str("headers")
	kPurpose, kSubject, kID, kGPC             = str("purpose"), str("subject"), str("id"), str("gpc")
	kConsents, kConsentsError, kStatus, kTime = str("consents"), str("consents_error"), str("status"), str("time")
	kEvidence, kAction, kWhere, kPolicyVer    = str("evidence"), str("action"), str("where"), str("policy_version")
	kLegalBasis, kRequester, kApprover        = str("legal_basis"), str("requester"), str("approver")
	kSource, kService, kBody                  = str("source"), str("service"), str("body")
)

// fullPlan reads everything: the input as documented, for MarshalJSON and
// for policies that read input as a whole.
var fullPlan = keyPlan{
	method: true, scheme: true, host: true, port: true, path: true, purpose: true,
	subject: true, gpc: true, consentsErr: true, legalBasis: true, requester: true, approver: true, service: true,
	query: mapPlan{whole: true}, headers: mapPlan{whole: true},
	consents: true, cPurpose: true, cStatus: true, cTime: true, cAction: true, cWhere: true, cPolicyVersion: true,
}

// value builds the policy input directly as an OPA value: handing OPA a Go
// struct would round-trip it through encoding/json on every request. Only
// what plan says the policy reads is built (nil: everything): the policy
// cannot tell the difference, and the rest would be built for nothing.
func (in *Input) value(body ast.Value, plan *keyPlan) ast.Value {
	k := plan
	if k == nil {
		k = &fullPlan
	}
	obj := ast.NewObjectWithCapacity(8)
	req := ast.NewObjectWithCapacity(7)
	if k.method {
		req.Insert(kMethod, str(in.Method))
	}
	if k.scheme {
		req.Insert(kScheme, str(in.Scheme))
	}
	if k.host {
		req.Insert(kHost, str(in.Host))
	}
	if k.port {
		req.Insert(kPort, ast.InternedTerm(in.Port))
	}
	if k.path {
		req.Insert(kPath, str(in.Path))
	}
	if k.query.whole {
		req.Insert(kQuery, ast.NewTerm(stringsMap(in.Query)))
	} else if len(k.query.names) > 0 {
		q := ast.NewObjectWithCapacity(len(k.query.names))
		for _, name := range k.query.names {
			if vs, ok := in.Query[name]; ok {
				q.Insert(str(name), stringsTerm(vs))
			}
		}
		req.Insert(kQuery, ast.NewTerm(q))
	}
	if k.headers.whole {
		req.Insert(kHeaders, ast.NewTerm(stringMap(in.Headers)))
	} else if len(k.headers.names) > 0 {
		h := ast.NewObjectWithCapacity(len(k.headers.names))
		for _, name := range k.headers.names {
			if v, ok := in.Headers[name]; ok {
				h.Insert(str(name), str(v))
			}
		}
		req.Insert(kHeaders, ast.NewTerm(h))
	}
	if req.Len() > 0 {
		obj.Insert(kRequest, ast.NewTerm(req))
	}
	if k.purpose {
		obj.Insert(kPurpose, str(in.Purpose))
	}
	subject := ast.NewObjectWithCapacity(4)
	if k.subject {
		subject.Insert(kID, str(in.Subject))
	}
	if k.gpc {
		subject.Insert(kGPC, ast.InternedTerm(in.GPC))
	}
	if k.consents {
		consents := make([]*ast.Term, len(in.Consents))
		for i := range in.Consents {
			consents[i] = ast.NewTerm(in.Consents[i].value(k))
		}
		subject.Insert(kConsents, ast.ArrayTerm(consents...))
	}
	if k.consentsErr {
		subject.Insert(kConsentsError, str(in.ConsentErr))
	}
	if subject.Len() > 0 {
		obj.Insert(kSubject, ast.NewTerm(subject))
	}
	if k.legalBasis {
		obj.Insert(kLegalBasis, str(in.LegalBasis))
	}
	if k.requester {
		obj.Insert(kRequester, str(in.Requester))
	}
	if k.approver {
		obj.Insert(kApprover, str(in.Approver))
	}
	if k.service {
		obj.Insert(kSource, ast.ObjectTerm(ast.Item(kService, str(in.Service))))
	}
	if body != nil {
		obj.Insert(kBody, ast.NewTerm(body))
	}
	return obj
}

func (c *Consent) value(k *keyPlan) ast.Object {
	o := ast.NewObjectWithCapacity(4)
	if k.cPurpose {
		o.Insert(kPurpose, str(c.Purpose))
	}
	if k.cStatus {
		o.Insert(kStatus, str(c.Status))
	}
	if k.cTime {
		o.Insert(kTime, str(c.Time.UTC().Format(time.RFC3339)))
	}
	if k.cAction || k.cWhere || k.cPolicyVersion {
		ev := ast.NewObjectWithCapacity(3)
		if k.cAction {
			ev.Insert(kAction, str(c.Evidence.Action))
		}
		if k.cWhere {
			ev.Insert(kWhere, str(c.Evidence.Where))
		}
		if k.cPolicyVersion {
			ev.Insert(kPolicyVer, str(c.Evidence.PolicyVersion))
		}
		o.Insert(kEvidence, ast.NewTerm(ev))
	}
	return o
}

func stringsTerm(vs []string) *ast.Term {
	arr := make([]*ast.Term, len(vs))
	for i, v := range vs {
		arr[i] = str(v)
	}
	return ast.ArrayTerm(arr...)
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
		o.Insert(str(k), stringsTerm(vs))
	}
	return o
}

// MarshalJSON renders the input as the policy sees it (without a body), for
// `proxy explain` and tests.
func (in *Input) MarshalJSON() ([]byte, error) {
	v, err := ast.JSON(in.value(nil, nil))
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// keyPlan says which parts of an Input go into a decision cache key: those
// the compiled policy reads (inputRefs), and nothing else. Request ids in
// headers, subject ids, consent times and evidence that the policy never
// reads stay out of the key, which is what makes the cache hit on real
// traffic.
type keyPlan struct {
	method, scheme, host, port, path, purpose bool
	subject, gpc, consentsErr                 bool
	legalBasis, requester, approver, service  bool
	query, headers                            mapPlan
	consents                                  bool
	cPurpose, cStatus, cTime                  bool
	cAction, cWhere, cPolicyVersion           bool
}

// mapPlan: the whole map, or the values of some names only.
type mapPlan struct {
	whole bool
	names []string
}

func newKeyPlan(r inputRefs) keyPlan {
	k := keyPlan{
		method:      r.reads("request", "method"),
		scheme:      r.reads("request", "scheme"),
		host:        r.reads("request", "host"),
		port:        r.reads("request", "port"),
		path:        r.reads("request", "path"),
		purpose:     r.reads("purpose"),
		subject:     r.reads("subject", "id"),
		gpc:         r.reads("subject", "gpc"),
		consentsErr: r.reads("subject", "consents_error"),
		legalBasis:  r.reads("legal_basis"),
		requester:   r.reads("requester"),
		approver:    r.reads("approver"),
		service:     r.reads("source", "service"),
		query:       mapPlanFor(r, "query"),
		headers:     mapPlanFor(r, "headers"),
	}
	c := func(leaf ...string) bool { return r.reads(append([]string{"subject", "consents", "*"}, leaf...)...) }
	k.cPurpose, k.cStatus, k.cTime = c("purpose"), c("status"), c("time")
	k.cAction, k.cWhere, k.cPolicyVersion = c("evidence", "action"), c("evidence", "where"), c("evidence", "policy_version")
	k.consents = r.reads("subject", "consents")
	return k
}

// describe lists the input paths in the key, for CacheKey.
func (k *keyPlan) describe() string {
	out := k.paths()
	if len(out) == 0 {
		return "nothing (every request is decided alike)"
	}
	return strings.Join(out, ", ")
}

// paths lists the input paths in the key.
func (k *keyPlan) paths() []string {
	var out []string
	add := func(on bool, name string) {
		if on {
			out = append(out, name)
		}
	}
	add(k.method, "request.method")
	add(k.scheme, "request.scheme")
	add(k.host, "request.host")
	add(k.port, "request.port")
	add(k.path, "request.path")
	add(k.query.whole, "request.query")
	for _, n := range k.query.names {
		out = append(out, "request.query."+n)
	}
	add(k.headers.whole, "request.headers")
	for _, n := range k.headers.names {
		out = append(out, "request.headers."+n)
	}
	add(k.purpose, "purpose")
	add(k.subject, "subject.id")
	add(k.gpc, "subject.gpc")
	if k.consents {
		var fs []string
		for _, f := range []struct {
			on   bool
			name string
		}{{k.cPurpose, "purpose"}, {k.cStatus, "status"}, {k.cTime, "time"}, {k.cAction, "evidence.action"}, {k.cWhere, "evidence.where"}, {k.cPolicyVersion, "evidence.policy_version"}} {
			if f.on {
				fs = append(fs, f.name)
			}
		}
		out = append(out, "subject.consents[]("+strings.Join(fs, ", ")+")")
	}
	add(k.consentsErr, "subject.consents_error")
	add(k.legalBasis, "legal_basis")
	add(k.requester, "requester")
	add(k.approver, "approver")
	add(k.service, "source.service")
	return out
}

func mapPlanFor(r inputRefs, name string) mapPlan {
	if !r.reads("request", name) {
		return mapPlan{}
	}
	if r.all {
		return mapPlan{whole: true}
	}
	var names []string
	for _, p := range r.paths {
		if !overlaps(p, []string{"request", name}) {
			continue
		}
		if len(p) < 3 || p[0] == "*" || p[1] == "*" || p[2] == "*" {
			return mapPlan{whole: true}
		}
		names = append(names, p[2])
	}
	slices.Sort(names)
	return mapPlan{names: slices.Compact(names)}
}

// appendKey writes the parts of the input the plan names into dst, each
// length-prefixed so that no two inputs share a key. The path is left out
// when withPath is false: the caller keys on what the policy derives from
// it instead (see analysis.pathKey).
func (in *Input) appendKey(dst []byte, k *keyPlan, withPath bool) []byte {
	s := func(v string) {
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	b := func(v bool) {
		if v {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	}
	if k.method {
		s(in.Method)
	}
	if k.scheme {
		s(in.Scheme)
	}
	if k.host {
		s(in.Host)
	}
	if k.port {
		dst = binary.AppendVarint(dst, int64(in.Port))
	}
	if k.path && withPath {
		s(in.Path)
	}
	if k.query.whole {
		for _, key := range sortedKeys(in.Query) {
			s(key)
			dst = binary.AppendUvarint(dst, uint64(len(in.Query[key])))
			for _, v := range in.Query[key] {
				s(v)
			}
		}
		s("")
	}
	for _, name := range k.query.names {
		vs, ok := in.Query[name]
		b(ok)
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			s(v)
		}
	}
	if k.headers.whole {
		for _, key := range sortedKeys(in.Headers) {
			s(key)
			s(in.Headers[key])
		}
		s("")
	}
	for _, name := range k.headers.names {
		v, ok := in.Headers[name]
		b(ok)
		s(v)
	}
	if k.purpose {
		s(in.Purpose)
	}
	if k.subject {
		s(in.Subject)
	}
	if k.gpc {
		b(in.GPC)
	}
	if k.consents {
		dst = binary.AppendUvarint(dst, uint64(len(in.Consents)))
		for i := range in.Consents {
			c := &in.Consents[i]
			if k.cPurpose {
				s(c.Purpose)
			}
			if k.cStatus {
				s(c.Status)
			}
			if k.cTime {
				dst = c.Time.UTC().AppendFormat(dst, time.RFC3339)
				dst = append(dst, 0)
			}
			if k.cAction {
				s(c.Evidence.Action)
			}
			if k.cWhere {
				s(c.Evidence.Where)
			}
			if k.cPolicyVersion {
				s(c.Evidence.PolicyVersion)
			}
		}
	}
	if k.consentsErr {
		s(in.ConsentErr)
	}
	if k.legalBasis {
		s(in.LegalBasis)
	}
	if k.requester {
		s(in.Requester)
	}
	if k.approver {
		s(in.Approver)
	}
	if k.service {
		s(in.Service)
	}
	return dst
}

// appendValue writes v to dst so that distinct values never share bytes:
// a type tag, then length-prefixed content.
func appendValue(dst []byte, t *ast.Term) []byte {
	if t == nil {
		return append(dst, 'u') // undefined
	}
	switch v := t.Value.(type) {
	case ast.Null:
		return append(dst, 'n')
	case ast.Boolean:
		if v {
			return append(dst, 't')
		}
		return append(dst, 'f')
	case ast.Number:
		dst = append(dst, '#')
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		return append(dst, v...)
	case ast.String:
		dst = append(dst, 's')
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		return append(dst, v...)
	case *ast.Array:
		dst = append(dst, '[')
		dst = binary.AppendUvarint(dst, uint64(v.Len()))
		for i := range v.Len() {
			dst = appendValue(dst, v.Elem(i))
		}
		return dst
	case ast.Object:
		dst = append(dst, '{')
		dst = binary.AppendUvarint(dst, uint64(v.Len()))
		v.Foreach(func(k, x *ast.Term) {
			dst = appendValue(dst, k)
			dst = appendValue(dst, x)
		})
		return dst
	case ast.Set:
		dst = append(dst, '<')
		dst = binary.AppendUvarint(dst, uint64(v.Len()))
		sorted := v.Sorted()
		for i := range sorted.Len() {
			dst = appendValue(dst, sorted.Elem(i))
		}
		return dst
	}
	// Not a value a rule produces; its text, tagged, keeps it distinct.
	str := t.Value.String()
	dst = append(dst, '?')
	dst = binary.AppendUvarint(dst, uint64(len(str)))
	return append(dst, str...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
