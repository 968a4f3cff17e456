package testserver

import (
	"sync"
	"time"
)

// Clock is a clock the test moves by hand. Its zero value is not usable; use NewClock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// Epoch is where NewClock starts: a fixed instant, so that timestamps in answers are
// the same from run to run.
var Epoch = time.Date(2026, 7, 1, 8, 15, 0, 0, time.UTC)

// NewClock returns a clock at Epoch.
func NewClock() *Clock { return &Clock{now: Epoch} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}
