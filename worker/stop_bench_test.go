package worker_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-sh/berth/worker"
)

// BenchmarkStopToCommandSignalled measures how long an operator's graceful stop takes to
// reach the command, with the worker's defaults (`berth worker`'s default flags: 60 s
// lease, so a heartbeat every 20 s; a state read about every second; 10 s kill grace):
// from just before the stop call is sent to the moment the worker logs the line the
// command's SIGTERM trap prints. Each op is one item: it runs (eight at a time), and its
// stop is sent at a random moment up to 2 s after the command started, so that stops
// fall anywhere between two state reads. It reports the p50, p99 and max latency.
//
//	go test -run '^$' -bench StopToCommandSignalled -benchtime 200x ./worker/
func BenchmarkStopToCommandSignalled(b *testing.B) {
	bn := newBench(b)
	const capacity = 8
	command := `trap 'echo "got TERM $BERTH_WORK_ID"; exit 0' TERM; echo "ready $BERTH_WORK_ID"; sleep 600 & wait`
	bn.start(worker.Config{Capacity: capacity, Handler: &worker.Exec{Command: command, KillGrace: 10 * time.Second}})

	var mu sync.Mutex
	sent := map[string]time.Time{} // work ID → when its stop was sent
	slots := make(chan struct{}, capacity)
	var wg sync.WaitGroup
	b.ResetTimer()
	for range b.N {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			_, item := bn.session(nil)
			bn.log.waitFor(b, "ready "+item.ID)
			time.Sleep(rand.N(2 * time.Second))
			at := time.Now()
			if _, err := bn.admin.StopWork(context.Background(), bn.env, item.ID, false); err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			sent[item.ID] = at
			mu.Unlock()
			bn.log.waitFor(b, "got TERM "+item.ID)
		})
	}
	wg.Wait()
	b.StopTimer()

	var lat []time.Duration
	for _, l := range bn.log.lines() {
		msg, _ := l["msg"].(string)
		id, ok := strings.CutPrefix(msg, "got TERM ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, l["time"].(string))
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, at.Sub(sent[id]))
	}
	if len(lat) != b.N {
		b.Fatalf("%d commands got SIGTERM, want %d", len(lat), b.N)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
}
