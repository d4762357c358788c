package charts

import (
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
)

// renderNotes is what `helm install` prints after installing the chart
// with these values: NOTES.txt rendered.
func renderNotes(t *testing.T, files, sets []string) string {
	t.Helper()
	for i, f := range files {
		files[i] = "testdata/values/" + f
	}
	vals, err := userValues(files, sets)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := loader.Load("pare")
	if err != nil {
		t.Fatal(err)
	}
	opts := common.ReleaseOptions{Name: "demo", Namespace: "shop", Revision: 1, IsInstall: true}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals, opts, common.DefaultCapabilities, false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatal(err)
	}
	return out["pare/templates/NOTES.txt"]
}

// TestNotes: what the operator is told at install time about the choices
// that weaken the guarantee or need something of the pod. A pod that leaves
// the restricted Pod Security Standard, or a DSN that may go unencrypted,
// must never be silent.
func TestNotes(t *testing.T) {
	const (
		noNetpol  = "networkPolicy.enabled is false"
		emptyDir  = "ledger is on an emptyDir"
		noHMAC    = "no hmacKeySecret"
		fsGroup   = "fsGroup: 65532"
		leavesPSS = `does not meet
the "restricted"`
		cniRedirect = "your CNI plugin or mesh must redirect"
		noBundleCA  = "runs without drop-in until it restarts"
		sslmode     = "does not say sslmode=verify-full"
		envoyProbe  = "Envoy mode: Envoy (envoyproxy/envoy-distroless:v1.37.0) listens on 127.0.0.1:15001"
	)
	tests := []struct {
		name       string
		files      []string
		sets       []string
		want, not_ []string
	}{
		{"default", nil, nil, []string{noNetpol, emptyDir, noHMAC}, []string{fsGroup, leavesPSS, cniRedirect, sslmode}},
		{"dropin", []string{"dropin.yaml"}, nil, []string{fsGroup}, []string{emptyDir, noHMAC, leavesPSS}},
		{"fleet", []string{"fleet.yaml"}, nil, []string{fsGroup}, []string{noNetpol, noBundleCA, sslmode}},
		{"fleet with a generated CA", []string{"fleet.yaml"}, []string{"dropIn.caSecret.name="}, []string{noBundleCA}, nil},
		{"unverified DSN", []string{"fleet.yaml"}, []string{"consent.dsn=postgres://pare@db.svc/pare?sslmode=require"},
			[]string{"consent.dsn " + sslmode}, []string{"ledger.sink.dsn " + sslmode}},
		{"envoy", []string{"envoy.yaml"}, nil, []string{envoyProbe, fsGroup}, []string{leavesPSS}},
		{"transparent iptables", []string{"transparent.yaml"}, nil, []string{leavesPSS}, []string{cniRedirect}},
		{"transparent external", []string{"transparent.yaml"}, []string{"dropIn.transparent.redirect=external"},
			[]string{cniRedirect + " the app's\nTCP 443 there"}, []string{leavesPSS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			notes := renderNotes(t, tt.files, tt.sets)
			for _, w := range tt.want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES.txt does not say %q:\n%s", w, notes)
				}
			}
			for _, w := range tt.not_ {
				if strings.Contains(notes, w) {
					t.Errorf("NOTES.txt says %q, which does not apply:\n%s", w, notes)
				}
			}
		})
	}
}
