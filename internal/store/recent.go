package store

import (
	"sync"

	"github.com/berth-sh/berth/internal/work"
)

// Recent items.
//
// A heartbeat, a stop or a metadata update of an item is a compare-and-set on the item's
// version (Driver.PutWorkIf), made from the item as read just before. The item was
// usually read or written by this process a moment earlier: acknowledged, heartbeated.
// (A claim's or a create's item is queued, not leased, and is not kept.)
// So DB keeps the last version of each leased item that it read or wrote, and
// UpdateWork tries its compare-and-set from that version first, without the read: one
// statement instead of two, and on SQLite a read fewer beside the writer.
//
// A version kept here can only be old, never wrong: every write of a work row raises its
// version (putWork), whichever process or replica makes it. So the compare-and-set made
// from an old version fails, and UpdateWork then reads the row and goes on as without
// the cache. A transition that the rule refuses or that changes nothing on the kept
// version is decided again from a fresh read too, so that no answer (a 409, an
// unchanged item) rests on the kept version alone. Only a write that succeeded is
// answered from it, and its compare-and-set proves that the kept version was the row.

// Only leased items (starting, active, stopping) are kept: those are the ones whose next
// transition comes from their worker soon (a heartbeat, a stop), while a queued item's
// next one is its claim, which reads under its locks, and a stopped item's is a refusal.
// So what is kept is bounded by the leases in flight, not by the items a server has
// seen, and maxRecent bounds it again: more than a fleet holds leased at once (one or a
// few per worker). Past it, an arbitrary item is forgotten, which costs only the read
// the cache saves.
const maxRecent = 65_536

type recentWork struct {
	mu    sync.Mutex
	items map[string]work.Item
}

// get returns the kept version of the item, its metadata a copy of its own.
func (r *recentWork) get(environmentID, id string) (work.Item, bool) {
	r.mu.Lock()
	it, ok := r.items[id]
	r.mu.Unlock()
	if !ok || it.EnvironmentID != environmentID {
		return work.Item{}, false
	}
	it.Metadata = it.Metadata.Clone()
	return it, true
}

// put keeps it, as stored at it.Version, if it is leased, unless a later version is
// kept; an item no longer leased is forgotten.
func (r *recentWork) put(it work.Item) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.items[it.ID]; ok && old.Version > it.Version {
		return
	}
	if !it.State.Leased() {
		delete(r.items, it.ID)
		return
	}
	if r.items == nil {
		r.items = map[string]work.Item{}
	}
	it.Metadata = it.Metadata.Clone()
	if len(r.items) >= maxRecent {
		for id := range r.items {
			delete(r.items, id)
			break
		}
	}
	r.items[it.ID] = it
}
