package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fleet's polls, as the official SDK workers send them when idle: a long poll of the
// longest block the API allows, then a pause of 1 to 3 s (uniformly at random) after
// every answer.
const (
	fleetBlock    = 999 * time.Millisecond
	fleetPauseMin = time.Second
	fleetPauseMax = 3 * time.Second
	// The workers start one after the other, evenly spread over N × fleetRampPerWorker,
	// at most fleetRampMax: 2,000 new workers a second, 5 s for 10,000.
	fleetRampPerWorker = 500 * time.Microsecond
	fleetRampMax       = 5 * time.Second
	fleetDefault       = 10_000
	fleetDuration      = 60 * time.Second
	maxErrorSamples    = 5
)

// FleetResult is the outcome of the fleet scenario.
type FleetResult struct {
	Target string `json:"target"`
	// Baseline is set when the server was the do-nothing Baseline, not berth.
	Baseline bool `json:"baseline,omitempty"`
	Workers  int  `json:"workers"`
	BlockMS  int  `json:"block_ms"`
	// PauseMS is the range of the pause after each answer, [min, max] in ms.
	PauseMS [2]int `json:"pause_ms"`
	// RampSeconds is how long the workers took to start; WarmupSeconds how long it was
	// from the first start to the measured window, in which WarmupPolls were answered.
	RampSeconds   float64 `json:"ramp_seconds"`
	WarmupSeconds float64 `json:"warmup_seconds"`
	WarmupPolls   int64   `json:"warmup_polls"`
	// Seconds is the measured window; Polls the polls answered 200 in it.
	Seconds     float64 `json:"seconds"`
	Polls       int64   `json:"polls"`
	PollsPerSec float64 `json:"polls_per_sec"`
	// Delivered counts answers that carried a work item (none is queued: 0 expected).
	Delivered int64 `json:"delivered"`
	// Errors counts polls that failed over the whole run, warm-up included: any answer
	// but 200, or a transport error. ErrorSamples shows the first few.
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// BeyondBlock is each empty poll's latency beyond its block: the time from sending
	// it to reading its answer, less block_ms.
	BeyondBlock Latency `json:"beyond_block"`
	// Connections is how many connections the workers opened: one each when keep-alive
	// holds, more when connections were closed and opened again.
	Connections int64 `json:"connections"`
	// WorkersPolling is the server's own count of distinct Worker-IDs that polled in the
	// last 30 s (work stats), read at the end of the window.
	WorkersPolling int `json:"workers_polling"`
	// Server is what the spawned server process cost in the window (nil unless
	// spawned); LoadGenerator what this process did (the server included when
	// in-process).
	Server        *ProcStats `json:"server,omitempty"`
	LoadGenerator *ProcStats `json:"load_generator,omitempty"`
	// ServerRuntime is the server's Go runtime at the window's end, from its /metrics
	// (nil where that cannot be read): where its memory is.
	ServerRuntime *RuntimeStats `json:"server_runtime,omitempty"`
}

// RuntimeStats is the server's Go runtime as its /metrics shows it.
type RuntimeStats struct {
	Goroutines      int   `json:"goroutines"`
	HeapInuseBytes  int64 `json:"heap_inuse_bytes"`
	StackInuseBytes int64 `json:"stack_inuse_bytes"`
	// ParkedPolls is berth_work_pollers_parked: the long polls waiting for work.
	ParkedPolls int `json:"parked_polls"`
}

// serverRuntime reads the server's RuntimeStats from its /metrics.
func serverRuntime(ctx context.Context, t *target) *RuntimeStats {
	const (
		goroutines = "go_goroutines"
		heap       = "go_memstats_heap_inuse_bytes"
		stack      = "go_memstats_stack_inuse_bytes"
		parked     = "berth_work_pollers_parked"
	)
	m, ok := scrapeMetrics(ctx, t, t.metricsRoot(), goroutines, heap, stack, parked)
	if !ok || len(m) != 4 {
		return nil
	}
	return &RuntimeStats{Goroutines: int(m[goroutines]), HeapInuseBytes: int64(m[heap]), StackInuseBytes: int64(m[stack]), ParkedPolls: int(m[parked])}
}

// The fleet targets, reported against (not asserted).
const (
	FleetTargetCores  = 0.25
	FleetTargetRSSMiB = 200
)

// fleet is one run of the fleet scenario.
type fleet struct {
	o        Options
	t        *target
	rt       *http.Transport
	runCtx   context.Context
	pauseMin time.Duration
	pauseMax time.Duration

	// windowStart is when the measured window began (UnixNano; 0: warm-up), and
	// windowOver is set when it has ended: answers after it are not counted.
	windowStart atomic.Int64
	windowOver  atomic.Bool
	firstDone   sync.WaitGroup // each worker's first poll, answered or failed
	warmupPolls atomic.Int64
	polls       atomic.Int64
	delivered   atomic.Int64
	errs        atomic.Int64
	dials       atomic.Int64
	lat         [][]time.Duration // per worker: only worker i writes lat[i]

	errMu      sync.Mutex
	errSamples []string
}

// Fleet runs N idle workers (Options.Workers, default 10,000) that poll an empty queue
// the way the official SDK workers do when idle: each with its own Worker-ID and its own
// keep-alive connection, a long poll (block_ms=999), then a pause of 1–3 s, again and
// again. The workers start evenly spread over N/2,000 s (at most 5 s); the measured
// window (Options.Duration, default 60 s) starts once every worker has had its first poll
// answered and the longest cycle (block and pause) has passed since the last one started.
// It reports polls answered per second, errors, the latency beyond the block, and what
// the server process (when spawned) and this process cost in the window.
func Fleet(ctx context.Context, o Options) (_ *FleetResult, err error) {
	if o.Workers <= 0 {
		o.Workers = fleetDefault
	}
	if o.Duration <= 0 {
		o.Duration = fleetDuration
	}
	o.defaults()
	t, err := start(ctx, o, o.Workers)
	if err != nil {
		return nil, err
	}
	defer t.closeInto(&err)
	f := &fleet{o: o, t: t, pauseMin: fleetPauseMin, pauseMax: fleetPauseMax, lat: make([][]time.Duration, o.Workers)}
	if o.fleetPause != nil {
		f.pauseMin, f.pauseMax = o.fleetPause[0], o.fleetPause[1]
	}
	base, err := url.Parse(t.base)
	if err != nil {
		return nil, err
	}
	f.rt = f.transport(base)
	defer f.rt.CloseIdleConnections()
	res := &FleetResult{
		Target: t.kind, Baseline: o.Baseline, Workers: o.Workers, BlockMS: int(fleetBlock / time.Millisecond),
		PauseMS: [2]int{int(f.pauseMin / time.Millisecond), int(f.pauseMax / time.Millisecond)},
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.runCtx = runCtx
	ramp := min(fleetRampMax, time.Duration(o.Workers)*fleetRampPerWorker)
	begin := time.Now()
	var wg sync.WaitGroup
	f.firstDone.Add(o.Workers)
	for i := range o.Workers {
		req, err := f.request(base, i)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		at := begin.Add(ramp * time.Duration(i) / time.Duration(o.Workers))
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.worker(i, at, req)
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	// Warm-up: every worker has had its first answer, and the longest cycle has passed
	// since the last one started.
	firstDone := make(chan struct{})
	go func() { f.firstDone.Wait(); close(firstDone) }()
	steady := time.NewTimer(ramp + fleetBlock + f.pauseMax)
	defer steady.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for waiting := 2; waiting > 0; {
		select {
		case <-firstDone:
			firstDone = nil
			waiting--
		case <-steady.C:
			waiting--
		case <-tick.C:
			progress(o, "fleet: warming up, %d workers, %.0f s, %d errors", o.Workers, time.Since(begin).Seconds(), f.errs.Load())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	win, err := t.beginWindow()
	if err != nil {
		return nil, err
	}
	f.windowStart.Store(time.Now().UnixNano())
	res.RampSeconds = ramp.Seconds()
	res.WarmupSeconds = time.Since(begin).Seconds()
	res.WarmupPolls = f.warmupPolls.Load()

	if err := f.measure(ctx, tick); err != nil {
		return nil, err
	}
	server, self, err := win.end()
	f.windowOver.Store(true)
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Duration(time.Now().UnixNano() - f.windowStart.Load()).Seconds()
	res.Server, res.LoadGenerator = server, self
	res.Polls = f.polls.Load()
	res.PollsPerSec = float64(res.Polls) / res.Seconds
	stats, err := t.c.GetWorkStats(ctx, t.env)
	if err != nil {
		return nil, fmt.Errorf("work stats: %w", err)
	}
	res.WorkersPolling = stats.WorkersPolling
	res.ServerRuntime = serverRuntime(ctx, t)
	progressDone(o)

	cancel()
	wg.Wait()
	var all []time.Duration
	for _, l := range f.lat {
		all = append(all, l...)
	}
	res.BeyondBlock = summarize(all)
	res.Delivered = f.delivered.Load()
	res.Errors = f.errs.Load()
	res.Connections = f.dials.Load()
	f.errMu.Lock()
	res.ErrorSamples = f.errSamples
	f.errMu.Unlock()
	return res, nil
}

// measure waits for the measured window to pass, showing progress every tick: polls/s
// and, when the server runs in its own process, its CPU and RSS.
func (f *fleet) measure(ctx context.Context, tick *time.Ticker) error {
	end := time.NewTimer(f.o.Duration)
	defer end.Stop()
	var pid int
	if f.t.server != nil {
		pid = f.t.server.cmd.Process.Pid
	}
	lastPolls, lastAt := int64(0), time.Now()
	var lastCPU time.Duration
	if pid != 0 {
		lastCPU, _ = procCPU(pid)
	}
	for {
		select {
		case <-end.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if f.o.Progress == nil {
				continue
			}
			el := now.Sub(lastAt).Seconds()
			polls := f.polls.Load()
			line := fmt.Sprintf("fleet: %d workers, %.0f polls/s, %d errors", f.o.Workers, float64(polls-lastPolls)/el, f.errs.Load())
			if pid != 0 {
				cpu, err1 := procCPU(pid)
				_, rss, err2 := procRSS(pid)
				if err1 == nil && err2 == nil {
					line += fmt.Sprintf(", server %.2f cores, RSS %.0f MiB", (cpu-lastCPU).Seconds()/el, MiB(rss))
					lastCPU = cpu
				}
			}
			progress(f.o, "%s", line)
			lastPolls, lastAt = polls, now
		}
	}
}

// transport is the fleet's one HTTP transport. Every worker has a connection of its own,
// as workers in processes of their own have: each worker's URL names a host of its own
// (w<i>.fleet), which the transport keys its connection pool by and dials as the server's
// address, while the Host header stays the server's.
func (f *fleet) transport(base *url.URL) *http.Transport {
	addr := base.Host
	if base.Port() == "" {
		addr = net.JoinHostPort(base.Hostname(), "80")
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			f.dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        0, // no limit: every worker's connection stays open while it pauses
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		// Answers are a few hundred bytes of headers and "null".
		ReadBufferSize:  2 << 10,
		WriteBufferSize: 1 << 10,
	}
}

// request is worker i's poll, made once and sent again and again: it may be reused once
// the previous answer's body is closed.
func (f *fleet) request(base *url.URL, i int) (*http.Request, error) {
	u := *base
	u.Host = "w" + strconv.Itoa(i) + ".fleet"
	u.Path += "/environments/" + f.t.env + "/work/poll"
	u.RawQuery = "block_ms=" + strconv.Itoa(int(fleetBlock/time.Millisecond))
	req, err := http.NewRequestWithContext(f.runCtx, "GET", u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Host = base.Host
	req.Header.Set("Authorization", "Bearer "+f.t.token)
	req.Header.Set("Worker-ID", fmt.Sprintf("fleet-%05d", i))
	return req, nil
}

// null is the answer of an empty poll.
var null = []byte("null")

// worker is one idle worker: it starts at at, then polls, pauses, polls, until the run
// ends.
func (f *fleet) worker(i int, at time.Time, req *http.Request) {
	buf := make([]byte, 512)
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	first := true
	for {
		select {
		case <-timer.C:
		case <-f.runCtx.Done():
			if first {
				f.firstDone.Done()
			}
			return
		}
		sent := time.Now()
		empty, err := f.poll(req, buf)
		took := time.Since(sent)
		if f.runCtx.Err() != nil {
			if first {
				f.firstDone.Done()
			}
			return
		}
		switch {
		case err != nil:
			f.fail(err)
		case f.windowOver.Load():
		case f.windowStart.Load() == 0:
			f.warmupPolls.Add(1)
		default:
			f.polls.Add(1)
			if empty {
				f.lat[i] = append(f.lat[i], max(0, took-fleetBlock))
			} else {
				f.delivered.Add(1)
			}
		}
		if first {
			first = false
			f.firstDone.Done()
		}
		timer.Reset(f.pauseMin + rand.N(f.pauseMax-f.pauseMin+1))
	}
}

// poll sends one poll and reads its answer: empty reports whether it was null.
func (f *fleet) poll(req *http.Request, buf []byte) (empty bool, err error) {
	res, err := f.rt.RoundTrip(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	n, err := io.ReadFull(res.Body, buf)
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		err = nil
	case err == nil: // longer than buf: a work item, or an error body
		_, err = io.Copy(io.Discard, res.Body)
	}
	if err != nil {
		return false, fmt.Errorf("read the answer: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s: %s", res.Status, bytes.TrimSpace(buf[:n]))
	}
	return bytes.Equal(buf[:n], null), nil
}

// fail counts a failed poll and keeps its error among the first few distinct ones.
func (f *fleet) fail(err error) {
	f.errs.Add(1)
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if len(f.errSamples) >= maxErrorSamples {
		return
	}
	msg := err.Error()
	for _, s := range f.errSamples {
		if s == msg {
			return
		}
	}
	f.errSamples = append(f.errSamples, msg)
}
