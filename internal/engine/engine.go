package engine

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
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

// Swap installs p and returns the previous policy (nil if none).
func (e *Engine) Swap(p *Policy) *Policy { return e.cur.Swap(p) }

// Policy returns the current policy, nil before the first successful load.
func (e *Engine) Policy() *Policy { return e.cur.Load() }

// Decide evaluates the current policy for in. body is consulted only when
// the policy refers to input.body (see Policy.NeedsBody); it may be nil
// otherwise. A denial is a Decision with Allow false, not an error; errors
// are failures to decide (no policy, evaluation error or timeout, malformed
// decision), all refusals with a Code.
func (e *Engine) Decide(ctx context.Context, p *Policy, in *Input, body ast.Value) (*Decision, error) {
	if p == nil {
		return nil, refuse(CodeNoPolicy, nil, "no valid policy is loaded")
	}
	var key []byte
	if p.cache != nil {
		kb := keyPool.Get().(*[]byte)
		key = in.appendKey((*kb)[:0], p.refs)
		if d, ok := p.cache.get(key); ok {
			*kb = key
			keyPool.Put(kb)
			return d, nil
		}
		key = append([]byte(nil), key...)
		keyPool.Put(kb)
	}
	if !p.refs.body {
		body = nil
	} else if body == nil {
		body = ast.Null{}
	}
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(in.value(body)))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return nil, refuse(CodeEvalTimeout, err, "policy evaluation timed out")
		}
		return nil, refuse(CodeEvalError, err, "policy evaluation failed")
	}
	var d *Decision
	switch {
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		d = &Decision{Code: CodeDenied, Reason: Entrypoint + " is undefined for this request"}
	case len(rs) > 1:
		return nil, refuse(CodeEvalError, nil, "%s has %d results", Entrypoint, len(rs))
	default:
		d, err = parseDecision(rs[0].Expressions[0].Value, e.hmacKey)
		if err != nil {
			return nil, refuse(CodeEvalError, err, "%s", err.Error())
		}
	}
	d.Revision = p.Revision
	if key != nil {
		p.cache.put(key, d)
	}
	return d, nil
}

var keyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// decisionCache maps an input key to its decision. It lives inside a
// Policy, so a reload invalidates it by construction. When full it is
// emptied rather than evicting one entry at a time: decisions are cheap to
// recompute and a reset keeps the lock hold time constant.
type decisionCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]*Decision
}

const defaultCacheSize = 8192

func newDecisionCache(n int) *decisionCache {
	if n == 0 {
		n = defaultCacheSize
	}
	return &decisionCache{max: n, m: make(map[string]*Decision, 64)}
}

func (c *decisionCache) get(key []byte) (*Decision, bool) {
	c.mu.RLock()
	d, ok := c.m[string(key)]
	c.mu.RUnlock()
	return d, ok
}

func (c *decisionCache) put(key []byte, d *Decision) {
	c.mu.Lock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[string(key)] = d
	c.mu.Unlock()
}
