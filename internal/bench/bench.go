// Package bench measures berth: the scenarios of `berth bench` (lifecycle, ceiling,
// pickup, scale), against a server it starts in-process on a temporary database or
// against an external one.
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
	// URL and Token name an external server; empty URL starts one in-process.
	URL, Token string
	// DatabaseURL makes the in-process server use PostgreSQL instead of a temporary
	// SQLite database.
	DatabaseURL string
	// DataDir holds the in-process SQLite database (default: a temporary directory,
	// removed afterwards).
	DataDir string

	Workers    int           // lifecycle, ceiling: concurrent simulated workers (8)
	Duration   time.Duration // lifecycle, ceiling: how long (10 s)
	Items      int           // lifecycle: stop after this many items instead (0: use Duration)
	Pollers    int           // pickup: parked long-pollers (100)
	Samples    int           // pickup: sessions created one at a time (200); scale: ops per call (300)
	ScaleItems int           // scale: items stored (1,000,000)

	// Progress, when not nil, receives live progress lines.
	Progress io.Writer
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
	hc      *http.Client
	cleanup []func()
	kind    string
}

func (t *target) close() {
	for i := len(t.cleanup) - 1; i >= 0; i-- {
		t.cleanup[i]()
	}
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

// start connects to the external server, or starts one in-process, and creates a fresh
// self_hosted environment to run in.
func start(ctx context.Context, o Options, conns int) (*target, error) {
	t := &target{hc: &http.Client{Transport: transport(conns)}}
	if o.URL != "" {
		t.base, t.token, t.kind = o.URL, o.Token, "external"
	} else if err := t.startInProcess(ctx, o); err != nil {
		t.close()
		return nil, err
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
			t.cleanup = append(t.cleanup, func() { os.RemoveAll(dir) })
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
	t.cleanup = append(t.cleanup, func() { st.Close() })
	tok, secret := api.NewToken("bench", api.RoleAdmin, "", time.Now())
	if _, err := st.CreateToken(ctx, tok); err != nil {
		return err
	}
	srv := api.New(api.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: prometheus.NewRegistry()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	runCtx, stop := context.WithCancel(context.Background())
	go srv.Run(runCtx)
	t.cleanup = append(t.cleanup, func() {
		stop()
		srv.Shutdown()
		hs.Close()
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
