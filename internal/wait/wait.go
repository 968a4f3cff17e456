// Package wait parks long polls and wakes them when work arrives: one waiting poller per
// new deliverable item, per environment, not all of them. Waking everyone for one item
// would have every poller race for it and all but one go back to sleep, which costs a
// store query per parked poller per item: with a thousand parked pollers that is the
// difference between one claim and a thousand.
//
// A new item can also be handed to a parked poller directly (Take, then Hand): the item's
// creator claims it for that poller in the same transaction that creates it, which saves
// the poller a claim of its own, and on a durable store a second commit.
package wait

import (
	"container/list"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// Waiters is the set of parked pollers of every environment. The zero value is not usable;
// use New.
type Waiters struct {
	mu     sync.Mutex
	queues map[string]*list.List // environment ID → FIFO of *Waiter
	asleep int                   // queued waiters that sleep (Parked)
}

// New returns an empty set.
func New() *Waiters {
	return &Waiters{queues: map[string]*list.List{}}
}

// Waiter is one parked poller.
type Waiter struct {
	// C is closed when the poller is woken (Notify) or its hand-off is settled (Hand).
	C <-chan struct{}
	// WorkerID and Reclaim are the poll's Worker-ID and reclaim window: a hand-off
	// claims with them, as the poller itself would.
	WorkerID string
	Reclaim  time.Duration

	c   chan struct{}
	env string
	el  *list.Element // in its queue while parked; nil once off it
	// Set under Waiters.mu.
	asleep bool       // the poller has claimed in vain and waits: it may be taken
	woken  bool       // taken off the queue by Notify
	taken  bool       // taken off the queue by Take; Hand settles it
	item   *work.Item // what Hand gave it (nil: a plain wake-up)
}

// Park adds a poller for environment env at the back of its queue, before it looks for
// work, so that no item created meanwhile goes unnoticed. The caller must eventually call
// Leave (when it does not wait after all) or Sleep and then Stop.
func (w *Waiters) Park(env, workerID string, reclaim time.Duration) *Waiter {
	c := make(chan struct{})
	wt := &Waiter{C: c, c: c, env: env, WorkerID: workerID, Reclaim: reclaim}
	w.mu.Lock()
	q := w.queues[env]
	if q == nil {
		q = list.New()
		w.queues[env] = q
	}
	wt.el = q.PushBack(wt)
	w.mu.Unlock()
	return wt
}

// Sleep marks a parked poller as waiting: it found no work, and from now on it may be
// handed an item (Take).
func (w *Waiters) Sleep(wt *Waiter) {
	w.mu.Lock()
	wt.asleep = true
	if wt.el != nil {
		w.asleep++
	}
	w.mu.Unlock()
}

// Notify wakes up to n parked pollers of env, oldest first, and returns how many it woke.
func (w *Waiters) Notify(env string, n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	woke := 0
	for woke < n {
		wt := w.pop(env, false)
		if wt == nil {
			break
		}
		wt.woken = true
		close(wt.c)
		woke++
	}
	return woke
}

// Take removes the oldest sleeping poller of env from its queue, for the caller to claim
// an item for it and then Hand it over; nil when none sleeps. The caller must call Hand
// exactly once, soon: the poller waits for it.
func (w *Waiters) Take(env string) *Waiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.pop(env, true)
	if wt != nil {
		wt.taken = true
	}
	return wt
}

// Hand settles a taken poller: item is what was claimed for it, or nil, in which case it
// is an ordinary wake-up and the poller claims by itself.
func (w *Waiters) Hand(wt *Waiter, item *work.Item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !wt.taken || wt.item != nil {
		panic("wait: Hand on a waiter that was not taken, or twice")
	}
	if item != nil {
		c := *item
		wt.item = &c
	}
	close(wt.c)
}

// pop removes the oldest poller of env (the oldest sleeping one if asleep) from its
// queue. w.mu must be held.
func (w *Waiters) pop(env string, asleep bool) *Waiter {
	q := w.queues[env]
	if q == nil {
		return nil
	}
	for el := q.Front(); el != nil; el = el.Next() {
		wt := el.Value.(*Waiter)
		if asleep && !wt.asleep {
			continue
		}
		w.remove(wt)
		return wt
	}
	return nil
}

// remove takes wt off its queue. w.mu must be held.
func (w *Waiters) remove(wt *Waiter) {
	if wt.asleep {
		w.asleep--
	}
	q := w.queues[wt.env]
	q.Remove(wt.el)
	wt.el = nil
	if q.Len() == 0 {
		delete(w.queues, wt.env)
	}
}

// Stop ends a sleeping poller's wait, whatever ended it. It returns the item handed to
// it, if any (the poller must answer with it: it is delivered to this poller), and
// whether it was woken (by Notify, or by a hand-off that brought no item). A poller taken
// for a hand-off still under way waits here until Hand settles it.
//
// A poller that was woken but gives up without claiming must pass the wake-up on
// (Notify(env, 1)), so that no item waits for a block_ms to run out while someone else
// could take it.
func (w *Waiters) Stop(wt *Waiter) (item *work.Item, woken bool) {
	w.mu.Lock()
	if wt.el != nil {
		w.remove(wt)
		w.mu.Unlock()
		return nil, false
	}
	taken := wt.taken
	w.mu.Unlock()
	if taken {
		<-wt.c
		w.mu.Lock()
		item = wt.item
		w.mu.Unlock()
	}
	return item, item == nil
}

// Leave takes a poller that is not sleeping off its queue: it found work of its own, or
// gives up before waiting. A wake-up it received meanwhile is passed on to the next
// parked poller, since it will not claim for it.
func (w *Waiters) Leave(wt *Waiter) {
	w.mu.Lock()
	if wt.asleep {
		w.mu.Unlock()
		panic("wait: Leave on a sleeping waiter; use Stop")
	}
	passOn := wt.woken
	if wt.el != nil {
		w.remove(wt)
	}
	w.mu.Unlock()
	if passOn {
		w.Notify(wt.env, 1)
	}
}

// Parked returns the number of pollers that sleep, waiting for work, across all
// environments: not those still looking for work of their own.
func (w *Waiters) Parked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.asleep
}
