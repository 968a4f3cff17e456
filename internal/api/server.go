// Package api is berth's HTTP surface: routing, authentication and roles, the error
// envelope, pagination, idempotency and the JSON shapes of API.md, one file per resource.
// Handlers validate input, call a rule of internal/work through the store, and write the
// answer; nothing else decides anything.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/stream"
	"github.com/berth-sh/berth/internal/wait"
)

// BasePath is where the API lives.
const BasePath = "/api/v1/cloud"

// AnthropicBasePath is where the Anthropic dialect of the worker's routes lives (API.md
// §8), at the server root as Anthropic's SDKs call it.
const AnthropicBasePath = "/v1"

// Config configures a Server.
type Config struct {
	Store store.Store
	// Now is the clock; nil means time.Now. Tests pass a clock they move by hand.
	Now func() time.Time
	// Logger receives the access log and errors; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the server's metrics; nil means a new registry of its own.
	Registry *prometheus.Registry
	// PollTimer makes the timer that ends a long poll's block_ms; nil means
	// time.NewTimer. Tests pass one that never fires, so that a poll can only answer
	// when it is woken.
	PollTimer func(d time.Duration) (c <-chan time.Time, stop func() bool)
	// StreamBuffer is how many events a session event stream may fall behind before it is
	// cut; zero means stream.DefaultBuffer.
	StreamBuffer int
	// StreamHeartbeat is how often an idle event stream gets a heartbeat comment; zero
	// means every 15 s (API.md §7).
	StreamHeartbeat time.Duration
	// StreamCatchUp is how often a followed session is read without a notice (see
	// stream.Config.CatchUp); zero means stream.DefaultCatchUp.
	StreamCatchUp time.Duration
	// WakeWebhooks, when not nil, is called after a write that queued webhook deliveries
	// has committed (webhook.Sender.Wake), so that they go out at once.
	WakeWebhooks func()
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	store        store.Store
	now          func() time.Time
	log          *slog.Logger
	waiters      *wait.Waiters
	metrics      *metrics
	reg          *prometheus.Registry
	mux          *http.ServeMux
	unclean      http.Handler // answers a path not in canonical form (ServeHTTP)
	routes       []*Route
	wakeWebhooks func()
	// hub follows sessions for their event streams (API.md §7).
	hub             *stream.Hub
	streamHeartbeat time.Duration
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	s := &Server{
		store: cfg.Store,
		now:   cfg.Now,
		log:   cfg.Logger,
		reg:   cfg.Registry,

		wakeWebhooks: cfg.WakeWebhooks,
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.waiters = wait.New(wait.Config{Now: s.now, Block: cfg.PollTimer,
		NextReclaim: func(ctx context.Context, env string, reclaim time.Duration) (time.Time, bool, error) {
			return s.store.NextReclaim(ctx, env, reclaim)
		}})
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	s.metrics = newMetrics(s.reg, s.waiters, s.store, s.log)
	s.streamHeartbeat = cfg.StreamHeartbeat
	if s.streamHeartbeat <= 0 {
		s.streamHeartbeat = defaultStreamHeartbeat
	}
	if s.store != nil {
		s.hub = stream.New(s.store.ListEvents, stream.Config{Buffer: cfg.StreamBuffer, CatchUp: cfg.StreamCatchUp, Now: s.now, Slow: s.metrics.streamSlow.Inc})
		s.store.OnEvents(s.hub.Notify)
	}
	s.mux = http.NewServeMux()
	s.register()
	return s
}

// ServeHTTP implements http.Handler. The request ID is set here, before routing, and
// entry sets it again, the same way, for the answers of the routes.
//
// A path that is not in canonical form (an empty, "." or ".." segment, as in
// //environments or /api/v1/cloud/./environments; a request target of "*" or without a
// path) is answered 404 not_found_error here, with the error envelope, rather than left to
// http.ServeMux, which would redirect it to the cleaned path with a text/html body. No
// official client sends such a path, so it is a client's bug, best reported where it
// happens; a redirect would have many clients resend a POST as a GET, or send a body to a
// path they never named, and ".." would let one path reach another resource than it
// names. The same holds for the escaped forms (%2e segments) and a trailing slash, which
// no route matches either. So the mux only ever sees clean paths, and since every
// pattern is registered without a method and "/" catches the rest, it never answers by
// itself (no redirect, 404 or 405 of its own): entry answers everything.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !validRequestID(r.Header.Get("x-request-id")) {
		r.Header.Set("x-request-id", uuid.NewString())
	}
	w.Header().Set("x-request-id", r.Header.Get("x-request-id"))
	if p := r.URL.EscapedPath(); r.RequestURI == "*" || p != cleanPath(p) {
		s.unclean.ServeHTTP(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is the canonical form of an escaped path, as http.ServeMux computes it: rooted,
// without empty, "." or ".." segments, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// Routes returns the route table: every method and path the server serves.
func (s *Server) Routes() []*Route { return s.routes }

// Shutdown makes parked long polls answer null at once and new ones answer without
// waiting. It does not close the store.
func (s *Server) Shutdown() {
	s.waiters.Close()
	if s.hub != nil {
		s.hub.Close()
	}
}

// Run expires leases and prunes idempotency records until ctx ends. Exactly one Run per
// server; with several replicas, each runs its own (stores make expiry race-free).
func (s *Server) Run(ctx context.Context) {
	if n, ok := s.store.(store.Notifier); ok {
		// Work queued through another replica wakes one of this replica's pollers; when
		// notices may have been missed, every environment's pollers look again.
		go n.ListenWork(ctx, func(env string) { s.waiters.Queued(env) }, s.waiters.Resync)
	}
	if n, ok := s.store.(store.CacheListener); ok {
		// Tokens and environments are kept in memory while the other replicas' writes
		// to them are heard.
		go n.ListenCache(ctx)
	}
	if n, ok := s.store.(store.EventNotifier); ok {
		// Events committed through another replica reach this replica's streams.
		go n.ListenEvents(ctx, s.hub.Notify, s.hub.Resync)
	}
	const tick = 200 * time.Millisecond // lease expiry must happen within 1 s (API.md §4.9)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastPrune, lastPollers := time.Time{}, time.Time{}
	// The first round runs at once: a server that has just started (after a crash, in a
	// rolling restart) expires the leases that ended while it was down without waiting
	// for a tick, so that one restarted again and again still expires them.
	for {
		if err := s.ExpireLeases(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("lease expiry", "err", err)
		}
		// The polls remembered for workers_polling, on a schedule of their own: any token
		// can poll with Worker-IDs of its choosing, so what is kept must not grow with
		// them.
		if now := s.now(); now.Sub(lastPollers) > pollerPruneEvery {
			lastPollers = now
			if err := s.store.PrunePollers(ctx, now); err != nil && ctx.Err() == nil {
				s.log.Error("prune pollers", "err", err)
			}
		}
		if now := s.now(); now.Sub(lastPrune) > 10*time.Minute {
			lastPrune = now
			if err := s.store.PruneIdempotencyKeys(ctx, now.Add(-idempotencyWindow)); err != nil && ctx.Err() == nil {
				s.log.Error("prune idempotency keys", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// queuedDeliveries wakes the webhook sender when n deliveries were queued.
func (s *Server) queuedDeliveries(n int) {
	if n > 0 && s.wakeWebhooks != nil {
		s.wakeWebhooks()
	}
}

// pollerPruneEvery is how often the server forgets polls older than the stats window.
const pollerPruneEvery = 30 * time.Second

// ExpireLeases runs one round of lease expiry at the server's clock (API.md §4.9) and
// wakes a poller for every requeued item.
func (s *Server) ExpireLeases(ctx context.Context) error {
	now := s.now()
	expired, err := s.store.ExpireLeases(ctx, now)
	for _, e := range expired {
		s.metrics.leaseExpiries.Inc()
		s.metrics.transition("stopped")
		s.log.Info("lease expired", "work_id", e.Item.ID, "environment_id", e.Item.EnvironmentID)
		if e.Requeue != nil {
			s.metrics.requeues.Inc()
			s.metrics.transition("queued")
			s.waiters.Queued(e.Requeue.EnvironmentID)
			s.queuedDeliveries(e.Deliveries)
		}
	}
	return err
}
