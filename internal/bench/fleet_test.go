package bench

import (
	"context"
	"testing"
	"time"
)

// A small fleet against a real in-process server: every worker polls with its own
// Worker-ID on its own keep-alive connection, every poll is answered null, and the
// figures add up. How fast is for `berth bench fleet` to say, not this test.
func TestFleetRunsAndReports(t *testing.T) {
	t.Parallel()
	const workers = 20
	pause := [2]time.Duration{0, 10 * time.Millisecond}
	r, err := Fleet(context.Background(), Options{Workers: workers, Duration: time.Second, fleetPause: &pause})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || len(r.ErrorSamples) != 0 || r.Delivered != 0 {
		t.Fatalf("%d polls failed (%q), %d delivered an item", r.Errors, r.ErrorSamples, r.Delivered)
	}
	if r.Workers != workers || r.BlockMS != 999 || r.PauseMS != [2]int{0, 10} {
		t.Errorf("fleet shape: %d workers, block_ms %d, pause %v", r.Workers, r.BlockMS, r.PauseMS)
	}
	// The warm-up ends once every worker's first poll has been answered, and the server
	// counts each Worker-ID once.
	if r.WarmupPolls < workers || r.WorkersPolling != workers {
		t.Errorf("%d polls answered in the warm-up, server counts %d workers polling; want at least %d and %d", r.WarmupPolls, r.WorkersPolling, workers, workers)
	}
	if r.Connections != workers {
		t.Errorf("%d connections opened for %d workers: keep-alive did not hold one per worker", r.Connections, workers)
	}
	if r.BeyondBlock.Count != int(r.Polls) || r.Seconds <= 0 || r.PollsPerSec != float64(r.Polls)/r.Seconds {
		t.Errorf("%d polls in %.3f s at %.1f/s, %d latencies", r.Polls, r.Seconds, r.PollsPerSec, r.BeyondBlock.Count)
	}
	if r.BeyondBlock.Max < r.BeyondBlock.P99 || r.BeyondBlock.P99 < r.BeyondBlock.P50 {
		t.Errorf("latency beyond the block out of order: %+v", r.BeyondBlock)
	}
	if rt := r.ServerRuntime; rt == nil || rt.Goroutines < workers || rt.HeapInuseBytes <= 0 || rt.StackInuseBytes <= 0 {
		t.Errorf("server runtime figures: %+v", rt)
	}
	// In-process there is no server process of its own to measure; this one is.
	if r.Server != nil {
		t.Errorf("in-process run reports a server process: %+v", r.Server)
	}
	if l := r.LoadGenerator; l == nil || l.PeakRSSBytes <= 0 || l.CPUSeconds < 0 || l.Seconds <= 0 {
		t.Errorf("load generator figures: %+v", l)
	}
}
