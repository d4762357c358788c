package filters

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

// cardFuzzSeeds are inputs that put the detector's edges next to each
// other: windows across groups and glued digits, zero padding, long runs
// where every digit starts a group, gap limits, UTF-16, truncated UTF-8.
var cardFuzzSeeds = []string{
	"4111 1111 1111 1111 123",
	"41111111111111111229123",
	"000000000000000000004111111111111111",
	"4111 1111 1111 111 0004111111111111111",
	"4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2",
	"42424242424242424111111111111111",
	"4111    1111    1111    1111     4111",
	"4\x001\x001\x001\x00 \x00-\x00 \x001\x001\x001\x001\x00",
	"４１１１　１１１１　１１１１　１１１１\xef\xbc",
	"4111\u200b\u200b\u200b\u200b\u200b\u200b1111 1111 1111",
	"6200000000000000000 6222 8345 9845 5514 397",
	"3782 822463 10005 3056 930902 5904",
}

func FuzzCardDetect(f *testing.F) {
	for _, s := range cardFuzzSeeds {
		f.Add([]byte(s))
	}
	for _, s := range loadCardCorpus(f) {
		f.Add(s.payload())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<12 {
			return // the reference is slow; length adds nothing the seeds lack
		}
		checkAgainstReference(t, string(b))
	})
}

func FuzzCardWriter(f *testing.F) {
	for i, s := range cardFuzzSeeds {
		f.Add([]byte(s), uint64(i))
	}
	for i, s := range loadCardCorpus(f) {
		if i%4 == 0 {
			f.Add(s.payload(), uint64(i))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, cutSeed uint64) {
		r := rand.New(rand.NewPCG(cutSeed, uint64(len(b))))
		checkWriter(t, b, randomCuts(r, len(b)))
	})
}

func FuzzCardJSONNumber(f *testing.F) {
	for _, s := range []string{"4.111111111111111e15", "4111111111111111.0", "41111111111111110e-1",
		"453201511283036e1", "-62751112.606756849610", "0.00041111111111111111e19", "1e400"} {
		f.Add(s)
	}
	r := rand.New(rand.NewPCG(2, 2))
	for range 64 {
		f.Add(randomJSONNumber(r))
	}
	f.Fuzz(func(t *testing.T, lit string) {
		var n json.Number
		if len(lit) > 200 || json.Unmarshal([]byte(lit), &n) != nil || string(n) != lit {
			return
		}
		if i := strings.IndexAny(lit, "eE"); i >= 0 && len(strings.TrimLeft(lit[i+1:], "+-0")) > 3 {
			return // the reference writes the value out in full
		}
		if got, want := numberHasCard([]byte(lit)), refNumberHasCard(lit); got != want {
			t.Fatalf("numberHasCard(%s) = %v, reference %v", lit, got, want)
		}
	})
}
