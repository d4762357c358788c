package consent

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
)

func TestLatest(t *testing.T) {
	a := func(purpose, status, at, action string) Consent {
		return Consent{Purpose: purpose, Status: status, Time: ts(at), Evidence: Evidence{Action: action}}
	}
	tests := []struct {
		name   string
		events []Consent
		want   []Consent
	}{
		{"none", nil, []Consent{}},
		{"later withdrawal wins",
			[]Consent{a("m", "granted", "2026-10-01T00:00:00Z", "x"), a("m", "withdrawn", "2026-11-01T00:00:00Z", "")},
			[]Consent{a("m", "withdrawn", "2026-11-01T00:00:00Z", "")}},
		{"later grant wins, whatever the order",
			[]Consent{a("m", "granted", "2026-12-01T00:00:00Z", "again"), a("m", "withdrawn", "2026-11-01T00:00:00Z", "")},
			[]Consent{a("m", "granted", "2026-12-01T00:00:00Z", "again")}},
		{"tie: withdrawal wins either way round",
			[]Consent{a("m", "withdrawn", "2026-10-01T00:00:00Z", ""), a("m", "granted", "2026-10-01T00:00:00Z", "x")},
			[]Consent{a("m", "withdrawn", "2026-10-01T00:00:00Z", "")}},
		{"tie of equal statuses: the later in order wins",
			[]Consent{a("m", "granted", "2026-10-01T00:00:00Z", "first"), a("m", "granted", "2026-10-01T00:00:00Z", "second")},
			[]Consent{a("m", "granted", "2026-10-01T00:00:00Z", "second")}},
		{"one per purpose, sorted",
			[]Consent{a("z", "granted", "2026-10-01T00:00:00Z", "x"), a("b", "withdrawn", "2026-10-01T00:00:00Z", ""), a("z", "granted", "2026-09-01T00:00:00Z", "old")},
			[]Consent{a("b", "withdrawn", "2026-10-01T00:00:00Z", ""), a("z", "granted", "2026-10-01T00:00:00Z", "x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := latest(tt.events); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("latest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNoneAndStatic(t *testing.T) {
	ctx := context.Background()
	got, err := None{}.Lookup(ctx, "u-1")
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("None.Lookup = %#v, %v; want empty, nil", got, err)
	}
	s := Static{"u-1": {granted, withdrawn}}
	if got, _ := s.Lookup(ctx, "u-1"); !reflect.DeepEqual(got, []Consent{withdrawn}) {
		t.Errorf("Static.Lookup = %+v", got)
	}
	if got, _ := s.Lookup(ctx, "u-2"); got == nil || len(got) != 0 {
		t.Errorf("Static.Lookup(unknown) = %#v, want empty", got)
	}
}

// TestConsentJSON pins the shape the policy sees in input.subject.consents (DEVELOPERS.md).
func TestConsentJSON(t *testing.T) {
	got, err := json.Marshal([]Consent{granted})
	if err != nil {
		t.Fatal(err)
	}
	want := `[{"purpose":"marketing","status":"granted","time":"2026-10-01T10:00:00Z",` +
		`"evidence":{"action":"checked 'Send me product news'","where":"signup form /register","policy_version":"2026-09"}}]`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
	empty, _ := json.Marshal(latest(nil))
	if string(empty) != "[]" {
		t.Errorf("no consents encode as %s, want []", empty)
	}
}
