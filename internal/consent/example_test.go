package consent_test

import (
	"context"
	"fmt"

	"github.com/pare-dev/pare/internal/consent"
)

// The file keeps a history; Lookup returns the current state per purpose.
func ExampleOpenFile() {
	src, err := consent.OpenFile("testdata/consents.yaml", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	cs, err := src.Lookup(context.Background(), "u-123")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range cs {
		fmt.Println(c.Purpose, c.Status, c.Time.Format("2006-01-02"), c.Evidence.Action)
	}
	// Output:
	// analytics granted 2026-10-01 accepted analytics cookies
	// marketing withdrawn 2026-11-01 clicked unsubscribe
}
