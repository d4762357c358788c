package contract

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input panics the contract parser, and a contract it accepts is one the catalog
// indexes and whose every key the catalog finds again (what the documents rely on).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	bundled, _ := filepath.Glob("../../policies/contracts/*.yaml")
	for _, file := range append(files, bundled...) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(filepath.Base(file), b)
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		c, err := Parse(name, data)
		if err != nil {
			return
		}
		if c == nil {
			t.Fatal("no error and no contract")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a contract Validate rejects: %v", err)
		}
		k, err := NewCatalog(map[string]*Contract{c.ID: c})
		if err != nil {
			t.Fatalf("an accepted contract does not index: %v", err)
		}
		for _, key := range c.Sends() {
			if got := k.Item(c.ID, key).Key; got != key {
				t.Fatalf("Item(%q).Key = %q", key, got)
			}
		}
		for _, r := range c.Routes {
			_ = k.Route(c.ID, "GET", r.Path)
		}
	})
}

// FuzzItem: any recorded path resolves to nothing or to a key the contract sends.
func FuzzItem(f *testing.F) {
	cs, err := LoadDir("../../policies/contracts")
	if err != nil {
		f.Fatal(err)
	}
	k, err := NewCatalog(cs)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"email", "attendees/*/email", "attendees/7/first_name", "header:accept", "query:x",
		"body:/recordings/**", "metadata/crm_id/x", "", "/", "*/*/*", "events/*/attendee_ref"} {
		f.Add("eventbrite", s)
		f.Add("sister", s)
	}
	f.Fuzz(func(t *testing.T, vendor, recorded string) {
		it := k.Item(vendor, recorded)
		if it.Key == "" || it.Key == recorded {
			return
		}
		c := k.Contract(vendor)
		if c == nil {
			t.Fatalf("unknown vendor %q resolved %q to %q", vendor, recorded, it.Key)
		}
		found := false
		for _, s := range c.Sends() {
			found = found || s == it.Key
		}
		if !found {
			t.Fatalf("%s: %q resolved to %q, which the contract does not send", vendor, recorded, it.Key)
		}
	})
}
