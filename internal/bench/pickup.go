package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
)

// PickupResult is the outcome of the pickup scenario.
type PickupResult struct {
	Target  string  `json:"target"`
	Pollers int     `json:"pollers"`
	Pickup  Latency `json:"pickup"`
	Missed  int     `json:"missed"`
	// Server is what the spawned server process cost while the samples were taken (nil
	// unless spawned); LoadGenerator what this process did (the server included when
	// in-process).
	Server        *ProcStats `json:"server,omitempty"`
	LoadGenerator *ProcStats `json:"load_generator,omitempty"`
}

// Pickup parks P long-pollers (block_ms=999), then creates sessions one at a time and
// measures, for each, the time from just before the create request is sent to the moment
// a poller's answer carrying its item arrives: enqueue → poll response, as a worker sees
// it. Measuring from the send rather than from the create's answer counts the create's own
// time up to its commit, so the figure errs on the slow side.
func Pickup(ctx context.Context, o Options) (_ *PickupResult, err error) {
	o.defaults()
	t, err := start(ctx, o, o.Pollers+4)
	if err != nil {
		return nil, err
	}
	defer t.closeInto(&err)
	got := make(chan string, o.Pollers)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for p := range o.Pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := fmt.Sprintf("pickup-%d", p)
			for runCtx.Err() == nil {
				w, err := t.c.PollWork(runCtx, t.env, client.PollParams{BlockMS: 999, WorkerID: worker})
				if err != nil || w == nil {
					continue
				}
				select {
				case got <- w.Data.ID:
				case <-runCtx.Done():
					return
				}
				// Take the item out of the queue, so that it is never delivered again
				// when its reclaim window passes.
				t.c.StopWork(context.WithoutCancel(runCtx), t.env, w.ID, true)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()
	if err := waitParked(runCtx, t, o.Pollers); err != nil {
		return nil, err
	}
	win, err := t.beginWindow()
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	missed := 0
	for i := range o.Samples {
		start := time.Now()
		sess, err := t.c.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_bench", EnvironmentID: t.env})
		if err != nil {
			return nil, err
		}
		timeout := time.After(2 * time.Second)
	wait:
		for {
			select {
			case id := <-got:
				if id == sess.ID {
					lat = append(lat, time.Since(start))
					break wait
				}
			case <-timeout:
				missed++
				break wait
			}
		}
		progress(o, "pickup: %d/%d", i+1, o.Samples)
		// Let the poller that answered park again, so every sample starts with P parked.
		if err := waitParked(runCtx, t, o.Pollers); err != nil {
			return nil, err
		}
	}
	progressDone(o)
	server, self, err := win.end()
	if err != nil {
		return nil, err
	}
	return &PickupResult{Target: t.kind, Pollers: o.Pollers, Pickup: summarize(lat), Missed: missed, Server: server, LoadGenerator: self}, nil
}

// waitParked waits until the server reports at least 95% of want long polls parked
// (berth_work_pollers_parked on /metrics): a poller whose 999 ms ran out is re-polling at
// any moment, so exactly want may never be seen at once. Without /metrics (an external
// server that hides it) it waits 100 ms.
func waitParked(ctx context.Context, t *target, want int) error {
	root := t.metricsRoot()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, ok := parkedPollers(ctx, t, root)
		if !ok {
			time.Sleep(100 * time.Millisecond)
			return nil
		}
		if n >= want-want/20 {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("pollers did not park: want %d", want)
}

func parkedPollers(ctx context.Context, t *target, root string) (int, bool) {
	m, ok := scrapeMetrics(ctx, t, root, "berth_work_pollers_parked")
	if !ok {
		return 0, false
	}
	n, ok := m["berth_work_pollers_parked"]
	return int(n), ok
}

// scrapeMetrics reads the named unlabelled metrics from the server's /metrics; ok is
// false when it cannot be read.
func scrapeMetrics(ctx context.Context, t *target, root string, names ...string) (map[string]float64, bool) {
	req, err := http.NewRequestWithContext(ctx, "GET", root+"/metrics", nil)
	if err != nil {
		return nil, false
	}
	res, err := t.hc.Do(req)
	if err != nil {
		return nil, false
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return nil, false
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			out[name] = n
		}
	}
	return out, sc.Err() == nil
}

// metricsRoot is the server root that serves /metrics.
func (t *target) metricsRoot() string {
	return strings.TrimSuffix(strings.TrimSuffix(t.base, "/"), api.BasePath)
}
