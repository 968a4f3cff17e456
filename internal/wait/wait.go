// Package wait runs long polls: it parks a poll that found no work and wakes it when work
// arrives, one waiting poller per new deliverable item, per environment, not all of them.
// Waking everyone for one item would have every poller race for it and all but one go
// back to sleep, which costs a store query per parked poller per item: with a thousand
// parked pollers that is the difference between one claim and a thousand.
//
// Work becomes deliverable in three ways, and each wakes exactly one poller:
//   - A new item (a session, a dormant wake-up, a requeue; or another replica's, through
//     store.Notifier): Queued wakes the oldest parked poller of the environment.
//   - A new item created through Enqueue is handed to the oldest sleeping poller
//     directly: the creator claims it for that poller in the same transaction that
//     creates it, which saves the poller a claim of its own, and on a durable store a
//     second commit.
//   - A delivered item passing its reclaim window: the pollers of an environment that
//     share a reclaim window share one timer, set to the earliest such moment; when it
//     fires it wakes one poller, which claims and then sets the timer for the next.
//
// A poller woken that does not claim (its request ended, the server is shutting down)
// passes its wake-up on to the next one, so that no wake-up is lost while a poller waits.
// And since the pollers see everything that makes an item deliverable, a new poll that
// comes just after a claim found nothing sleeps without asking the store (Empty polls).
// Everything here happens inside Poll and Enqueue: callers follow no protocol.
package wait

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// recheck is how long the answer of a NextReclaim query is trusted by the pollers that go
// to sleep after it. Deliveries made by this process are seen at once and keep the answer
// true; this bounds how late a reclaim of another replica's delivery is noticed, and
// spares a fleet of pollers one query per poll.
const recheck = time.Second

// Config configures Waiters.
type Config struct {
	// NextReclaim returns when the earliest delivered, unacknowledged item of the
	// environment becomes deliverable again with the given reclaim window (ok false:
	// none), as store.Store.NextReclaim does.
	NextReclaim func(ctx context.Context, env string, reclaim time.Duration) (at time.Time, ok bool, err error)
	// Now is the clock of the times NextReclaim returns; nil means time.Now.
	Now func() time.Time
	// Block makes the timer that ends a poll's wait (Poll.Block); nil means
	// time.NewTimer. Tests pass timers that never fire, so that a poll can only answer
	// when it is woken.
	Block func(d time.Duration) (c <-chan time.Time, stop func() bool)
}

// Waiters is the set of parked polls of every environment. Create it with New.
type Waiters struct {
	cfg Config

	mu     sync.Mutex
	envs   map[string]*envWait
	asleep int  // sleeping pollers, all environments
	closed bool // Close was called
	done   chan struct{}
}

// envWait is one environment's parked polls and reclaim timers.
type envWait struct {
	pollers list.List                       // *poller, oldest first
	groups  map[time.Duration]*reclaimTimer // by reclaim window
	// queued counts the wake-ups for new items (Queued, Enqueue, Resync): a claim that
	// found nothing is news only until the next one.
	queued uint64
}

// reclaimTimer is the one reclaim timer of the pollers of an environment that share a
// reclaim window, and what their claims last found.
type reclaimTimer struct {
	timer   *time.Timer // armed for at; nil when not armed
	at      time.Time
	checked time.Time // when the store was last asked (rearm); zero: not since the timer fired

	// emptyAt is when a claim with this window last found nothing, begun when the
	// environment's queued count was emptyQueued; zero when it has not or something
	// claimable may have come since.
	emptyAt     time.Time
	emptyQueued uint64
}

// poller is one parked poll.
type poller struct {
	p   *Poll
	c   chan struct{} // closed when woken or handed an item
	el  *list.Element // in its environment's list while parked; nil once off it
	env *envWait

	queued uint64 // its environment's queued count when it was parked

	// Set under Waiters.mu.
	asleep bool       // it claimed in vain and waits: it may be taken (Enqueue)
	woken  wake       // why it was taken off the list by a wake-up, if it was
	taken  bool       // taken off the list by Enqueue, which settles it
	item   *work.Item // what Enqueue handed it (nil: a plain wake-up)
}

// wake is why a poller was woken.
type wake uint8

const (
	notWoken wake = iota
	// newItem: an item was queued (Queued, Enqueue).
	newItem
	// reclaimed: its window's reclaim timer fired. The poller sets the timer again after
	// its claim.
	reclaimed
	// resync: notices of new items may have been missed (Resync). A poller that claims
	// an item passes the wake-up on, so that every missed item is claimed.
	resync
)

// Poll is one long poll.
type Poll struct {
	Env      string
	WorkerID string
	// Reclaim is the poll's reclaim window: a delivered, unacknowledged item is
	// deliverable to it again this long after its delivery.
	Reclaim time.Duration
	// Block is how long the poll waits for work; 0 answers at once.
	Block time.Duration
	// Claim delivers the oldest deliverable item of Env to this poll, as
	// store.Store.ClaimWork does with WorkerID and Reclaim.
	Claim func(ctx context.Context) (work.Item, bool, error)
}

// New returns an empty set.
func New(cfg Config) *Waiters {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Block == nil {
		cfg.Block = func(d time.Duration) (<-chan time.Time, func() bool) {
			t := time.NewTimer(d)
			return t.C, t.Stop
		}
	}
	return &Waiters{cfg: cfg, envs: map[string]*envWait{}, done: make(chan struct{})}
}

// Close makes every parked poll answer at once without an item, and later polls answer
// without waiting. It is for server shutdown.
func (w *Waiters) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	close(w.done)
	for _, e := range w.envs {
		for _, g := range e.groups {
			if g.timer != nil {
				g.timer.Stop()
				g.timer = nil
			}
		}
	}
}

// Parked returns the number of polls that sleep, waiting for work, across all
// environments: not those still looking for work of their own.
func (w *Waiters) Parked() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.asleep
}

// Poll claims an item for p, waiting up to p.Block for one to become deliverable. It
// returns ok false when none came in time, when ctx ended, or when the set was closed;
// err only from p.Claim. An item handed over by Enqueue is delivered to this poll already
// and is returned even when ctx has ended meanwhile (a client that has gone leaves it to
// its reclaim window, as with any answer it did not read).
func (w *Waiters) Poll(ctx context.Context, p *Poll) (work.Item, bool, error) {
	var expired <-chan time.Time
	if p.Block > 0 {
		c, stop := w.cfg.Block(p.Block)
		defer stop()
		expired = c
	}
	timedOut := p.Block <= 0
	woken := notWoken // the wake-up this claim is for, if any
	for {
		// Parked before the claim, so that an item queued between the claim and the
		// sleep still wakes this poll.
		pl := w.park(p)
		var item work.Item
		var ok bool
		var err error
		if woken != notWoken || !w.knownEmpty(pl) {
			item, ok, err = p.Claim(ctx)
			if woken == reclaimed {
				w.rearm(ctx, p)
			}
			if err == nil && !ok {
				w.foundEmpty(pl)
			}
		}
		if err != nil || ok {
			w.leave(pl)
			switch {
			case ok:
				w.delivered(p.Env, item.DeliveredAt)
				if woken == resync {
					w.passOn(p, resync) // there may be more
				}
			case woken != notWoken:
				// The claim that was to use the wake-up failed: someone else must.
				w.passOn(p, woken)
			}
			return item, ok, err
		}
		if timedOut || w.isClosed() {
			w.leave(pl)
			return work.Item{}, false, nil
		}
		w.sleep(ctx, pl)
		giveUp := false
		select {
		case <-pl.c:
		case <-expired:
			timedOut = true
		case <-ctx.Done():
			giveUp = true
		case <-w.done:
			giveUp = true
		}
		// A wake-up and the end of the request can come together, and select picks
		// either: a poll whose request has ended never claims again (its answer would
		// reach no one, and the item would wait out its reclaim window); it passes the
		// wake-up on.
		if ctx.Err() != nil {
			giveUp = true
		}
		var handed *work.Item
		handed, woken = w.stop(pl)
		if handed != nil {
			return *handed, true, nil
		}
		if giveUp || (timedOut && woken == notWoken) {
			if woken != notWoken {
				w.passOn(p, woken)
			}
			return work.Item{}, false, nil
		}
		// Woken: claim again (also when the block ran out at the same moment, since the
		// wake-up means there may be something to claim).
	}
}

// Queued wakes one parked poller of env, oldest first, for a new deliverable item, and
// reports whether there was one. Callers use it for items made without Enqueue, and for
// other replicas' items.
func (w *Waiters) Queued(env string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wakeLocked(env, newItem, 0)
}

// Enqueue runs create, which stores a new item in env (queued: the item; nil when it
// stored none), and gets the item to a parked poller. When one sleeps in env, create is
// given its Poll and should claim for it in the same transaction that creates the item
// (store's CreateSession with a claim), returning what that claim delivered: the poller
// is handed it. Otherwise create gets nil and only stores the item. Either way, unless
// the new item itself was handed over, one parked poller is woken for it.
func (w *Waiters) Enqueue(env string, create func(taker *Poll) (queued, delivered *work.Item, err error)) error {
	pl := w.take(env)
	var taker *Poll
	if pl != nil {
		taker = pl.p
	}
	queued, delivered, err := create(taker)
	if queued != nil {
		w.mu.Lock()
		if e := w.envs[env]; e != nil {
			e.queued++ // what claims found empty before is old news
		}
		w.mu.Unlock()
	}
	if pl != nil {
		if err != nil || delivered == nil {
			w.settle(pl, nil) // a plain wake-up: it claims for itself
			return err
		}
		w.delivered(env, delivered.DeliveredAt)
		w.settle(pl, delivered)
	}
	if err != nil {
		return err
	}
	if queued != nil && (delivered == nil || delivered.ID != queued.ID) {
		w.Queued(env)
	}
	return nil
}

// Resync wakes one parked poller of every environment, for when notices of new items
// may have been missed (another replica's, while the connection that brings them was
// down). Each woken poller claims once and, finding nothing, sleeps again: one claim per
// environment being polled.
func (w *Waiters) Resync() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for env := range w.envs {
		w.wakeLocked(env, resync, 0)
	}
}

// park adds a poller for p at the back of its environment's list, looking for work.
func (w *Waiters) park(p *Poll) *poller {
	pl := &poller{p: p, c: make(chan struct{})}
	w.mu.Lock()
	e := w.envs[p.Env]
	if e == nil {
		e = &envWait{groups: map[time.Duration]*reclaimTimer{}}
		w.envs[p.Env] = e
	}
	pl.env = e
	pl.el = e.pollers.PushBack(pl)
	pl.queued = e.queued
	w.mu.Unlock()
	return pl
}

// Empty polls.
//
// A fleet of idle workers polls an empty queue all the time, and each poll would ask the
// store for an item first. The pollers of an environment see everything that makes an
// item deliverable, though: every item queued (by this process: Enqueue, Queued; by
// another replica: Queued through store.Notifier, Resync when its notices may have been
// lost), and every delivery this process makes passing a reclaim window (the window's
// timer, set from the store at most recheck ago for the deliveries of other replicas). So
// when a claim with the poll's window found nothing, less than recheck ago and since the
// last item queued, and no delivery passes the window before now, a new poll sleeps at
// once without asking the store. The cost: a delivery of another replica passing the
// window is found by a new poll up to recheck later than it would be by a claim.

// knownEmpty reports whether p's claim may be skipped (see Empty polls). pl is parked.
func (w *Waiters) knownEmpty(pl *poller) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := pl.env.groups[pl.p.Reclaim]
	if g == nil || g.emptyAt.IsZero() || g.emptyQueued != pl.env.queued {
		return false
	}
	now := w.cfg.Now()
	fresh := func(t time.Time) bool { return !t.IsZero() && now.Sub(t) < recheck }
	return fresh(g.emptyAt) && fresh(g.checked) && (g.timer == nil || now.Before(g.at))
}

// foundEmpty notes that pl's claim, begun when pl was parked, found nothing. An item
// queued during the claim has raised the count since pl.queued, which knownEmpty sees.
func (w *Waiters) foundEmpty(pl *poller) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := pl.env.group(pl.p.Reclaim)
	g.emptyAt, g.emptyQueued = w.cfg.Now(), pl.queued
}

// sleep marks a parked poller as waiting: it found no work, and from now on it may be
// handed an item. It makes sure its reclaim timer is set.
func (w *Waiters) sleep(ctx context.Context, pl *poller) {
	w.mu.Lock()
	if pl.el == nil { // already woken or taken: the caller sees it at once
		w.mu.Unlock()
		return
	}
	pl.asleep = true
	w.asleep++
	g := pl.env.group(pl.p.Reclaim)
	query := g.checked.IsZero() || w.cfg.Now().Sub(g.checked) >= recheck
	w.mu.Unlock()
	if query {
		w.rearm(ctx, pl.p)
	}
}

// rearm asks the store when the next delivered item of p's environment passes p's reclaim
// window, and sets the timer of the pollers with that window for it.
func (w *Waiters) rearm(ctx context.Context, p *Poll) {
	if w.cfg.NextReclaim == nil {
		return
	}
	at, ok, err := w.cfg.NextReclaim(ctx, p.Env, p.Reclaim)
	now := w.cfg.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.envs[p.Env]
	if e == nil || err != nil || w.closed {
		return
	}
	g := e.group(p.Reclaim)
	g.checked = now
	if ok {
		w.armLocked(p.Env, p.Reclaim, g, at)
	}
}

// fire is a reclaim timer's: an item has become deliverable to the pollers of env with
// this reclaim window, so one of them is woken, and it sets the timer again.
func (w *Waiters) fire(env string, reclaim time.Duration, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.envs[env]
	if e == nil {
		return
	}
	g := e.groups[reclaim]
	if g == nil || g.timer == nil || !g.at.Equal(at) {
		return // stopped or replaced meanwhile
	}
	g.timer = nil
	g.emptyAt = time.Time{} // an item is claimable again
	if !w.wakeLocked(env, reclaimed, reclaim) {
		g.checked = time.Time{} // nobody will ask the store for the next one: the next sleeper must
	}
	w.dropIfIdle(env, e)
}

// wakeLocked wakes the oldest parked poller of env for why; for a reclaim, the oldest
// sleeping one with that reclaim window, which then owns its window's timer. w.mu must
// be held.
func (w *Waiters) wakeLocked(env string, why wake, window time.Duration) bool {
	e := w.envs[env]
	if e == nil {
		return false
	}
	if why == newItem || why == resync {
		e.queued++
	}
	for el := e.pollers.Front(); el != nil; el = el.Next() {
		pl := el.Value.(*poller)
		if why == reclaimed && (!pl.asleep || pl.p.Reclaim != window) {
			continue
		}
		w.remove(pl)
		pl.woken = why
		close(pl.c)
		return true
	}
	return false
}

// passOn hands a wake-up that p will not use (or, for a resync, has used) to the next
// poller: a reclaim timer's to a poller with the same window, any other to the oldest
// poller of the environment.
func (w *Waiters) passOn(p *Poll, why wake) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if why == reclaimed && !w.wakeLocked(p.Env, why, p.Reclaim) {
		// Nobody else times this window now: the next sleeper asks the store.
		if e := w.envs[p.Env]; e != nil {
			e.group(p.Reclaim).checked = time.Time{}
		}
		return
	}
	if why != reclaimed {
		w.wakeLocked(p.Env, why, 0)
	}
}

// delivered notes a delivery in env at at: that item passes each window r at at+r, and
// the pollers with that window must wake then unless it has been acknowledged (a timer
// that finds it was is set again from the store). Deliveries of other replicas are not
// seen here: pollers learn of them when they next ask the store (recheck).
func (w *Waiters) delivered(env string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.envs[env]
	if e == nil {
		return
	}
	for r, g := range e.groups {
		w.armLocked(env, r, g, at.Add(r))
	}
}

// armLocked sets the reclaim timer of window r in env for at, unless it is set for an
// earlier moment already. w.mu must be held.
func (w *Waiters) armLocked(env string, r time.Duration, g *reclaimTimer, at time.Time) {
	if g.timer != nil {
		if !at.Before(g.at) {
			return
		}
		g.timer.Stop()
	}
	g.at = at
	g.timer = time.AfterFunc(at.Sub(w.cfg.Now()), func() { w.fire(env, r, at) })
}

// take removes the oldest sleeping poller of env from its list for a hand-off; nil when
// none sleeps.
func (w *Waiters) take(env string) *poller {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.envs[env]
	if e == nil {
		return nil
	}
	for el := e.pollers.Front(); el != nil; el = el.Next() {
		pl := el.Value.(*poller)
		if pl.asleep {
			w.remove(pl)
			pl.taken = true
			return pl
		}
	}
	return nil
}

// settle ends a hand-off: item is what was claimed for the taken poller, or nil for a
// plain wake-up.
func (w *Waiters) settle(pl *poller, item *work.Item) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if item != nil {
		c := *item
		pl.item = &c
	} else {
		pl.woken = newItem
	}
	close(pl.c)
}

// stop ends a sleeping poller's wait, whatever ended it: it returns the item handed to
// it, if any, and why it was woken, if it was. A poller taken for a hand-off still under
// way waits here until it is settled.
func (w *Waiters) stop(pl *poller) (item *work.Item, woken wake) {
	w.mu.Lock()
	if pl.el != nil {
		w.remove(pl)
		w.mu.Unlock()
		return nil, notWoken
	}
	taken := pl.taken
	w.mu.Unlock()
	if taken {
		<-pl.c
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return pl.item, pl.woken
}

// leave takes a poller off its list when it will not sleep (it found work, or its time
// is up). A wake-up it received meanwhile is passed on, since it will not claim for it.
func (w *Waiters) leave(pl *poller) {
	w.mu.Lock()
	if pl.el != nil {
		w.remove(pl)
	}
	woken := pl.woken
	w.mu.Unlock()
	if woken != notWoken {
		w.passOn(pl.p, woken)
	}
}

// remove takes pl off its list. w.mu must be held.
func (w *Waiters) remove(pl *poller) {
	e := pl.env
	if pl.asleep {
		w.asleep--
		pl.asleep = false
	}
	e.pollers.Remove(pl.el)
	pl.el = nil
	w.dropIfIdle(pl.p.Env, e)
}

// dropIfIdle forgets an environment that has no parked poller and no armed timer, so that
// the set holds only environments being polled. w.mu must be held.
func (w *Waiters) dropIfIdle(env string, e *envWait) {
	if e.pollers.Len() > 0 {
		return
	}
	for _, g := range e.groups {
		if g.timer != nil {
			return
		}
	}
	delete(w.envs, env)
}

// group returns the reclaim timer of the pollers with window r.
func (e *envWait) group(r time.Duration) *reclaimTimer {
	g := e.groups[r]
	if g == nil {
		g = &reclaimTimer{}
		e.groups[r] = g
	}
	return g
}

func (w *Waiters) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}
