package ledgerdb

import (
	"testing"

	"github.com/pare-dev/pare/internal/pgtest"
)

// The tests with a real PostgreSQL share servers: starting one is most of
// a test's time on a small machine. Each subtest works in a database of
// its own; the ones that stop and restart the server share another one,
// one after the other. Run one with, for example,
// go test ./internal/ledgerdb -run 'TestPostgres/Retention'.

func TestPostgres(t *testing.T) {
	srv := pgtest.Start(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *pgtest.Server)
	}{
		{"ShipSeveralInstances", testShipSeveralInstances},
		{"ShipResumes", testShipResumes},
		{"ShipStops", testShipStops},
		{"TwoShippersOneLedger", testTwoShippersOneLedger},
		{"Migrate", testMigrate},
		{"VerifyDetectsTampering", testVerifyDetectsTampering},
		{"FleetQueryIsTheUnionOfLocalQueries", testFleetQueryIsTheUnionOfLocalQueries},
		{"FleetScaleQuick", func(t *testing.T, srv *pgtest.Server) { testFleetScale(t, srv, quickScale) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, srv)
		})
	}
}

// TestPostgresOutage: the tests that stop the server under the shipper.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	srv := pgtest.Start(t)
	t.Run("ShipThroughDatabaseRestart", func(t *testing.T) { testShipThroughDatabaseRestart(t, srv) })
	t.Run("Retention", func(t *testing.T) { testRetention(t, srv) })
}
