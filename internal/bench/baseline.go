package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/work"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The baseline's environment, the one it pretends to create.
const baselineEnv = "env_0000000000000000000000000000baseline"

// baselineEnvJSON is the baseline's answer to an environment create, in the API's shape.
var baselineEnvJSON = []byte(`{"id":"` + baselineEnv + `","type":"environment","name":"bench","description":"",` +
	`"config":{"type":"self_hosted"},"metadata":{},"archived_at":null,` +
	`"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`)

// Baseline is the least an HTTP server can do to answer the fleet: the same net/http
// server as berth serve's (its timeouts, one goroutine per connection), whose poll
// waits block_ms on a timer and answers null, with no store, authentication, logging
// or long-poll machinery behind it. `berth bench fleet --baseline` runs the fleet
// against it in a process of its own, so that what berth costs an idle fleet can be
// read against what HTTP alone costs on the same machine.
//
// It answers only what the fleet asks: an environment create (always the same
// environment), the poll, the environment's work stats (workers_polling counts the
// distinct Worker-IDs that polled, ever) and /metrics (the Go runtime, and
// berth_work_pollers_parked). Anything else is 404.
type Baseline struct {
	mux    *http.ServeMux
	parked prometheus.Gauge

	mu      sync.Mutex
	workers map[string]struct{}
}

// NewBaseline returns the baseline's handler.
func NewBaseline() *Baseline {
	b := &Baseline{mux: http.NewServeMux(), workers: map[string]struct{}{}}
	reg := prometheus.NewRegistry()
	b.parked = prometheus.NewGauge(prometheus.GaugeOpts{Name: "berth_work_pollers_parked", Help: "Polls waiting."})
	reg.MustRegister(collectors.NewGoCollector(), b.parked)
	envPath := api.BasePath + "/environments/" + baselineEnv
	b.mux.HandleFunc("POST "+api.BasePath+"/environments", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write(baselineEnvJSON)
	})
	b.mux.HandleFunc("GET "+envPath+"/work/poll", b.poll)
	b.mux.HandleFunc("GET "+envPath+"/work/stats", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		n := len(b.workers)
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"type":"work_queue_stats","depth":0,"pending":0,"oldest_queued_at":null,"workers_polling":` + strconv.Itoa(n) + `}`))
	})
	b.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return b
}

func (b *Baseline) ServeHTTP(w http.ResponseWriter, r *http.Request) { b.mux.ServeHTTP(w, r) }

// poll waits block_ms (parsed as the API parses it) or until the client goes, then
// answers null.
func (b *Baseline) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	block, err := work.ParseBlock(q.Get("block_ms"), q.Has("block_ms"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if id := r.Header.Get("Worker-ID"); id != "" {
		b.mu.Lock()
		b.workers[id] = struct{}{}
		b.mu.Unlock()
	}
	b.parked.Inc()
	t := time.NewTimer(block)
	select {
	case <-t.C:
	case <-r.Context().Done():
		t.Stop()
	}
	b.parked.Dec()
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte("null"))
}

// ServeBaseline serves the baseline on ln with hs (berth serve's http.Server, whose
// handler it sets) until ctx ends, then shuts down as berth serve does. It writes the
// token the bench reads (any token: the baseline checks none) into dataDir's
// admin-token, then calls ready and serves.
func ServeBaseline(ctx context.Context, ln net.Listener, hs *http.Server, dataDir string, ready func()) error {
	if err := os.WriteFile(filepath.Join(dataDir, "admin-token"), []byte("baseline\n"), 0o600); err != nil {
		return err
	}
	ready()
	hs.Handler = NewBaseline()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
