package consent

import (
	"container/list"
	"time"
)

// lru is a fixed-capacity map that evicts the least recently used entry, with an expiry per
// entry. It is written here (about forty lines over container/list) rather than imported because
// the project keeps its dependencies to the standard library, fsnotify and yaml, and this needs
// none of a library's generality. It is not safe for concurrent use; HTTP guards it.
type lru struct {
	max   int
	order *list.List // front is the most recently used; values are *lruItem
	items map[string]*list.Element
}

type lruItem struct {
	key      string
	consents []Consent
	err      error
	expires  time.Time
}

func newLRU(capacity int) *lru {
	return &lru{max: capacity, order: list.New(), items: make(map[string]*list.Element)}
}

// get returns the unexpired entry for key and marks it used. An expired entry is dropped.
func (c *lru) get(key string, now time.Time) (*lruItem, bool) {
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*lruItem)
	if !now.Before(it.expires) {
		c.order.Remove(el)
		delete(c.items, key)
		return nil, false
	}
	c.order.MoveToFront(el)
	return it, true
}

// put stores it under it.key, evicting the least recently used entries beyond max.
func (c *lru) put(it *lruItem) {
	if el, ok := c.items[it.key]; ok {
		el.Value = it
		c.order.MoveToFront(el)
		return
	}
	c.items[it.key] = c.order.PushFront(it)
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruItem).key)
	}
}

func (c *lru) len() int { return c.order.Len() }

// remove drops key's entry, if any.
func (c *lru) remove(key string) {
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}
