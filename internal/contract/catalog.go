package contract

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/gobwas/glob"
)

// Catalog answers, for a loaded set of contracts, what a recorded disclosure was: which route a
// request took and what each thing it sent is. The privacy office's documents are built from it;
// it is read-only once built and safe for concurrent use.
type Catalog struct {
	vendors []string
	entries map[string]*entry
}

type entry struct {
	c      *Contract
	sends  []string
	items  map[string]Item // by key
	routes []*glob.Pattern
}

// NewCatalog indexes contracts (as LoadDir or LoadFS return them). Route paths are compiled with
// the glob library OPA's glob.match uses, with "/" as the delimiter, so a route matches here
// exactly the requests it matches in the policy.
func NewCatalog(contracts map[string]*Contract) (*Catalog, error) {
	k := &Catalog{entries: make(map[string]*entry, len(contracts))}
	for id, c := range contracts {
		e := &entry{c: c, sends: c.Sends(), items: map[string]Item{}}
		for _, key := range e.sends {
			e.items[key] = c.Item(key)
		}
		for i, r := range c.Routes {
			g, err := glob.Compile(r.Path, '/')
			if err != nil {
				return nil, fmt.Errorf("contract %s: route %d path %q: %w", id, i+1, r.Path, err)
			}
			e.routes = append(e.routes, g)
		}
		k.entries[id] = e
		k.vendors = append(k.vendors, id)
	}
	sort.Strings(k.vendors)
	return k, nil
}

// Vendors lists the vendor ids, sorted.
func (k *Catalog) Vendors() []string { return slices.Clone(k.vendors) }

// Contract returns the vendor's contract, or nil.
func (k *Catalog) Contract(vendor string) *Contract {
	if e := k.entries[vendor]; e != nil {
		return e.c
	}
	return nil
}

// Sends lists what the vendor's contract lets out (see Contract.Sends); nil for an unknown vendor.
func (k *Catalog) Sends(vendor string) []string {
	if e := k.entries[vendor]; e != nil {
		return e.sends
	}
	return nil
}

// Route returns the index of the route a request takes (the first whose methods hold method and
// whose path glob matches path, as in the policy), or -1. The ledger records a disclosure's path
// as its route's pattern (never the concrete path, which can hold ids and personal data), so a
// path equal to a route's pattern is that route — "/api/v2/tickets{,.json}" does not match its
// own glob.
func (k *Catalog) Route(vendor, method, path string) int {
	e := k.entries[vendor]
	if e == nil {
		return -1
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	method = strings.ToUpper(method)
	for i, r := range e.c.Routes {
		if slices.Contains(r.Methods, method) && (r.Path == path || e.routes[i].Match(path)) {
			return i
		}
	}
	return -1
}

// Item says what a recorded path sent to vendor is (see Contract.Item). An unknown vendor or
// path gives an Item with an empty Key (but the query:/header:/body: kind kept).
func (k *Catalog) Item(vendor, recorded string) Item {
	e := k.entries[vendor]
	if e == nil {
		return (&Contract{}).Item(recorded)
	}
	if it, ok := e.items[recorded]; ok {
		return it
	}
	return e.c.Item(recorded)
}

// Sent lists what a disclosure carried as the contract names it: the recorded paths, and the
// "body:" key of the route when the route is opaque (the ledger records no fields for a body Pare
// forwards unparsed, yet that body left).
func (k *Catalog) Sent(vendor, method, path string, recorded []string) []string {
	out := slices.Clone(recorded)
	if i := k.Route(vendor, method, path); i >= 0 {
		if r := k.entries[vendor].c.Routes[i]; r.Body == BodyOpaque {
			out = append(out, BodyPrefix+r.Path)
		}
	}
	return out
}
