package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	s.Exec("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, s.DSN); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	s.Restart()
	conn, err := pgx.Connect(ctx, s.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM t").Scan(&x); err != nil || x != 42 {
		t.Fatalf("x %d err %v: the data must survive a restart", x, err)
	}
}
