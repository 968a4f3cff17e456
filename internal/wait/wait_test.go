package wait

import (
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

func woken(w *Waiter) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func park(ws *Waiters, env string) *Waiter { return ws.Park(env, "", time.Second) }

func TestNotifyWakesOnePollerPerItemOldestFirst(t *testing.T) {
	t.Parallel()
	ws := New()
	a, b, c := park(ws, "env"), park(ws, "env"), park(ws, "env")
	other := park(ws, "other")
	for _, wt := range []*Waiter{a, b, c, other} {
		ws.Sleep(wt)
	}
	if got := ws.Notify("env", 1); got != 1 {
		t.Fatalf("Notify woke %d, want 1", got)
	}
	if !woken(a) || woken(b) || woken(c) || woken(other) {
		t.Fatal("one item must wake the oldest poller of its environment only")
	}
	if got := ws.Notify("env", 5); got != 2 {
		t.Fatalf("Notify(5) with two parked woke %d, want 2", got)
	}
	if !woken(b) || !woken(c) || woken(other) {
		t.Fatal("the remaining pollers of env should be woken, and only they")
	}
	if ws.Parked() != 1 {
		t.Fatalf("Parked = %d, want 1 (the other environment's)", ws.Parked())
	}
	for _, wt := range []*Waiter{a, b, c} {
		if item, wasWoken := ws.Stop(wt); item != nil || !wasWoken {
			t.Fatalf("Stop of a woken poller: %v, %v", item, wasWoken)
		}
	}
	if item, wasWoken := ws.Stop(other); item != nil || wasWoken {
		t.Fatalf("Stop of a poller never woken: %v, %v", item, wasWoken)
	}
	if ws.Parked() != 0 || ws.Notify("other", 1) != 0 {
		t.Fatal("a poller that stopped must not be woken")
	}
}

// A poller that leaves before sleeping (it found work of its own, or gives up) passes on
// a wake-up it received meanwhile; one that did not receive any passes nothing.
func TestUnusedWakeUpIsPassedOn(t *testing.T) {
	t.Parallel()
	ws := New()
	a, b := park(ws, "env"), park(ws, "env")
	ws.Sleep(b)
	ws.Notify("env", 1)
	if !woken(a) {
		t.Fatal("a not woken")
	}
	ws.Leave(a)
	if !woken(b) {
		t.Fatal("the unused wake-up was not passed on")
	}
	ws.Stop(b)
	c, d := park(ws, "env"), park(ws, "env")
	ws.Leave(c) // never woken: nothing to pass on
	if woken(d) {
		t.Fatal("a poller that was not woken passed a wake-up on")
	}
	ws.Leave(d)
	if ws.Parked() != 0 {
		t.Fatalf("Parked = %d after every poller left", ws.Parked())
	}
}

// Take picks the oldest sleeping poller only: one still looking for work of its own
// could end up with two items.
func TestTakeSkipsPollersNotYetAsleep(t *testing.T) {
	t.Parallel()
	ws := New()
	busy, a, b := park(ws, "env"), park(ws, "env"), park(ws, "env")
	ws.Sleep(b)
	ws.Sleep(a)
	if got := ws.Take("env"); got != a {
		t.Fatalf("Take returned %p, want the oldest sleeping poller %p", got, a)
	}
	if got := ws.Take("other"); got != nil {
		t.Fatal("Take in an environment without pollers returned one")
	}
	if ws.Parked() != 1 {
		t.Fatalf("Parked = %d after a Take of two sleeping pollers and one busy, want 1 (the busy one is not waiting)", ws.Parked())
	}
	ws.Leave(busy)
	if got := ws.Take("env"); got != b {
		t.Fatal("the second Take did not return the other sleeping poller")
	}
	if ws.Take("env") != nil {
		t.Fatal("a third Take returned a poller")
	}
}

// A taken poller that stops waiting (its block_ms ran out, say) before its hand-off is
// settled waits for it in Stop, and gets the handed item; a hand-off without an item is
// an ordinary wake-up.
func TestStopWaitsForTheHandOff(t *testing.T) {
	t.Parallel()
	ws := New()
	a := park(ws, "env")
	ws.Sleep(a)
	if ws.Take("env") != a {
		t.Fatal("Take did not return the sleeping poller")
	}
	got := make(chan *work.Item, 1)
	go func() {
		item, _ := ws.Stop(a)
		got <- item
	}()
	select {
	case <-got:
		t.Fatal("Stop returned before the hand-off was settled")
	case <-time.After(20 * time.Millisecond):
	}
	ws.Hand(a, &work.Item{ID: "work_1"})
	if item := <-got; item == nil || item.ID != "work_1" {
		t.Fatalf("Stop returned %v, want work_1", item)
	}
	if !woken(a) {
		t.Fatal("C is not closed after the hand-off")
	}

	b := park(ws, "env")
	ws.Sleep(b)
	ws.Take("env")
	ws.Hand(b, nil)
	if item, wasWoken := ws.Stop(b); item != nil || !wasWoken {
		t.Fatalf("a hand-off without an item: Stop = %v, %v; want a plain wake-up", item, wasWoken)
	}
	if ws.Parked() != 0 {
		t.Fatalf("Parked = %d", ws.Parked())
	}
}
