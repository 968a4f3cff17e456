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
	for run := range 200 {
		prev := time.Duration(0)
		for i := range 12 {
			d := nextBackoff(prev, lo, hi)
			ceil := min(max(2*prev, lo), hi)
			if d > ceil || d < ceil*3/4 {
				t.Fatalf("run %d step %d: after %v waited %v, want within [%v, %v]", run, i, prev, d, ceil*3/4, ceil)
			}
			prev = d
		}
		if prev < 45*time.Second {
			t.Fatalf("run %d: after 12 failures the wait is %v, want it to have reached the 45–60 s band", run, prev)
		}
	}
	// Jitter: many workers that failed together do not retry in step.
	seen := map[time.Duration]bool{}
	for range 100 {
		seen[nextBackoff(0, lo, hi)] = true
	}
	if len(seen) < 50 {
		t.Errorf("100 first waits took only %d distinct values: no jitter", len(seen))
	}
}
