package engine

import (
	"strings"
	"sync"

	"github.com/pare-dev/pare/filters"
)

// DefaultCacheBytes bounds the decision cache of a policy when LoadOptions
// does not say otherwise.
const DefaultCacheBytes = 16 << 20

// maxCacheEntry is the largest entry (key and decision) the cache takes. A
// key holds only what the policy reads, so an entry this large comes from
// some unusual header (a long legal basis, say): it is decided every time
// rather than let one request take a large share of the budget.
const maxCacheEntry = 4 << 10

// entryOverhead approximates the bytes a cache entry costs beyond its key
// and decision: the map slot, the string header, the pointer.
const entryOverhead = 64

// decisionCache maps a key (see Input.appendKey) to a decision. It lives
// inside a Policy, so a reload invalidates it by construction. It is bounded
// in bytes, in two generations: entries go into the current one; when that
// holds half the budget it becomes the old one and the previous old one is
// dropped. A hit in the old generation moves the entry back into the
// current one, so what is in use survives and what is not ages out, with
// constant work per operation and no per-entry bookkeeping.
type decisionCache struct {
	half int64 // bytes per generation

	mu       sync.RWMutex
	cur, old map[string]*Decision
	curBytes int64
	oldBytes int64
}

func newDecisionCache(budget int64) *decisionCache {
	return &decisionCache{half: budget / 2, cur: map[string]*Decision{}, old: map[string]*Decision{}}
}

func (c *decisionCache) get(key []byte) (*Decision, bool) {
	c.mu.RLock()
	d, ok := c.cur[string(key)]
	inOld := false
	if !ok {
		d, inOld = c.old[string(key)]
	}
	c.mu.RUnlock()
	if inOld {
		c.put(key, d) // in use: keep it through the next generation change
	}
	return d, ok || inOld
}

func entrySize(key []byte, d *Decision) int64 {
	return int64(len(key)) + d.size + entryOverhead
}

// put stores d under key unless the entry is too large to be worth it.
func (c *decisionCache) put(key []byte, d *Decision) {
	n := entrySize(key, d)
	if n > maxCacheEntry || n > c.half {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[string(key)]; ok {
		return
	}
	if c.curBytes+n > c.half {
		c.old, c.oldBytes = c.cur, c.curBytes
		c.cur, c.curBytes = make(map[string]*Decision, len(c.old)), 0
	}
	if old, ok := c.old[string(key)]; ok {
		delete(c.old, string(key))
		c.oldBytes -= entrySize(key, old)
	}
	c.cur[string(key)] = d
	c.curBytes += n
}

// bytes is the cache's accounted size, both generations.
func (c *decisionCache) bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.curBytes + c.oldBytes
}

func (c *decisionCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.cur) + len(c.old)
}

// decisionSize approximates the memory a decision holds (its mask is shared
// through maskCache and counted there).
func decisionSize(d *Decision) int64 {
	n := 256 + len(d.Vendor) + len(d.Reason) + len(d.Route) + len(d.Cards) + len(d.Revision)
	for _, s := range [][]string{d.Fields, d.Headers, d.Query, d.headers} {
		for _, x := range s {
			n += 16 + len(x)
		}
	}
	if d.Identities != nil {
		n += 32 + len(d.Identities.Requester) + len(d.Identities.Approver)
	}
	for k, v := range d.Transforms {
		n += 48 + len(k) + len(v)
	}
	return int64(n)
}

// maskCache shares compiled masks between decisions: the decisions of one
// route differ in their reasons and keys, rarely in their fields, and a
// compiled mask is the largest part of a decision. Bounded in entries; when
// full it is emptied (masks are cheap to compile again).
type maskCache struct {
	mu sync.Mutex
	m  map[string]*filters.Mask
}

const maxMasks = 1024

func newMaskCache() *maskCache { return &maskCache{m: map[string]*filters.Mask{}} }

// compile returns the mask of fields and transforms, compiled once. A nil
// cache compiles every time.
func (c *maskCache) compile(fields []string, transforms map[string]string) (*filters.Mask, error) {
	if c == nil {
		return filters.Compile(fields, transforms)
	}
	var b strings.Builder
	for _, f := range fields {
		b.WriteString(f)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, k := range sortedKeys(transforms) {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(transforms[k])
		b.WriteByte(0)
	}
	key := b.String()
	c.mu.Lock()
	m, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := filters.Compile(fields, transforms)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxMasks {
		clear(c.m)
	}
	c.m[key] = m
	c.mu.Unlock()
	return m, nil
}
