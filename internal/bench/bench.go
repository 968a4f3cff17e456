// Package bench measures berth: the scenarios of `berth bench` (lifecycle, ceiling,
// pickup, scale, fleet, stream), against a server it starts in-process on a temporary database,
// one it starts as a `berth serve` child process (Options.Spawn), or an external one.
//
// Every figure that matters is a ratio inside one run (lifecycle against the loopback
// ceiling, scale at N items against 1,000 items), because the machines it runs on are
// shared and noisy: an absolute number says as much about the neighbours as about berth.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres"
	"github.com/berth-sh/berth/internal/store/sqlite"
)

// Options configure a run. Zero values take the defaults noted.
type Options struct {
	// URL and Token name an external server; empty URL starts one, in-process or, with
	// Spawn, as a child process.
	URL, Token string
	// Spawn starts the server as a `berth serve` child process of ServerBinary (default:
	// this executable, which must then be berth), with ServerArgs added to its flags, and
	// stops it with SIGTERM at the end. Its CPU time and memory are then measured over
	// each scenario's measured window (the Server figures of the results).
	// ServerEnv is added to its environment (GOGC=…, GOMEMLIMIT=…).
	Spawn        bool
	ServerBinary string
	ServerArgs   []string
	ServerEnv    []string
	// Baseline (fleet only, with Spawn) starts the do-nothing Baseline server instead of
	// berth serve: `ServerBinary bench baseline-server`.
	Baseline bool
	// DatabaseURL makes the server started use PostgreSQL instead of a temporary SQLite
	// database.
	DatabaseURL string
	// DataDir holds the SQLite database of the server started (default: a temporary
	// directory, removed afterwards).
	DataDir string

	Workers    int           // lifecycle, ceiling: concurrent simulated workers (8); fleet: idle workers (10,000)
	Duration   time.Duration // lifecycle, ceiling: how long (10 s); fleet: the measured window (60 s)
	Items      int           // lifecycle: stop after this many items instead (0: use Duration)
	Pollers    int           // pickup: parked long-pollers (100)
	Samples    int           // pickup: sessions created one at a time (200); scale: ops per call (300)
	ScaleItems int           // scale: items stored (1,000,000)

	// stream: Sessions sessions (100) with StreamsPerSession streams each (10), and
	// Writers writers (16) posting Rate events/s in all (200). Replicas 2 starts a second
	// server on DatabaseURL for the writers; WriterURL names an external one instead.
	Sessions          int
	StreamsPerSession int
	Writers           int
	Rate              float64
	Replicas          int
	WriterURL         string

	// Progress, when not nil, receives live progress lines.
	Progress io.Writer

	// fleetPause replaces the fleet's 1–3 s pause after each answer, for tests.
	fleetPause *[2]time.Duration
	// streamBuffer is the in-process server's api.Config.StreamBuffer, for tests.
	streamBuffer int
}

func (o *Options) defaults() {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Pollers <= 0 {
		o.Pollers = 100
	}
	if o.Samples <= 0 {
		o.Samples = 200
	}
	if o.ScaleItems <= 0 {
		o.ScaleItems = 1_000_000
	}
}

// Latency summarises one call's latencies.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return Latency{Count: len(d), P50: ms(q(0.50)), P99: ms(q(0.99)), Max: ms(d[len(d)-1])}
}

// recorder collects latencies per call name, safe for concurrent use.
type recorder struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func newRecorder() *recorder { return &recorder{d: map[string][]time.Duration{}} }

func (r *recorder) add(name string, d time.Duration) {
	r.mu.Lock()
	r.d[name] = append(r.d[name], d)
	r.mu.Unlock()
}

func (r *recorder) summary() map[string]Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Latency{}
	for k, v := range r.d {
		out[k] = summarize(slices.Clone(v))
	}
	return out
}

// timed runs f and records its latency under name.
func (r *recorder) timed(name string, f func() error) error {
	start := time.Now()
	err := f()
	r.add(name, time.Since(start))
	return err
}

// target is the server under test.
type target struct {
	c       *client.Client
	base    string
	token   string
	env     string
	store   store.Store // in-process only
	server  *serverProc // spawned only
	hc      *http.Client
	cleanup []func() error
	kind    string
}

// close stops what start started, last first, and returns the first error: a spawned
// server that did not stop cleanly.
func (t *target) close() error {
	var first error
	for i := len(t.cleanup) - 1; i >= 0; i-- {
		if err := t.cleanup[i](); err != nil && first == nil {
			first = err
		}
	}
	t.cleanup = nil
	return first
}

// closeInto closes t and sets *err to the close's error unless *err is set already: for
// a deferred close in a function with a named error result.
func (t *target) closeInto(err *error) {
	if cerr := t.close(); *err == nil {
		*err = cerr
	}
}

// window measures, over a scenario's measured window, the spawned server's process (if
// there is one) and this process: the load generator, and the server too when it runs
// in-process. Where /proc cannot be read it measures nothing.
type window struct {
	server, self *procWindow
}

func (t *target) beginWindow() (*window, error) {
	w := &window{}
	if t.server != nil {
		pw, err := watchProc(t.server.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("measure berth serve: %w", err)
		}
		w.server = pw
	}
	w.self, _ = watchProc(os.Getpid()) // nil where there is no /proc
	return w, nil
}

// end closes the window: the server's figures (nil unless spawned) and this process's
// (nil without /proc).
func (w *window) end() (server, self *ProcStats, err error) {
	if w.server != nil {
		if server, err = w.server.end(); err != nil {
			return nil, nil, fmt.Errorf("measure berth serve: %w", err)
		}
	}
	if w.self != nil {
		self, _ = w.self.end()
	}
	return server, self, nil
}

// transport keeps enough idle connections for every concurrent caller: the bench
// measures berth, not TCP handshakes.
func transport(conns int) *http.Transport {
	return &http.Transport{
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
}

// start connects to the external server, or starts one (in-process, or as a child
// process with o.Spawn), and creates a fresh self_hosted environment to run in.
func start(ctx context.Context, o Options, conns int) (*target, error) {
	if err := raiseFileLimit(o.URL == "" && !o.Spawn, conns); err != nil {
		return nil, err
	}
	t := &target{hc: &http.Client{Transport: transport(conns)}}
	if o.URL != "" {
		t.base, t.token, t.kind = o.URL, o.Token, "external"
	} else {
		launch := t.startInProcess
		if o.Spawn {
			launch = t.startSpawned
		}
		if err := launch(ctx, o); err != nil {
			t.close()
			return nil, err
		}
	}
	c, err := client.New(t.base, t.token, client.WithHTTPClient(t.hc), client.WithMaxRetries(0))
	if err != nil {
		t.close()
		return nil, err
	}
	t.c = c
	env, err := c.CreateEnvironment(ctx, client.CreateEnvironmentParams{
		Name: "bench", Config: client.SelfHostedConfig(""),
	})
	if err != nil {
		t.close()
		return nil, fmt.Errorf("create environment: %w", err)
	}
	t.env = env.ID
	return t, nil
}

func (t *target) startInProcess(ctx context.Context, o Options) error {
	var st store.Store
	var err error
	if o.DatabaseURL != "" {
		st, err = postgres.Open(ctx, o.DatabaseURL)
		t.kind = "in-process, PostgreSQL"
	} else {
		dir := o.DataDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "berth-bench-"); err != nil {
				return err
			}
			t.cleanup = append(t.cleanup, func() error { return os.RemoveAll(dir) })
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		var sq *sqlite.Store
		sq, err = sqlite.Open(ctx, dir)
		st = sq
		t.kind = "in-process, SQLite (synchronous=FULL)"
	}
	if err != nil {
		return err
	}
	t.store = st
	t.cleanup = append(t.cleanup, func() error { st.Close(); return nil })
	tok, secret := api.NewToken("bench", api.RoleAdmin, "", time.Now())
	if _, err := st.CreateToken(ctx, tok); err != nil {
		return err
	}
	srv := api.New(api.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry(), StreamBuffer: o.streamBuffer})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	runCtx, stop := context.WithCancel(context.Background())
	go srv.Run(runCtx)
	t.cleanup = append(t.cleanup, func() error {
		stop()
		srv.Shutdown()
		hs.Close()
		return nil
	})
	t.base = "http://" + ln.Addr().String() + api.BasePath
	t.token = secret
	return nil
}

// progress prints a live line when o.Progress is set.
func progress(o Options, format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "\r\033[K"+format, args...)
	}
}

func progressDone(o Options) {
	if o.Progress != nil {
		fmt.Fprint(o.Progress, "\r\033[K")
	}
}

var errStopped = errors.New("stopped")
