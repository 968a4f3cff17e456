package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-sh/berth/client"
)

// LifecycleResult is the outcome of the lifecycle scenario.
type LifecycleResult struct {
	Target      string             `json:"target"`
	Workers     int                `json:"workers"`
	Seconds     float64            `json:"seconds"`
	Items       int64              `json:"items"`
	ItemsPerSec float64            `json:"items_per_sec"`
	ReqPerSec   float64            `json:"requests_per_sec"`
	Calls       map[string]Latency `json:"calls"`
	Errors      int64              `json:"errors"`
	// Server is what the spawned server process cost during the lifecycle pass (nil
	// unless spawned); LoadGenerator what this process did (the server included when
	// in-process).
	Server        *ProcStats `json:"server,omitempty"`
	LoadGenerator *ProcStats `json:"load_generator,omitempty"`
	// Ceiling is the loopback ceiling measured in the same run; Ratio is
	// items/s × 6 ÷ ceiling req/s: how much of the machine's HTTP capacity the lifecycle
	// (six calls per item) reaches.
	Ceiling *CeilingResult `json:"ceiling,omitempty"`
	Ratio   float64        `json:"ratio,omitempty"`
}

// Lifecycle runs W simulated workers, each repeating session create → poll → ack →
// heartbeat (NO_HEARTBEAT) → stop → stop, for the duration or until Items items are done,
// then measures the loopback ceiling with the same load shape.
func Lifecycle(ctx context.Context, o Options) (_ *LifecycleResult, err error) {
	o.defaults()
	t, err := start(ctx, o, o.Workers)
	if err != nil {
		return nil, err
	}
	defer t.closeInto(&err)
	rec := newRecorder()
	var items, errs, reqs atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	if o.Items > 0 {
		runCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	win, err := t.beginWindow()
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	var wg sync.WaitGroup
	for w := range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker := fmt.Sprintf("bench-%d", w)
			for runCtx.Err() == nil {
				n, err := lifecycleOnce(runCtx, t, rec, worker)
				reqs.Add(int64(n))
				if err != nil {
					if runCtx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				if done := items.Add(1); o.Items > 0 && done >= int64(o.Items) {
					cancel()
				}
			}
		}()
	}
	ticker := time.NewTicker(500 * time.Millisecond)
	go func() {
		for range ticker.C {
			el := time.Since(begin).Seconds()
			progress(o, "lifecycle: %d items, %.0f items/s, %d errors", items.Load(), float64(items.Load())/el, errs.Load())
		}
	}()
	wg.Wait()
	ticker.Stop()
	progressDone(o)
	el := time.Since(begin).Seconds()
	server, self, err := win.end()
	if err != nil {
		return nil, err
	}
	res := &LifecycleResult{
		Server: server, LoadGenerator: self,
		Target: t.kind, Workers: o.Workers, Seconds: el, Items: items.Load(), Errors: errs.Load(),
		ItemsPerSec: float64(items.Load()) / el, ReqPerSec: float64(reqs.Load()) / el, Calls: rec.summary(),
	}
	ceil, err := Ceiling(ctx, o)
	if err != nil {
		return res, err
	}
	res.Ceiling = ceil
	if ceil.ReqPerSec > 0 {
		res.Ratio = res.ItemsPerSec * 6 / ceil.ReqPerSec
	}
	return res, nil
}

// lifecycleOnce takes one item through its life; it returns how many requests it sent.
func lifecycleOnce(ctx context.Context, t *target, rec *recorder, worker string) (int, error) {
	n := 0
	call := func(name string, f func() error) error {
		n++
		return rec.timed(name, f)
	}
	if err := call("create", func() error {
		_, err := t.c.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_bench", EnvironmentID: t.env})
		return err
	}); err != nil {
		return n, err
	}
	var w *client.Work
	if err := call("poll", func() (err error) {
		w, err = t.c.PollWork(ctx, t.env, client.PollParams{WorkerID: worker})
		return err
	}); err != nil {
		return n, err
	}
	if w == nil {
		return n, errStopped // another worker took the item this one queued; go again
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{"ack", func() error { _, err := t.c.AckWork(ctx, t.env, w.ID, client.AckParams{WorkerID: worker}); return err }},
		{"heartbeat", func() error {
			_, err := t.c.HeartbeatWork(ctx, t.env, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat})
			return err
		}},
		{"stop", func() error { _, err := t.c.StopWork(ctx, t.env, w.ID, false); return err }},
		{"stop", func() error { _, err := t.c.StopWork(ctx, t.env, w.ID, false); return err }},
	}
	for _, s := range steps {
		if err := call(s.name, s.f); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CeilingResult is the loopback limit of this machine at the moment: the same HTTP client
// load against a handler that does nothing.
type CeilingResult struct {
	Workers   int     `json:"workers"`
	Seconds   float64 `json:"seconds"`
	ReqPerSec float64 `json:"requests_per_sec"`
	Calls     Latency `json:"call"`
}

// Ceiling measures req/s of W goroutines against a handler that does nothing but answer
// a small fixed JSON object, in this process, over loopback, through the same client the
// lifecycle uses (request building, JSON decoding and all): what this machine can do at
// the moment with berth's work taken out.
func Ceiling(ctx context.Context, o Options) (*CeilingResult, error) {
	o.defaults()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	body := []byte(`{"type":"work_queue_stats","depth":0,"pending":0,"oldest_queued_at":null,"workers_polling":0}`)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	defer hs.Close()
	c, err := client.New("http://"+ln.Addr().String()+"/api/v1/cloud", "pt-ceiling",
		client.WithHTTPClient(&http.Client{Transport: transport(o.Workers)}), client.WithMaxRetries(0))
	if err != nil {
		return nil, err
	}
	rec := newRecorder()
	var reqs atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	begin := time.Now()
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				start := time.Now()
				if _, err := c.GetWorkStats(runCtx, "env_ceiling"); err != nil {
					continue
				}
				rec.add("noop", time.Since(start))
				reqs.Add(1)
			}
		}()
	}
	ticker := time.NewTicker(500 * time.Millisecond)
	go func() {
		for range ticker.C {
			progress(o, "ceiling: %.0f req/s", float64(reqs.Load())/time.Since(begin).Seconds())
		}
	}()
	wg.Wait()
	ticker.Stop()
	progressDone(o)
	el := time.Since(begin).Seconds()
	return &CeilingResult{Workers: o.Workers, Seconds: el, ReqPerSec: float64(reqs.Load()) / el, Calls: rec.summary()["noop"]}, nil
}
