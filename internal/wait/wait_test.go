package wait

import (
	"testing"
)

func woken(w *Waiter) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func TestNotifyWakesOnePollerPerItemOldestFirst(t *testing.T) {
	t.Parallel()
	ws := New()
	a, b, c := ws.Park("env"), ws.Park("env"), ws.Park("env")
	other := ws.Park("other")
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
	ws.Leave(a, true)
	ws.Leave(b, true)
	ws.Leave(c, true)
	ws.Leave(other, false)
	if ws.Parked() != 0 || ws.Notify("other", 1) != 0 {
		t.Fatal("a poller that left must not be woken")
	}
}

func TestUnusedWakeUpIsPassedOn(t *testing.T) {
	t.Parallel()
	ws := New()
	a, b := ws.Park("env"), ws.Park("env")
	ws.Notify("env", 1)
	if !woken(a) {
		t.Fatal("a not woken")
	}
	// a gives up without polling for the item it was woken for: b must get the wake-up.
	ws.Leave(a, false)
	if !woken(b) {
		t.Fatal("the unused wake-up was not passed on")
	}
	ws.Leave(b, true)
	// A used wake-up is not passed on.
	c, d := ws.Park("env"), ws.Park("env")
	ws.Notify("env", 1)
	<-c.C
	ws.Leave(c, true)
	if woken(d) {
		t.Fatal("a used wake-up was passed on")
	}
	ws.Leave(d, false)
	if ws.Parked() != 0 {
		t.Fatalf("Parked = %d after every poller left", ws.Parked())
	}
}
