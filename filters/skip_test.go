package filters

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

// sameErrors checks that a removed subtree (validated by skipValue) is
// accepted or rejected exactly as a kept one (walked by value), with the
// same error.
func sameErrors(t *testing.T, keepAll, dropAll *Mask, doc []byte) {
	t.Helper()
	opt := &Options{Cards: CardsAllow}
	_, _, stepsKeep, errKeep := keepAll.jsonCounted(nil, doc, opt)
	_, _, stepsDrop, errDrop := dropAll.jsonCounted(nil, doc, opt)
	if budget := stepBudget(len(doc)); stepsKeep > budget || stepsDrop > budget {
		t.Fatalf("%d bytes: %d steps keeping, %d removing, over the budget of %d", len(doc), stepsKeep, stepsDrop, budget)
	}
	if errKeep == nil && errDrop == ErrNotContainer || errKeep == ErrNotContainer && errDrop == nil {
		t.Fatalf("%q: keep-all %v, drop-all %v", doc, errKeep, errDrop)
	}
	if (errKeep == nil) != (errDrop == nil) || errKeep != nil && errKeep.Error() != errDrop.Error() {
		t.Fatalf("%q:\nkeep-all: %v\ndrop-all: %v", doc, errKeep, errDrop)
	}
}

func skipMasks(t testing.TB) (keepAll, dropAll *Mask) {
	keepAll, err := Compile([]string{"*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// "zzz" is not in any document below, so every member is removed
	// and every container below the root goes through skipValue.
	dropAll, err = Compile([]string{"zzz"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keepAll, dropAll
}

func TestSkipSameErrors(t *testing.T) {
	keepAll, dropAll := skipMasks(t)
	var docs [][]byte
	for _, name := range []string{"checkout.json", "attendees.json", "ticket.json"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, []byte(`{"w":`+string(b)+`}`), []byte(`[`+string(b)+`]`))
	}
	deep := [][]byte{
		[]byte(`{"a":` + strings.Repeat(`[`, maxDepth) + strings.Repeat(`]`, maxDepth) + `}`),
		[]byte(`{"a":` + strings.Repeat(`[`, maxDepth-1) + strings.Repeat(`]`, maxDepth-1) + `}`),
		[]byte(`{"a":` + strings.Repeat(`{"b":`, maxDepth-1) + `1` + strings.Repeat(`}`, maxDepth-1) + `}`),
	}
	for _, doc := range deep {
		sameErrors(t, keepAll, dropAll, doc)
	}
	docs = append(docs,
		[]byte(`{"a":{"b":[{"k":1,"k":2}]}}`),
		[]byte(`{"a":{"\u006b":1,"k":2}}`),
		[]byte(`{"a":[1,2,]}`),
		[]byte(`{"a":{"b":tru}}`),
		[]byte(`{"a":{"b":"\x"}}`),
		[]byte("{\"a\":{\"b\":\"\xff\"}}"),
		[]byte(`{"a":{"b":01}}`),
	)
	for _, doc := range docs {
		sameErrors(t, keepAll, dropAll, doc)
		// Truncations and a few byte substitutions, at every offset of
		// small documents and at a sample of offsets of large ones.
		step := max(1, len(doc)/1000)
		for i := 0; i < len(doc); i += step {
			sameErrors(t, keepAll, dropAll, doc[:i])
			for _, c := range []byte{'"', '\\', '}', ']', ',', ':', 0x01, 0xc3} {
				mut := bytes.Clone(doc)
				mut[i] = c
				sameErrors(t, keepAll, dropAll, mut)
			}
		}
	}
}

// TestSkipDeepErrorLinear guards against a removed, deeply nested body in
// error being rescanned once per level when its error is described.
func TestSkipDeepErrorLinear(t *testing.T) {
	_, dropAll := skipMasks(t)
	doc := []byte(`{"a":` + strings.Repeat(`[`, maxDepth-2) + strings.Repeat(` `, 1<<20) + `x`)
	start := time.Now()
	_, _, steps, err := dropAll.jsonCounted(nil, doc, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	// The count, which does not depend on the machine's load: each byte
	// is scanned twice (the failed skip, then the walk that describes the
	// error).
	if steps > 2*len(doc)+stepsConst {
		t.Fatalf("%d steps for %d bytes", steps, len(doc))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func FuzzJSONSkip(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[{"k":1,"k":2}]}}`))
	f.Add([]byte(`{"a":[1,{"x":"\u00e9"},null,true,-1.5e3]}`))
	keepAll, dropAll := skipMasks(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		sameErrors(t, keepAll, dropAll, doc)
	})
}
