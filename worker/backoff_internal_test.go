package worker

import (
	"context"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// The poll backoff of a worker with default settings starts at about 1 s, doubles, and
// settles at about 60 s, each wait shortened by a random jitter of up to a quarter.
func TestDefaultBackoffIsOneSecondToAMinuteWithJitter(t *testing.T) {
	c, err := client.New("http://127.0.0.1:1/api/v1/cloud", "pt-x")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{Client: c, EnvironmentID: "env_x", WorkerID: "w",
		Handler: HandlerFunc(func(context.Context, Job) (int, error) { return 0, nil })})
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := w.cfg.BackoffMin, w.cfg.BackoffMax
	if lo != time.Second || hi != time.Minute {
		t.Fatalf("default backoff %v..%v, want 1s..1m0s", lo, hi)
	}
	b := client.Backoff{Initial: lo, Max: hi}
	for run := range 200 {
		ceil := lo
		for i := range 12 {
			d := b.Delay(i)
			if d > ceil || d < ceil*3/4 {
				t.Fatalf("run %d step %d: waited %v, want within [%v, %v]", run, i, d, ceil*3/4, ceil)
			}
			ceil = min(2*ceil, hi)
		}
		if d := b.Delay(12); d < 45*time.Second {
			t.Fatalf("run %d: after 13 failures the wait is %v, want it to have reached the 45–60 s band", run, d)
		}
	}
	// Jitter: many workers that failed together do not retry in step.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[b.Delay(0)] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 first waits took only %d distinct values: no jitter", len(seen))
	}
}
