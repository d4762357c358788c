package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresSchema creates the table the PostgreSQL source reads and the
// trigger that tells listening sidecars which subject changed. The table is
// a history of consent events, as the file source's lists are; the latest
// event per purpose is the current state. A company whose consents live
// elsewhere can give Pare a view named pare_consents with these columns,
// and its own trigger that calls pg_notify('pare_consents', subject) on
// every change (an empty payload means "anything may have changed").
const PostgresSchema = `
CREATE TABLE IF NOT EXISTS pare_consents (
	id                      bigserial PRIMARY KEY,
	subject                 text NOT NULL,
	purpose                 text NOT NULL,
	status                  text NOT NULL,
	time                    timestamptz NOT NULL,
	evidence_action         text NOT NULL DEFAULT '',
	evidence_where          text NOT NULL DEFAULT '',
	evidence_policy_version text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS pare_consents_subject ON pare_consents (subject);

CREATE OR REPLACE FUNCTION pare_consents_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_LEVEL = 'STATEMENT' THEN
		PERFORM pg_notify('pare_consents', '');
		RETURN NULL;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		PERFORM pg_notify('pare_consents', OLD.subject);
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') THEN
		PERFORM pg_notify('pare_consents', NEW.subject);
	END IF;
	RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER pare_consents_notify AFTER INSERT OR UPDATE OR DELETE ON pare_consents
	FOR EACH ROW EXECUTE FUNCTION pare_consents_notify();
CREATE OR REPLACE TRIGGER pare_consents_notify_truncate AFTER TRUNCATE ON pare_consents
	FOR EACH STATEMENT EXECUTE FUNCTION pare_consents_notify();
`

// PostgresChannel is the LISTEN/NOTIFY channel of consent changes.
const PostgresChannel = "pare_consents"

// ListenerApplicationName is the application_name of the listener's
// connection.
const ListenerApplicationName = "pare-consents-listener"

const (
	// maxEventsPerSubject bounds what one lookup reads: a subject's history
	// is a handful of events, and a runaway one must not fill the memory.
	maxEventsPerSubject = 1000
	// listenerCheck is how long the listener waits for a notification
	// before it checks that its connection is still alive: a connection
	// that died silently would otherwise let cached answers outlive
	// changes whose notifications never arrived.
	listenerCheck = 15 * time.Second
)

// PostgresOptions configures a Postgres source. Zero values take the
// defaults of the HTTP source.
type PostgresOptions struct {
	// TTL bounds how long an answer is cached even when no change is
	// notified (a safety net; changes are picked up by notification).
	// Default DefaultTTL.
	TTL time.Duration
	// ErrorTTL is how long a failed lookup is remembered; negative
	// disables. Default DefaultErrorTTL.
	ErrorTTL time.Duration
	// MaxEntries bounds the cache. Default DefaultMaxEntries.
	MaxEntries int
	// Timeout bounds each query. Default DefaultTimeout.
	Timeout time.Duration
	// RetryDelay is the wait before the listener reconnects. Default 1s.
	RetryDelay time.Duration
	// Logger receives the listener's state changes (never subject ids
	// above debug level). Nil discards.
	Logger *slog.Logger
	// Now is the cache's clock. Default time.Now.
	Now func() time.Time
}

// Postgres is a consent source read from the PostgreSQL table pare_consents
// (PostgresSchema), with a cache kept current by LISTEN/NOTIFY.
//
// Answers are cached only while the listener is connected and listening:
// a notification for a subject drops its cached answer (and marks a query
// in flight for it as not to be cached, since it may have read the state
// before the change); a notification with an empty payload, and any loss of
// the listener's connection, drop everything. While the listener is down
// every lookup queries the table, so a change is never hidden by the cache,
// and when the database is down lookups fail with ErrUnavailable: the proxy
// refuses consent-gated requests (fail closed), as with the HTTP source.
type Postgres struct {
	pool     *pgxpool.Pool
	dsn      string
	ttl      time.Duration
	errTTL   time.Duration
	timeout  time.Duration
	retry    time.Duration
	now      func() time.Time
	log      *slog.Logger
	mu       sync.Mutex // guards everything below
	cache    *lru
	inflight map[string]*pgFlight
	// listening is true while the listener's LISTEN is in force.
	listening bool
	queries   int // queries sent, for tests
}

type pgFlight struct {
	flight
	stale bool // a change may have happened during the query: do not cache
}

// OpenPostgres connects a pool to dsn (a libpq URL or key=value string) and
// checks that the table can be read. Call Run to start listening; until it
// has, lookups query the table every time.
func OpenPostgres(ctx context.Context, dsn string, opt PostgresOptions) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors may quote the DSN, password included.
		return nil, errors.New("consents DSN: cannot be parsed (want postgres://user@host/db or key=value pairs)")
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("consents database: %w", err)
	}
	p := &Postgres{
		pool: pool, dsn: dsn, ttl: opt.TTL, errTTL: opt.ErrorTTL, timeout: opt.Timeout,
		retry: opt.RetryDelay, now: opt.Now, log: opt.Logger,
		inflight: make(map[string]*pgFlight),
	}
	if p.ttl <= 0 {
		p.ttl = DefaultTTL
	}
	if p.errTTL == 0 {
		p.errTTL = DefaultErrorTTL
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.retry <= 0 {
		p.retry = time.Second
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	maxEntries := opt.MaxEntries
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	p.cache = newLRU(maxEntries)
	// Fail at start on a wrong DSN or a missing table, not on the first
	// consent-gated request. A database that is down only makes lookups
	// fail (closed) until it is back.
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if _, err := p.query(cctx, ""); err != nil && !errors.Is(err, ErrUnavailable) {
		pool.Close()
		return nil, err
	} else if err != nil {
		p.log.Warn("consents database not reachable at start: consent-gated requests are refused until it is", "err", err)
	}
	return p, nil
}

// Close closes the pool. Run must have returned.
func (p *Postgres) Close() { p.pool.Close() }

// Lookup returns the subject's current consents, from the cache or the table.
func (p *Postgres) Lookup(ctx context.Context, subject string) ([]Consent, error) {
	if subject == "" {
		return []Consent{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("consent lookup: %w", err)
	}
	if len(subject) > maxSubjectLen {
		return nil, fmt.Errorf("%w: subject id longer than %d bytes", ErrUnavailable, maxSubjectLen)
	}
	p.mu.Lock()
	if p.listening {
		if it, ok := p.cache.get(subject, p.now()); ok {
			p.mu.Unlock()
			return clone(it.consents), it.err
		}
	}
	fl, joined := p.inflight[subject]
	if !joined {
		fl = &pgFlight{flight: flight{done: make(chan struct{})}, stale: !p.listening}
		p.inflight[subject] = fl
		go p.run(context.WithoutCancel(ctx), subject, fl)
	}
	fl.waiters++
	p.mu.Unlock()
	select {
	case <-fl.done:
		return clone(fl.consents), fl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("consent lookup: %w", ctx.Err())
	}
}

func (p *Postgres) run(ctx context.Context, subject string, fl *pgFlight) {
	asked := p.now()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	fl.consents, fl.err = p.query(ctx, subject)
	cancel()
	p.mu.Lock()
	ttl := p.ttl
	if fl.err != nil {
		ttl = p.errTTL
	}
	if ttl > 0 && !fl.stale && p.listening {
		p.cache.put(&lruItem{key: subject, consents: fl.consents, err: fl.err, expires: asked.Add(ttl)})
	}
	delete(p.inflight, subject)
	p.mu.Unlock()
	close(fl.done)
}

// query reads and validates a subject's events. Its errors wrap
// ErrUnavailable, except a missing table (a configuration error).
func (p *Postgres) query(ctx context.Context, subject string) ([]Consent, error) {
	p.mu.Lock()
	p.queries++
	p.mu.Unlock()
	rows, err := p.pool.Query(ctx, `SELECT purpose, status, time, evidence_action, evidence_where, evidence_policy_version
		FROM pare_consents WHERE subject = $1 ORDER BY time, id LIMIT $2`, subject, maxEventsPerSubject+1)
	if err != nil {
		return nil, p.dbError(ctx, err)
	}
	var events []Consent
	var problems []string
	for rows.Next() {
		var c Consent
		if err := rows.Scan(&c.Purpose, &c.Status, &c.Time, &c.Evidence.Action, &c.Evidence.Where, &c.Evidence.PolicyVersion); err != nil {
			rows.Close()
			return nil, fmt.Errorf("%w: reading pare_consents: %v", ErrUnavailable, err)
		}
		c.Time = c.Time.UTC()
		for _, pr := range check(c) {
			problems = append(problems, fmt.Sprintf("event %d: %s", len(events)+1, pr.msg))
		}
		events = append(events, c)
		if len(events) > maxEventsPerSubject {
			rows.Close()
			return nil, fmt.Errorf("%w: more than %d consent events for one subject", ErrUnavailable, maxEventsPerSubject)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, p.dbError(ctx, err)
	}
	if len(problems) > 0 {
		// An invalid event fails the lookup: skipping a malformed withdrawal
		// would leave the grant before it in force.
		if len(problems) > 5 {
			problems = append(problems[:5], fmt.Sprintf("and %d more", len(problems)-5))
		}
		return nil, fmt.Errorf("%w: invalid rows in pare_consents: %s", ErrUnavailable, strings.Join(problems, "; "))
	}
	return latest(events), nil
}

func (p *Postgres) dbError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: consents database: no answer within %s", ErrUnavailable, p.timeout)
	}
	// undefined_table, undefined_column: the schema is wrong, which waiting
	// will not fix.
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && (pgErr.Code == "42P01" || pgErr.Code == "42703") {
		return fmt.Errorf("consents database: %w (create the table with consent.PostgresSchema)", err)
	}
	return fmt.Errorf("%w: consents database: %v", ErrUnavailable, err)
}

// Run listens for changes until ctx is done, reconnecting after every loss
// of its connection. Call it once.
func (p *Postgres) Run(ctx context.Context) {
	for {
		err := p.listen(ctx)
		p.setListening(false)
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("consents listener disconnected: lookups go to the database until it is back", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.retry):
		}
	}
}

// listen holds one LISTEN connection until it fails.
func (p *Postgres) listen(ctx context.Context) error {
	cfg, err := pgx.ParseConfig(p.dsn)
	if err != nil {
		return errors.New("consents DSN: cannot be parsed")
	}
	// Named, so that an operator sees it in pg_stat_activity.
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	cctx, cancel := context.WithTimeout(ctx, p.timeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+PostgresChannel); err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}
	p.setListening(true)
	p.log.Info("consents listener connected: changes are picked up as they are committed")
	for {
		wctx, cancel := context.WithTimeout(ctx, listenerCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			p.invalidate(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pctx, cancel := context.WithTimeout(ctx, p.timeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("listener connection check: %w", err)
			}
		default:
			return err
		}
	}
}

// setListening records the listener's state. Any change drops the cache and
// marks the queries in flight stale: across a reconnection notifications
// may have been missed.
func (p *Postgres) setListening(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.listening = on
	p.cache = newLRU(p.cache.max)
	for _, fl := range p.inflight {
		fl.stale = true
	}
}

// invalidate applies one notification: the payload is a subject id, or
// empty for "anything may have changed".
func (p *Postgres) invalidate(subject string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if subject == "" {
		p.cache = newLRU(p.cache.max)
		for _, fl := range p.inflight {
			fl.stale = true
		}
		return
	}
	p.cache.remove(subject)
	if fl := p.inflight[subject]; fl != nil {
		fl.stale = true
	}
	p.log.Debug("consent change notified", "subject", subject)
}
