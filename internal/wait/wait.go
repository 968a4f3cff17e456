// Package wait parks long polls and wakes them when work arrives: one waiting poller per
// new deliverable item, per environment, not all of them. Waking everyone for one item
// would have every poller race for it and all but one go back to sleep, which costs a
// store query per parked poller per item: with a thousand parked pollers that is the
// difference between one claim and a thousand.
package wait

import (
	"container/list"
	"sync"
)

// Waiters is the set of parked pollers of every environment. The zero value is not usable;
// use New.
type Waiters struct {
	mu     sync.Mutex
	queues map[string]*list.List // environment ID → FIFO of *Waiter
}

// New returns an empty set.
func New() *Waiters {
	return &Waiters{queues: map[string]*list.List{}}
}

// Waiter is one parked poller. C receives at most one value: the wake-up.
type Waiter struct {
	C   <-chan struct{}
	c   chan struct{}
	env string
	el  *list.Element
	// woken is set under Waiters.mu when the waiter is taken off the queue by Notify.
	woken bool
}

// Park adds a poller for environment env at the back of its queue. The caller must
// eventually call Leave (after a wake-up it has not used, or when it gives up).
func (w *Waiters) Park(env string) *Waiter {
	c := make(chan struct{}, 1)
	wt := &Waiter{C: c, c: c, env: env}
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

// Notify wakes up to n parked pollers of env, oldest first, and returns how many it woke.
func (w *Waiters) Notify(env string, n int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queues[env]
	woke := 0
	for q != nil && woke < n && q.Len() > 0 {
		wt := q.Remove(q.Front()).(*Waiter)
		wt.woken = true
		wt.c <- struct{}{}
		woke++
	}
	if q != nil && q.Len() == 0 {
		delete(w.queues, env)
	}
	return woke
}

// Leave takes a poller off its queue. used says whether the poller acted on a wake-up it
// received (it polled for the item it was woken for). A wake-up that arrived but was not
// used (the poller gave up, or had found other work first) is passed on to the next parked
// poller, so that no item waits for a block_ms to run out while someone could take it.
func (w *Waiters) Leave(wt *Waiter, used bool) {
	w.mu.Lock()
	passOn := false
	if wt.woken {
		passOn = !used
	} else if q := w.queues[wt.env]; q != nil {
		q.Remove(wt.el)
		if q.Len() == 0 {
			delete(w.queues, wt.env)
		}
	}
	w.mu.Unlock()
	if passOn {
		w.Notify(wt.env, 1)
	}
}

// Parked returns the number of parked pollers across all environments.
func (w *Waiters) Parked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, q := range w.queues {
		n += q.Len()
	}
	return n
}
