package wait_test

// The wake-one protocol under testing/synctest: time is the bubble's fake clock, and
// synctest.Wait returns only when every poll has done all it can, so each test decides the
// interleaving and a lost wake-up shows as a poll asleep while an item it could take
// waits. Nothing here depends on how fast the machine is.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-sh/berth/internal/wait"
	"github.com/berth-sh/berth/internal/work"
)

// queue is the work queue of one environment as the store keeps it: items in ID order,
// each delivered (to whom, when) or not, acknowledged or not. It claims and computes the
// next reclaim exactly as store.Store's ClaimWork and NextReclaim are specified.
type queue struct {
	mu     sync.Mutex
	items  []*item
	claims int         // Claim calls, successful or not
	times  []time.Time // when each was made
	next   int
}

type item struct {
	id          string
	deliveredAt time.Time // zero: never delivered
	worker      string
	acked       bool
}

func (q *queue) add() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.next++
	it := &item{id: fmt.Sprintf("work_%04d", q.next)}
	q.items = append(q.items, it)
	return it.id
}

func (q *queue) deliverable(it *item, reclaim time.Duration, now time.Time) bool {
	return !it.acked && (it.deliveredAt.IsZero() || !now.Before(it.deliveredAt.Add(reclaim)))
}

// claimLocked delivers the oldest item deliverable with reclaim. q.mu must be held.
func (q *queue) claimLocked(worker string, reclaim time.Duration) (work.Item, bool) {
	now := time.Now()
	for _, it := range q.items {
		if q.deliverable(it, reclaim, now) {
			it.deliveredAt, it.worker = now, worker
			return work.Item{ID: it.id, DeliveredAt: now, DeliveredTo: worker}, true
		}
	}
	return work.Item{}, false
}

func (q *queue) claim(ctx context.Context, worker string, reclaim time.Duration) (work.Item, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.claims++
	q.times = append(q.times, time.Now())
	if err := ctx.Err(); err != nil {
		return work.Item{}, false, err // as a store's query with a cancelled context
	}
	it, ok := q.claimLocked(worker, reclaim)
	return it, ok, nil
}

func (q *queue) nextReclaim(_ context.Context, _ string, reclaim time.Duration) (time.Time, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var at time.Time
	for _, it := range q.items {
		if !it.acked && !it.deliveredAt.IsZero() {
			if t := it.deliveredAt.Add(reclaim); at.IsZero() || t.Before(at) {
				at = t
			}
		}
	}
	return at, !at.IsZero(), nil
}

// ack acknowledges an item: it is never deliverable again.
func (q *queue) ack(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if it.id == id {
			it.acked = true
		}
	}
}

func (q *queue) claimCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.claims
}

// claimsAt returns how many claims were made at the instant at.
func (q *queue) claimsAt(at time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, t := range q.times {
		if t.Equal(at) {
			n++
		}
	}
	return n
}

// anyDeliverable reports an item deliverable now with reclaim.
func (q *queue) anyDeliverable(reclaim time.Duration) (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, it := range q.items {
		if q.deliverable(it, reclaim, time.Now()) {
			return it.id, true
		}
	}
	return "", false
}

// fixture is a Waiters over one queue, with the polls started on it.
type fixture struct {
	t  *testing.T
	q  *queue
	ws *wait.Waiters
}

// newFixture makes a fixture inside a synctest bubble; the caller defers close.
func newFixture(t *testing.T) *fixture {
	q := &queue{}
	return &fixture{t: t, q: q, ws: wait.New(wait.Config{NextReclaim: q.nextReclaim})}
}

// close ends every poll still waiting, so that the bubble can end.
func (f *fixture) close() {
	f.ws.Close()
	synctest.Wait()
}

const env = "env_1"

// pending is a poll running in its own goroutine.
type pending struct {
	worker  string
	reclaim time.Duration
	cancel  context.CancelFunc
	started time.Time
	done    chan struct{}
	item    work.Item
	ok      bool
	err     error
	at      time.Time // when it answered
}

func (p *pending) answered() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// poll starts a poll and waits until it has claimed in vain and sleeps (or answered).
func (f *fixture) poll(worker string, reclaim, block time.Duration) *pending {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pending{worker: worker, reclaim: reclaim, cancel: cancel, started: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer cancel()
		p.item, p.ok, p.err = f.ws.Poll(ctx, &wait.Poll{Env: env, WorkerID: worker, Reclaim: reclaim, Block: block,
			Claim: func(ctx context.Context) (work.Item, bool, error) { return f.q.claim(ctx, worker, reclaim) }})
		p.at = time.Now()
	}()
	synctest.Wait()
	return p
}

// enqueue adds an item through Enqueue, claiming it for a taken poller as a store's
// CreateSession with a claim would: in the same step that creates it.
func (f *fixture) enqueue() string {
	var id string
	err := f.ws.Enqueue(env, func(p *wait.Poll) (*work.Item, *work.Item, error) {
		f.q.mu.Lock()
		defer f.q.mu.Unlock()
		f.q.next++
		id = fmt.Sprintf("work_%04d", f.q.next)
		f.q.items = append(f.q.items, &item{id: id})
		queued := &work.Item{ID: id}
		if p == nil {
			return queued, nil, nil
		}
		if it, ok := f.q.claimLocked(p.WorkerID, p.Reclaim); ok {
			return queued, &it, nil
		}
		return queued, nil, nil
	})
	if err != nil {
		f.t.Fatalf("Enqueue: %v", err)
	}
	synctest.Wait()
	return id
}

// queued adds an item and reports it with Queued, as a dormant wake-up or another
// replica's item is.
func (f *fixture) queued() string {
	id := f.q.add()
	f.ws.Queued(env)
	synctest.Wait()
	return id
}

func (f *fixture) wantParked(n int) {
	f.t.Helper()
	if got := f.ws.Parked(); got != n {
		f.t.Fatalf("%d polls parked, want %d", got, n)
	}
}

// got returns the item a poll answered with, failing if it has not answered with one.
func (p *pending) got(t *testing.T) string {
	t.Helper()
	if !p.answered() {
		t.Fatalf("poll of %s has not answered", p.worker)
	}
	if p.err != nil || !p.ok {
		t.Fatalf("poll of %s answered ok=%v err=%v, want an item", p.worker, p.ok, p.err)
	}
	return p.item.ID
}

func (p *pending) wantNull(t *testing.T) {
	t.Helper()
	if !p.answered() {
		t.Fatalf("poll of %s has not answered", p.worker)
	}
	if p.ok || p.err != nil {
		t.Fatalf("poll of %s answered %s (err %v), want nothing", p.worker, p.item.ID, p.err)
	}
}

// One new item wakes exactly one of many parked polls: one claim, the oldest poll, at
// once; the others sleep on.
func TestNewItemWakesOnePoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		var polls []*pending
		for i := range 5 {
			polls = append(polls, f.poll(fmt.Sprint("w", i), 5*time.Second, 999*time.Millisecond))
		}
		f.wantParked(5)
		claims := f.q.claimCount()
		id := f.queued()
		if got := polls[0].got(t); got != id {
			t.Fatalf("oldest poll got %s, want %s", got, id)
		}
		if polls[0].at != polls[0].started {
			t.Errorf("the woken poll answered %v after it started: it waited", polls[0].at.Sub(polls[0].started))
		}
		if n := f.q.claimCount() - claims; n != 1 {
			t.Errorf("one new item cost %d claims, want 1", n)
		}
		f.wantParked(4)
		for _, p := range polls[1:] {
			if p.answered() {
				t.Fatalf("poll of %s answered: it should sleep on", p.worker)
			}
		}
		// Three more items: three more polls, one each, in the order they parked.
		ids := []string{f.queued(), f.enqueue(), f.queued()}
		for i, id := range ids {
			if got := polls[1+i].got(t); got != id {
				t.Errorf("poll %d got %s, want %s", 1+i, got, id)
			}
		}
		f.wantParked(1)
		time.Sleep(time.Second)
		polls[4].wantNull(t)
		f.wantParked(0)
	})
}

// Enqueue hands the new item to the oldest sleeping poll without it claiming; when an
// older item is deliverable, that one is handed over and another poll is woken for the
// new one.
func TestEnqueueHandsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		a := f.poll("A", 5*time.Second, 999*time.Millisecond)
		b := f.poll("B", 5*time.Second, 999*time.Millisecond)
		claims := f.q.claimCount()
		id := f.enqueue()
		if got := a.got(t); got != id {
			t.Fatalf("A got %s, want %s", got, id)
		}
		if a.item.DeliveredTo != "A" {
			t.Errorf("handed item delivered to %q, want A", a.item.DeliveredTo)
		}
		if n := f.q.claimCount() - claims; n != 0 {
			t.Errorf("the hand-off cost the polls %d claims, want 0", n)
		}
		f.wantParked(1)
		f.q.ack(id)

		// An older item that nobody was told of (as an item of another replica whose
		// notification is late): the hand-off delivers it, the oldest, to B, and the new
		// item must still wake a poll, C, at once.
		c := f.poll("C", 5*time.Second, 999*time.Millisecond)
		older := f.q.add()
		newer := f.enqueue()
		if got := b.got(t); got != older {
			t.Fatalf("B got %s, want the older %s", got, older)
		}
		if got := c.got(t); got != newer {
			t.Fatalf("C got %s, want %s", got, newer)
		}
		if c.at != c.started {
			t.Errorf("C waited %v for the new item", c.at.Sub(c.started))
		}
	})
}

// A poll woken for an item that then gives up (its request ends at the same moment, or
// its block had run out while it claimed) passes the wake-up on: the next poll gets the
// item at once, not when its own block runs out.
func TestUnusedWakeUpIsPassedOn(t *testing.T) {
	t.Run("request ends as it is woken", func(t *testing.T) {
		// The poll sees its wake-up and the end of its request together, in either order.
		for round := range 50 {
			synctest.Test(t, func(t *testing.T) {
				f := newFixture(t)
				defer f.close()
				a := f.poll("A", 5*time.Second, 999*time.Millisecond)
				b := f.poll("B", 5*time.Second, 999*time.Millisecond)
				id := f.q.add()
				// The queue's lock makes the two one step for A: goroutines run in
				// parallel even in a bubble, and a claim of A's between the two would be
				// a claim made before its request ended, rightly answered.
				f.q.mu.Lock()
				if round%2 == 0 {
					f.ws.Queued(env)
					a.cancel()
				} else {
					a.cancel()
					f.ws.Queued(env)
				}
				f.q.mu.Unlock()
				synctest.Wait()
				if !a.answered() {
					t.Fatal("A has not answered")
				}
				if a.ok || a.err == nil && a.item.ID != "" {
					t.Fatalf("A answered %s after its request ended", a.item.ID)
				}
				if got := b.got(t); got != id {
					t.Fatalf("B got %s, want %s", got, id)
				}
				if b.at != b.started {
					t.Errorf("B waited %v: the wake-up was lost", b.at.Sub(b.started))
				}
			})
		}
	})
	t.Run("woken while claiming in vain with no time left", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t)
			defer f.close()
			// A claims (finding nothing) but answers only when the test lets it; block 0:
			// it will not wait after that claim.
			looked, release := make(chan struct{}), make(chan struct{})
			aDone := make(chan bool)
			go func() {
				_, ok, _ := f.ws.Poll(context.Background(), &wait.Poll{Env: env, WorkerID: "A", Reclaim: 5 * time.Second,
					Claim: func(ctx context.Context) (work.Item, bool, error) {
						it, ok, err := f.q.claim(ctx, "A", 5*time.Second)
						close(looked)
						<-release
						return it, ok, err
					}})
				aDone <- ok
			}()
			<-looked
			b := f.poll("B", 5*time.Second, 999*time.Millisecond)
			id := f.q.add()
			f.ws.Queued(env) // wakes A, the oldest parked poll, still claiming
			close(release)
			if <-aDone {
				t.Fatal("A found an item")
			}
			synctest.Wait()
			if got := b.got(t); got != id {
				t.Fatalf("B got %s, want %s", got, id)
			}
			if b.at != b.started {
				t.Errorf("B waited %v: the wake-up was lost", b.at.Sub(b.started))
			}
		})
	})
}

// A poll sleeps without asking the store while a claim with its reclaim window found
// nothing less than a second ago and nothing was queued since; anything that may have
// made an item deliverable sends the next poll to the store.
func TestEmptyPollsSkipTheClaim(t *testing.T) {
	const block = time.Minute
	wantClaims := func(t *testing.T, f *fixture, want int, why string) {
		t.Helper()
		if got := f.q.claimCount(); got != want {
			t.Errorf("%s: %d claims, want %d", why, got, want)
		}
	}
	t.Run("AfterAnEmptyClaim", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t)
			defer f.close()
			a := f.poll("A", 5*time.Second, block)
			wantClaims(t, f, 1, "the first poll")
			f.poll("B", 5*time.Second, block)
			f.poll("C", 5*time.Second, 0)
			wantClaims(t, f, 1, "two polls just after an empty claim")
			f.poll("D", 7*time.Second, block)
			wantClaims(t, f, 2, "a poll with another reclaim window")

			// A new item wakes the oldest poll, which claims it; the next poll asks the
			// store again.
			id := f.q.add()
			f.ws.Queued(env)
			synctest.Wait()
			if a.got(t) != id {
				t.Fatalf("A got %s, want %s", a.item.ID, id)
			}
			wantClaims(t, f, 3, "the poll woken for a new item")
			f.poll("E", 5*time.Second, block)
			wantClaims(t, f, 4, "a poll after an item was queued")
			f.poll("F", 5*time.Second, block)
			wantClaims(t, f, 4, "a poll just after that")

			time.Sleep(time.Second)
			f.poll("G", 5*time.Second, block)
			wantClaims(t, f, 5, "a poll a second after the last empty claim")
		})
	})
	t.Run("ItemQueuedDuringTheClaim", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t)
			defer f.close()
			// A's claim read the store before the item was queued, and answers after.
			claiming, answer := make(chan struct{}), make(chan struct{})
			aDone := make(chan bool)
			go func() {
				_, ok, _ := f.ws.Poll(context.Background(), &wait.Poll{Env: env, WorkerID: "A", Reclaim: 5 * time.Second,
					Claim: func(context.Context) (work.Item, bool, error) {
						close(claiming)
						<-answer
						return work.Item{}, false, nil
					}})
				aDone <- ok
			}()
			<-claiming
			id := f.q.add()
			f.ws.Queued(env) // nobody sleeps yet
			close(answer)
			if <-aDone {
				t.Fatal("A found an item")
			}
			b := f.poll("B", 5*time.Second, block)
			if b.got(t) != id {
				t.Fatalf("B got %s, want %s", b.item.ID, id)
			}
		})
	})
	t.Run("AfterAHandOff", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := newFixture(t)
			defer f.close()
			f.poll("A", 5*time.Second, block)
			f.poll("C", 5*time.Second, block)
			// Enqueue with a creator that stores the item but claims nothing: the oldest
			// sleeping poll is woken, and a new poll asks the store as well.
			var id string
			if err := f.ws.Enqueue(env, func(*wait.Poll) (*work.Item, *work.Item, error) {
				id = f.q.add()
				return &work.Item{ID: id}, nil, nil
			}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			n := f.q.claimCount()
			f.poll("B", 5*time.Second, 0)
			wantClaims(t, f, n+1, "a poll after Enqueue")
		})
	})
}

// A delivered, unacknowledged item passing its reclaim window wakes one sleeping poll,
// not all of them, at that moment; the timer is then set for the next such item.
func TestReclaimWakesOnePoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		first := f.q.add()
		x := f.poll("X", 5*time.Second, 0)
		if x.got(t) != first {
			t.Fatalf("X got %s", x.item.ID)
		}
		time.Sleep(2 * time.Second)
		second := f.q.add()
		y := f.poll("Y", 5*time.Second, 0)
		if y.got(t) != second {
			t.Fatalf("Y got %s", y.item.ID)
		}
		// first passes its window at 5 s, second at 7 s.
		// The polls block for longer than the test runs, so that the only claims at the
		// moments the items pass their window are those the reclaim timer causes.
		const block = 8 * time.Second
		var polls []*pending
		for i := range 20 {
			polls = append(polls, f.poll(fmt.Sprint("p", i), 5*time.Second, block))
		}
		start := time.Now()
		claims, started := f.q.claimCount(), 0
		// A poll that got an item is started again at once, as workers do, until both
		// items were reclaimed.
		var got []string
		for len(got) < 2 && time.Since(start) < 10*time.Second {
			time.Sleep(time.Millisecond)
			for i, p := range polls {
				if !p.answered() {
					continue
				}
				if p.ok {
					got = append(got, p.item.ID)
					want := []time.Duration{3 * time.Second, 5 * time.Second}[len(got)-1]
					if p.at.Sub(start) != want {
						t.Errorf("%s reclaimed %v after the polls began, want %v", p.item.ID, p.at.Sub(start), want)
					}
				}
				// Started again a millisecond later, so that its claim is not counted
				// with the reclaim's below.
				time.Sleep(time.Millisecond)
				polls[i] = f.poll(p.worker, 5*time.Second, block)
				started++
			}
		}
		if !slices.Equal(got, []string{first, second}) {
			t.Fatalf("reclaimed %v, want %v", got, []string{first, second})
		}
		// Each reclaim costs one claim at its moment, not one per sleeping poll; and a
		// poll claims at most once when it starts (not at all while a claim has just
		// found nothing: see TestEmptyPollsSkipTheClaim).
		for _, at := range []time.Duration{3 * time.Second, 5 * time.Second} {
			if n := f.q.claimsAt(start.Add(at)); n != 1 {
				t.Errorf("%d claims when an item passed its window at %v, want 1", n, at)
			}
		}
		if extra := f.q.claimCount() - claims - started; extra > 2 {
			t.Errorf("two reclaims cost %d claims beyond one per poll started, want at most 2", extra)
		}
		for _, p := range polls {
			p.cancel()
		}
		synctest.Wait()
	})
}

// Two items passing their window at the same instant wake two polls.
func TestReclaimOfTwoItemsAtOnceWakesTwo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		a, b := f.q.add(), f.q.add()
		x1 := f.poll("X", time.Second, 0)
		x2 := f.poll("X", time.Second, 0)
		if x1.got(t) != a || x2.got(t) != b {
			t.Fatalf("X got %s and %s", x1.item.ID, x2.item.ID)
		}
		time.Sleep(500 * time.Millisecond)
		var polls []*pending
		for i := range 5 {
			polls = append(polls, f.poll(fmt.Sprint("p", i), time.Second, 999*time.Millisecond))
		}
		claims := f.q.claimCount()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if polls[0].got(t) != a || polls[1].got(t) != b {
			t.Fatalf("reclaims: %s, %s; want %s, %s", polls[0].item.ID, polls[1].item.ID, a, b)
		}
		for _, p := range polls[2:] {
			if p.answered() {
				t.Errorf("poll of %s answered: two items wake two polls", p.worker)
			}
		}
		if n := f.q.claimCount() - claims; n > 3 {
			t.Errorf("two reclaims cost %d claims, want at most 3", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
	})
}

// Close answers every sleeping poll at once, and later polls do not wait.
func TestCloseEndsEveryPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		var polls []*pending
		for i := range 3 {
			polls = append(polls, f.poll(fmt.Sprint("w", i), 5*time.Second, 999*time.Millisecond))
		}
		f.ws.Close()
		synctest.Wait()
		for _, p := range polls {
			p.wantNull(t)
			if p.at != p.started {
				t.Errorf("poll of %s answered %v after Close", p.worker, p.at.Sub(p.started))
			}
		}
		late := f.poll("late", 5*time.Second, 999*time.Millisecond)
		late.wantNull(t)
		if late.at != late.started {
			t.Errorf("a poll after Close waited %v", late.at.Sub(late.started))
		}
		f.wantParked(0)
	})
}

// A poll taken for a hand-off whose request ends before the hand-off is settled still
// answers with the item: it is delivered to it.
func TestHandOffSurvivesTheEndOfTheRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		a := f.poll("A", 5*time.Second, 999*time.Millisecond)
		err := f.ws.Enqueue(env, func(p *wait.Poll) (*work.Item, *work.Item, error) {
			if p == nil || p.WorkerID != "A" {
				t.Fatalf("Enqueue gave %+v, want A's poll", p)
			}
			a.cancel() // A's request ends while its item is being made
			synctest.Wait()
			if a.answered() {
				t.Fatal("A answered before its hand-off was settled")
			}
			id := f.q.add()
			f.q.mu.Lock()
			defer f.q.mu.Unlock()
			it, ok := f.q.claimLocked(p.WorkerID, p.Reclaim)
			if !ok || it.ID != id {
				t.Fatalf("claim for A: %v %v", it, ok)
			}
			return &work.Item{ID: id}, &it, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if a.got(t) != "work_0001" {
			t.Fatalf("A got %s", a.item.ID)
		}
	})
}

// A failed create wakes the taken poll, which claims for itself.
func TestFailedEnqueueWakesTheTakenPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		a := f.poll("A", 5*time.Second, 999*time.Millisecond)
		boom := errors.New("boom")
		err := f.ws.Enqueue(env, func(p *wait.Poll) (*work.Item, *work.Item, error) {
			f.q.add() // the item was stored, but the claim failed
			return nil, nil, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Enqueue: %v", err)
		}
		synctest.Wait()
		if a.got(t) != "work_0001" {
			t.Fatalf("A got %s", a.item.ID)
		}
	})
}

// The invariant, under random schedules: whenever every poll has done all it can, no
// poll sleeps while an item it could take is deliverable. Items come through Queued and
// Enqueue, deliveries are acknowledged or left to their reclaim window, requests end,
// blocks run out, and time moves, in an order chosen by the seed.
func TestNoPollSleepsBesideDeliverableWork(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		synctest.Test(t, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			f := newFixture(t)
			defer f.close()
			defer f.close()
			var live []*pending
			delivered := map[string]bool{}
			windows := []time.Duration{0, 300 * time.Millisecond, time.Second, 5 * time.Second}
			for step := range 120 {
				switch r := rng.IntN(100); {
				case r < 35:
					live = append(live, f.poll(fmt.Sprint("w", rng.IntN(4)), windows[rng.IntN(len(windows))],
						time.Duration(rng.IntN(999)+1)*time.Millisecond))
				case r < 50:
					f.queued()
				case r < 60:
					f.enqueue()
				case r < 70 && len(delivered) > 0:
					for id := range delivered {
						f.q.ack(id)
						delete(delivered, id)
						break
					}
					synctest.Wait()
				case r < 78 && len(live) > 0:
					live[rng.IntN(len(live))].cancel()
					synctest.Wait()
				default:
					time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
					synctest.Wait()
				}
				kept := live[:0]
				for _, p := range live {
					if !p.answered() {
						kept = append(kept, p)
						continue
					}
					if p.err != nil && !errors.Is(p.err, context.Canceled) {
						t.Fatalf("seed %d step %d: poll error %v", seed, step, p.err)
					}
					if p.ok {
						delivered[p.item.ID] = true
					}
				}
				live = kept
				if got := f.ws.Parked(); got != len(live) {
					t.Fatalf("seed %d step %d: %d polls parked, %d waiting", seed, step, got, len(live))
				}
				for _, p := range live {
					if id, ok := f.q.anyDeliverable(p.reclaim); ok {
						t.Fatalf("seed %d step %d: poll of %s (window %v) sleeps while %s is deliverable to it",
							seed, step, p.worker, p.reclaim, id)
					}
				}
			}
			f.ws.Close()
			synctest.Wait()
		})
	}
}

// Resync (notices of new items may have been missed) wakes pollers until one claims in
// vain: every missed item is claimed, at once, at the cost of one extra claim.
func TestResyncClaimsEveryMissedItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		defer f.close()
		var polls []*pending
		for i := range 5 {
			polls = append(polls, f.poll(fmt.Sprint("w", i), 5*time.Second, 999*time.Millisecond))
		}
		missed := []string{f.q.add(), f.q.add(), f.q.add()} // nobody told
		claims := f.q.claimCount()
		f.ws.Resync()
		synctest.Wait()
		for i, id := range missed {
			if got := polls[i].got(t); got != id {
				t.Errorf("poll %d got %s, want %s", i, got, id)
			}
		}
		f.wantParked(2)
		if n := f.q.claimCount() - claims; n != 4 {
			t.Errorf("a resync with three missed items cost %d claims, want 4", n)
		}
	})
}
