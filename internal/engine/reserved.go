package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"

	"github.com/pare-dev/pare/internal/contract"
)

// Two top-level documents of data have one source each, and no other policy
// file may add to them:
//
//   - data.contracts: the files directly in contracts/, each of which
//     internal/contract validates. OPA's loader would also merge into it a
//     data file at the top of the directory holding a "contracts" key, and a
//     Rego module of package contracts would define part of it; either way
//     the policy would honour a vendor, or a widened contract, that
//     validation never saw.
//   - data.pare: what the engine gives the policy (LoadOptions.Data), such
//     as the identity provider's keys; a policy file that defined it could
//     stand in for them.
const (
	reservedContracts = "contracts"
	reservedEngine    = "pare"
)

// checkReserved refuses, naming each file, every policy file that would
// define part of a reserved document, and then checks that data.contracts
// is exactly what OPA's loader makes of the contract files alone: whatever
// way into it the first check does not know of is refused too.
func checkReserved(fsys fs.FS, l *loaded) error {
	var errs []error
	reserved := func(seg string) string {
		switch seg {
		case reservedContracts:
			return "data.contracts holds only the contracts in contracts/, each validated"
		case reservedEngine:
			return "data.pare is provided by Pare itself (its configuration), not by policy files"
		}
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(l.res.Modules)) {
		m := l.res.Modules[name].Parsed
		if m == nil || len(m.Package.Path) < 2 {
			continue
		}
		seg, _ := m.Package.Path[1].Value.(ast.String)
		if why := reserved(string(seg)); why != "" {
			errs = append(errs, fmt.Errorf("%s:%d: package %s: %s", name, m.Package.Location.Row, m.Package.Path, why))
		}
	}
	for _, name := range l.files {
		if path.Ext(name) == ".rego" {
			continue
		}
		dir := path.Dir(name)
		switch {
		case dir == reservedContracts:
			// A contract: validated by internal/contract.
		case dir == ".":
			// Loaded at the root of data: its top-level keys are documents.
			res, err := loader.NewFileLoader().WithFS(fsys).WithRegoVersion(ast.RegoV1).All([]string{name})
			if err != nil {
				return fmt.Errorf("load policies: %w", err)
			}
			for _, k := range slices.Sorted(maps.Keys(res.Documents)) {
				if why := reserved(k); why != "" {
					errs = append(errs, fmt.Errorf("%s: defines data.%s: %s", name, k, why))
				}
			}
		default:
			top, _, _ := strings.Cut(dir, "/")
			if why := reserved(top); why != "" {
				errs = append(errs, fmt.Errorf("%s: loaded under data.%s: %s", name, strings.ReplaceAll(dir, "/", "."), why))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	only, err := loader.NewFileLoader().WithFS(fsys).WithRegoVersion(ast.RegoV1).Filtered([]string{"."},
		func(name string, info fs.FileInfo, depth int) bool {
			if info.IsDir() {
				return depth > 0 && name != reservedContracts
			}
			return path.Dir(name) != reservedContracts || !slices.Contains(contract.Extensions, path.Ext(name)) ||
				!policyFile(name, false)
		})
	if err != nil {
		return fmt.Errorf("load contracts: %w", err)
	}
	if !reflect.DeepEqual(only.Documents[reservedContracts], l.res.Documents[reservedContracts]) {
		return errors.New("load policies: data.contracts is not exactly what the files in contracts/ define: some other policy file adds to it")
	}
	if _, ok := l.res.Documents[reservedEngine]; ok {
		return errors.New("load policies: a policy file defines data.pare, which Pare provides itself")
	}
	return nil
}
