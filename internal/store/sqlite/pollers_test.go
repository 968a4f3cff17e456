package sqlite

import (
	"fmt"
	"testing"
	"time"
)

// The pollers a server remembers are bounded, whatever Worker-IDs its clients send: past
// maxPollers the oldest go first, and an environment's go with it.
func TestPollersStayBounded(t *testing.T) {
	t.Parallel()
	p := newPollers()
	t0 := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	for i := range maxPollers + maxPollers/2 {
		p.record("env_a", fmt.Sprint("w", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if p.n > maxPollers {
		t.Fatalf("%d pollers remembered, want at most %d", p.n, maxPollers)
	}
	newest := fmt.Sprint("w", maxPollers+maxPollers/2-1)
	if _, ok := p.env["env_a"][newest]; !ok {
		t.Errorf("the newest poll was dropped")
	}
	if _, ok := p.env["env_a"]["w0"]; ok {
		t.Errorf("the oldest poll was kept")
	}
	p.record("env_b", "w", t0.Add(time.Hour))
	p.forget("env_a")
	if p.n != 1 || len(p.env) != 1 {
		t.Errorf("after the environment went: %d pollers in %d environments, want 1 in 1", p.n, len(p.env))
	}
	p.prune(t0.Add(2 * time.Hour))
	if p.n != 0 || len(p.env) != 0 {
		t.Errorf("after a prune past every poll: %d pollers in %d environments", p.n, len(p.env))
	}
}
