package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Options configure an Engine.
type Options struct {
	// HMACKey is the master key the per-vendor hmac keys derive from. Empty
	// means a random key for this process (pseudonyms then change on restart).
	HMACKey []byte
	// EvalTimeout bounds one policy evaluation (default 250ms).
	EvalTimeout time.Duration
}

// Engine holds the current Policy and decides under it. Safe for concurrent
// use; Swap replaces the policy atomically while requests in flight finish
// under the one they started with.
type Engine struct {
	cur     atomic.Pointer[Policy]
	hmacKey []byte
	timeout time.Duration

	keysMu sync.RWMutex
	keys   map[string][]byte // vendor -> its HMAC key (vendorKey), derived once

	// dataMu orders SetData and Swap, so that the policy installed last is
	// bound to the data set last, whichever of the two came first.
	dataMu  sync.Mutex
	data    map[string]any // data.pare, normalised (see SetData)
	dataSet bool
}

// maxVendorKeys bounds the derived keys kept: vendors come from the policy's
// decisions, a handful in practice.
const maxVendorKeys = 1024

// vendorKey returns vendor's own HMAC key, derived from the master key once.
func (e *Engine) vendorKey(vendor string) []byte {
	e.keysMu.RLock()
	k, ok := e.keys[vendor]
	e.keysMu.RUnlock()
	if ok {
		return k
	}
	k = vendorKey(e.hmacKey, vendor)
	e.keysMu.Lock()
	if e.keys == nil || len(e.keys) >= maxVendorKeys {
		e.keys = map[string][]byte{}
	}
	e.keys[vendor] = k
	e.keysMu.Unlock()
	return k
}

// New returns an engine with no policy: until Swap, every decision is a
// CodeNoPolicy refusal (fail closed).
func New(opt Options) (*Engine, error) {
	key := opt.HMACKey
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("generate hmac key: %w", err)
		}
	}
	if opt.EvalTimeout <= 0 {
		opt.EvalTimeout = 250 * time.Millisecond
	}
	return &Engine{hmacKey: key, timeout: opt.EvalTimeout}, nil
}

// Swap installs p and returns the previous policy (nil if none). Once
// SetData was called, p is installed bound to the engine's data (see
// Policy.WithData) unless it already is: a policy reloaded from its files
// or a bundle never runs without the data the engine was given.
func (e *Engine) Swap(p *Policy) *Policy {
	e.dataMu.Lock()
	defer e.dataMu.Unlock()
	if p != nil && e.dataSet && !reflect.DeepEqual(p.data, e.data) {
		p = p.rebind(context.Background(), e.data)
	}
	return e.cur.Swap(p)
}

// SetData sets the document data.pare (see LoadOptions.Data) for the current
// policy and every policy swapped in later. The current policy is replaced
// by itself bound to data: requests in flight finish under the data they
// started with, and the new policy starts with an empty decision cache.
func (e *Engine) SetData(data map[string]any) error {
	d, err := normalizeData(data)
	if err != nil {
		return err
	}
	e.dataMu.Lock()
	defer e.dataMu.Unlock()
	e.data, e.dataSet = d, true
	if p := e.cur.Load(); p != nil && !reflect.DeepEqual(p.data, d) {
		e.cur.Store(p.rebind(context.Background(), d))
	}
	return nil
}

// Policy returns the current policy, nil before the first successful load.
func (e *Engine) Policy() *Policy { return e.cur.Load() }

// Decide evaluates the current policy for in. body is consulted only when
// the policy refers to input.body (see Policy.NeedsBody); it may be nil
// otherwise. A denial is a Decision with Allow false, not an error; errors
// are failures to decide (no policy, evaluation error or timeout, malformed
// decision), all refusals with a Code.
//
// Decisions are cached per policy (see decisionCache) under two keys, each
// built only from what the compiled policy reads (keyPlan): the exact key,
// with the path, and — when the policy reads the path only through
// RouteKeyRule (analysis.pathKey) — the route key, with that rule's value in
// place of the path. A request whose exact key is cached costs a lookup; one
// for a new resource id of a known route costs RouteKeyRule's evaluation and
// a lookup; anything else is evaluated in full. Decisions for hosts no
// contract covers are never cached: whoever sends them cannot fill the cache.
// Nor are decisions whose evaluation called a non-deterministic builtin
// (io.jwt.decode_verify checks expiry against the clock): a policy that
// calls one keeps the cache for the requests that do not reach it.
func (e *Engine) Decide(ctx context.Context, p *Policy, in *Input, body ast.Value) (*Decision, error) {
	if p == nil {
		return nil, refuse(CodeNoPolicy, nil, "no valid policy is loaded")
	}
	if p.cache == nil {
		d, _, err := e.evaluate(ctx, p, in, body)
		return d, err
	}
	kb := keyPool.Get().(*[]byte)
	defer keyPool.Put(kb)
	exact := append((*kb)[:0], 'x')
	exact = in.appendKey(exact, &p.plan, true)
	*kb = exact
	if d, ok := p.cache.get(exact); ok {
		p.exactHits.Add(1)
		return d, nil
	}
	var routeKey []byte
	if p.routeQuery != nil {
		// Built with what the rule reads only: on a hit nothing else is needed.
		routeIn := ast.NewTerm(in.value(nil, &p.routePlan))
		if kv, err := p.ev.evalResult(ctx, p.routeQuery, routeIn, e.timeout); !kv.volatile && (err == nil || errors.Is(err, errUndefined)) {
			rb := keyPool.Get().(*[]byte)
			defer keyPool.Put(rb)
			routeKey = append((*rb)[:0], 'r')
			routeKey = in.appendKey(routeKey, &p.plan, false)
			routeKey = appendValue(routeKey, kv.value)
			*rb = routeKey
			if d, ok := p.cache.get(routeKey); ok {
				p.routeHits.Add(1)
				return d, nil
			}
		}
		// An evaluation error leaves the decision to the full evaluation,
		// which reports it (or decides without the rule) as it would
		// without the cache.
	}
	p.misses.Add(1)
	d, volatile, err := e.evaluate(ctx, p, in, body)
	if err != nil {
		return nil, err
	}
	if d.Vendor != "" && !volatile {
		p.cache.put(exact, d)
		if routeKey != nil {
			p.cache.put(routeKey, d)
		}
	}
	return d, nil
}

// evaluate decides in under p by evaluating the policy in full. volatile:
// the decision depends on a non-deterministic builtin (see result).
func (e *Engine) evaluate(ctx context.Context, p *Policy, in *Input, body ast.Value) (d *Decision, volatile bool, err error) {
	if !p.refs.body {
		body = nil
	} else if body == nil {
		body = ast.Null{}
	}
	inTerm := ast.NewTerm(in.value(body, &p.plan))
	r, err := p.ev.evalResult(ctx, p.decisionQuery, inTerm, e.timeout)
	switch {
	case errors.Is(err, errUndefined):
		d = &Decision{Code: CodeDenied, Reason: Entrypoint + " is undefined for this request", Revision: p.Revision}
		d.size = decisionSize(d)
		return d, r.volatile, nil
	case errors.Is(err, context.DeadlineExceeded):
		return nil, false, refuse(CodeEvalTimeout, err, "policy evaluation timed out")
	case err != nil:
		return nil, false, refuse(CodeEvalError, err, "policy evaluation failed")
	}
	d, err = parseDecision(r.value.Value, e.vendorKey, p.masks)
	if err != nil {
		return nil, false, refuse(CodeEvalError, err, "%s", err.Error())
	}
	d.Revision = p.Revision
	d.size = decisionSize(d)
	return d, r.volatile, nil
}

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}
