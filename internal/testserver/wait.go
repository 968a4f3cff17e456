package testserver

import (
	"testing"
	"time"
)

// WaitFor calls cond until it reports true, a few milliseconds apart, and fails the test
// with what if that takes longer than HangGuard. It is for states seen from outside a
// server (a gauge, an item's state): there is no signal to wait on, so the state is read
// until it holds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	guard := time.Now().Add(HangGuard)
	for !cond() {
		if time.Now().After(guard) {
			t.Fatalf("%s: not after %v", what, HangGuard)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
