package engine

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/open-policy-agent/opa/v1/tester"
)

// Test runs the Rego tests (*_test.rego) of the policies in fsys with OPA's
// tester, against the same data the engine loads.
func Test(ctx context.Context, fsys fs.FS) ([]*tester.Result, error) {
	l, err := loadFiles(fsys, true)
	if err != nil {
		return nil, err
	}
	store, err := l.res.Store()
	if err != nil {
		return nil, fmt.Errorf("load policy data: %w", err)
	}
	ch, err := tester.NewRunner().SetStore(store).SetModules(l.res.ParsedModules()).RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("run rego tests: %w", err)
	}
	var out []*tester.Result
	for r := range ch {
		out = append(out, r)
	}
	return out, nil
}
