package ledgerdb

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/pare-dev/pare/internal/ledger"
	"github.com/pare-dev/pare/internal/pgtest"
)

// VerifyDetectsTampering: what someone who can write the fleet's
// database can do to the records, each on a copy of one shipped database.
// Central verification names every one.
func testVerifyDetectsTampering(t *testing.T, srv *pgtest.Server) {
	base := newDB(t, srv, "base")
	s, v := testKey(t)
	forger, _ := testKey(t)
	var origins []string
	for range 2 {
		f := newFixture(t, s, 3000)
		f.add(0, 30) // 60 records, checkpoints every 5
		r := f.ship(t, base, nil)
		if err := f.l.Close(); err != nil {
			t.Fatal(err)
		}
		f.waitShipped(t, base)
		r.stop()
		origins = append(origins, f.l.Origin())
	}
	// Every connection to base must be gone before it is a template.
	waitNoConnections(t, srv, "base")
	a := origins[0]

	const changeMethod = `convert_to(replace(convert_from(line, 'UTF8'), '"status":200', '"status":201'), 'UTF8')`
	cases := []struct {
		name   string
		tamper func(t *testing.T, dsn string)
		want   string
	}{
		{"nothing", func(t *testing.T, dsn string) {}, ""},
		{"a record twice", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `INSERT INTO pare_ledger_records SELECT origin, seq, time + interval '1 second', kind, decision_id, subject,
				vendor, purpose, service, prev, line FROM pare_ledger_records WHERE origin = $1 AND seq = 30`, a)
		}, ProblemDuplicate},
		{"two records under one seq", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `INSERT INTO pare_ledger_records SELECT origin, seq, time + interval '1 second', kind, decision_id, 'u-0', vendor, purpose,
				service, prev, convert_to(replace(convert_from(line, 'UTF8'), '"subject":"u-', '"subject":"v-'), 'UTF8')
				FROM pare_ledger_records WHERE origin = $1 AND seq = 31`, a)
		}, ProblemFork},
		{"a record deleted", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_records WHERE origin = $1 AND seq = 30`, a)
		}, ProblemGap},
		{"the first record deleted", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_records WHERE origin = $1 AND seq = 1`, a)
		}, ProblemMissingStart},
		{"a line changed", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_records SET line = `+changeMethod+` WHERE origin = $1 AND seq = 30`, a)
		}, ProblemChanged},
		{"the last line changed", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_records SET line = `+changeMethod+` WHERE origin = $1 AND seq = 60`, a)
		}, ProblemRewritten},
		{"a subject changed in its column only (hidden from the person's report)", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_records SET subject = 'nobody' WHERE origin = $1 AND seq = 30`, a)
		}, ProblemColumns},
		{"a line changed and every later prev recomputed, head too", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_records SET line = `+changeMethod+` WHERE origin = $1 AND seq = 30`, a)
			rechainDB(t, dsn, a, 30)
		}, ProblemRewritten},
		{"the newest records cut and the head moved back", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_records WHERE origin = $1 AND seq > 52`, a)
			execSQL(t, dsn, `UPDATE pare_ledger_instances SET shipped_seq = 52,
				shipped_hash = (SELECT encode(sha256(line), 'hex') FROM pare_ledger_records WHERE origin = $1 AND seq = 52) WHERE origin = $1`, a)
		}, ProblemTruncated},
		{"the newest records and their checkpoints cut, head moved back", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_records WHERE origin = $1 AND seq > 50`, a)
			execSQL(t, dsn, `DELETE FROM pare_ledger_checkpoints WHERE origin = $1 AND size > 50`, a)
			execSQL(t, dsn, `UPDATE pare_ledger_instances SET shipped_seq = 50,
				shipped_hash = (SELECT encode(sha256(line), 'hex') FROM pare_ledger_records WHERE origin = $1 AND seq = 50) WHERE origin = $1`, a)
		}, ProblemNoCheckpoint},
		{"the newest records cut, nothing else", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_records WHERE origin = $1 AND seq > 57`, a)
		}, ProblemHead},
		{"a checkpoint's root changed", func(t *testing.T, dsn string) {
			changeCheckpoint(t, dsn, a, 30, func(e *ledger.LogEntry) {
				lines := strings.Split(e.Checkpoint, "\n")
				lines[2] = "AAAA" + lines[2][4:]
				e.Checkpoint = strings.Join(lines, "\n")
			})
		}, ProblemCheckpoint},
		{"a checkpoint re-signed with another key", func(t *testing.T, dsn string) {
			changeCheckpoint(t, dsn, a, 30, func(e *ledger.LogEntry) {
				cp, err := ledger.ParseCheckpoint([]byte(e.Checkpoint))
				if err != nil {
					t.Fatal(err)
				}
				text, _, _ := strings.Cut(e.Checkpoint, "\n\n")
				msg, err := note.Sign(&note.Note{Text: text + "\n"}, forger)
				if err != nil {
					t.Fatal(err)
				}
				_ = cp
				e.Checkpoint = string(msg)
			})
		}, ProblemCheckpoint},
		{"every checkpoint deleted", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `DELETE FROM pare_ledger_checkpoints WHERE origin = $1`, a)
			execSQL(t, dsn, `UPDATE pare_ledger_instances SET checkpoint_size = -1 WHERE origin = $1`, a)
		}, ProblemNoCheckpoint},
		{"records under an origin no shipper registered", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `INSERT INTO pare_ledger_records SELECT $2, seq, time, kind, decision_id, subject, vendor, purpose, service, prev, line
				FROM pare_ledger_records WHERE origin = $1`, a, ledger.OriginPrefix+"ghost")
		}, ProblemUnregistered},
		{"a record moved to another instance", func(t *testing.T, dsn string) {
			execSQL(t, dsn, `UPDATE pare_ledger_records SET origin = $2, time = time + interval '1 second' WHERE origin = $1 AND seq = 30`, a, origins[1])
		}, ProblemGap},
	}
	sem := make(chan struct{}, 6) // the server takes 50 connections, shared with the other tests
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("tamper%d", i)
			// FILE_COPY: a copy of the files, much faster than PostgreSQL
			// 15's default of logging every page.
			execSQL(t, srv.DSN, "CREATE DATABASE "+name+" TEMPLATE base STRATEGY FILE_COPY")
			dsn := strings.Replace(srv.DSN, "/postgres?", "/"+name+"?", 1)
			tc.tamper(t, dsn)
			res := verifyDB(t, dsn, v)
			if tc.want == "" {
				if !res.OK() || res.Records != 120 || res.Checkpoints < 24 {
					t.Fatalf("untouched: %+v", res)
				}
				return
			}
			var kinds []string
			for _, p := range res.Problems {
				kinds = append(kinds, p.Kind)
				t.Logf("%s", p)
			}
			if !slices.Contains(kinds, tc.want) {
				t.Fatalf("problems %v, want %s", kinds, tc.want)
			}
		})
	}
}

// rechainDB recomputes every prev after seq, as someone who changed
// record seq would, and moves the head to the new last hash.
func rechainDB(t *testing.T, dsn, origin string, seq int) {
	t.Helper()
	c := connect(t, dsn)
	ctx := context.Background()
	var prev []byte
	if err := c.QueryRow(ctx, `SELECT line FROM pare_ledger_records WHERE origin = $1 AND seq = $2`, origin, seq).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	last := hashLine(prev)
	for s := seq + 1; ; s++ {
		var line []byte
		err := c.QueryRow(ctx, `SELECT line FROM pare_ledger_records WHERE origin = $1 AND seq = $2`, origin, s).Scan(&line)
		if err != nil {
			break
		}
		k := strings.LastIndex(string(line), `"prev":"`)
		nl := []byte(string(line[:k]) + `"prev":"` + last + `"}`)
		if _, err := c.Exec(ctx, `UPDATE pare_ledger_records SET line = $3, prev = $4 WHERE origin = $1 AND seq = $2`, origin, s, nl, last); err != nil {
			t.Fatal(err)
		}
		last = hashLine(nl)
	}
	if _, err := c.Exec(ctx, `UPDATE pare_ledger_instances SET shipped_hash = $2 WHERE origin = $1`, origin, last); err != nil {
		t.Fatal(err)
	}
}

func changeCheckpoint(t *testing.T, dsn, origin string, size int64, change func(*ledger.LogEntry)) {
	t.Helper()
	c := connect(t, dsn)
	var line []byte
	if err := c.QueryRow(context.Background(), `SELECT entry FROM pare_ledger_checkpoints WHERE origin = $1 AND size = $2`, origin, size).Scan(&line); err != nil {
		t.Fatal(err)
	}
	var e ledger.LogEntry
	if err := json.Unmarshal(line, &e); err != nil {
		t.Fatal(err)
	}
	change(&e)
	b, _ := json.Marshal(&e)
	if _, err := c.Exec(context.Background(), `UPDATE pare_ledger_checkpoints SET entry = $3 WHERE origin = $1 AND size = $2`, origin, size, b); err != nil {
		t.Fatal(err)
	}
}

// waitNoConnections waits until nothing is connected to db (the shippers
// of the fixtures have stopped).
func waitNoConnections(t *testing.T, srv *pgtest.Server, db string) {
	t.Helper()
	c := connect(t, srv.DSN)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		if err := c.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to %s remain", n, db)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
