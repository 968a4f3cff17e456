package api

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/wait"
	"github.com/berth-sh/berth/internal/work"
)

// metrics are the server's Prometheus metrics, all named berth_*.
type metrics struct {
	requests             *prometheus.CounterVec
	duration             *prometheus.HistogramVec
	transitions          *prometheus.CounterVec
	leaseExpiries        prometheus.Counter
	requeues             prometheus.Counter
	reclaims             prometheus.Counter
	preconditionFailures prometheus.Counter
	pollWait             prometheus.Histogram
	pickup               prometheus.Histogram
	streams              prometheus.Gauge
	streamEvents         prometheus.Counter
	streamSlow           prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, w *wait.Waiters, st store.Store, log *slog.Logger) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_http_requests_total", Help: "HTTP requests by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_http_request_duration_seconds", Help: "HTTP request duration by method and route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"method", "route"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_work_transitions_total", Help: "Work item state changes by the state entered.",
		}, []string{"state"}),
		leaseExpiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_work_lease_expiries_total", Help: "Work items stopped because their lease expired.",
		}),
		requeues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_work_requeues_total", Help: "Fresh work items queued for sessions whose item's lease expired.",
		}),
		reclaims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_work_reclaims_total", Help: "Deliveries of items delivered before but never acknowledged.",
		}),
		preconditionFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_work_heartbeat_precondition_failures_total", Help: "Heartbeats answered 412.",
		}),
		pollWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_work_poll_wait_seconds", Help: "Time a successful poll waited for its item.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		pickup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_work_pickup_seconds", Help: "Time from a work item's creation to its first delivery.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_event_streams", Help: "Session event streams open now.",
		}),
		streamEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_event_stream_events_total", Help: "Events sent on session event streams.",
		}),
		streamSlow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_event_stream_slow_readers_total", Help: "Event streams cut because their reader fell too far behind.",
		}),
	}
	reg.MustRegister(m.pickup, m.streams, m.streamEvents, m.streamSlow, m.requests, m.duration, m.transitions, m.leaseExpiries, m.requeues, m.reclaims,
		m.preconditionFailures, m.pollWait,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_work_pollers_parked", Help: "Long polls currently waiting for work.",
		}, func() float64 { return float64(w.Parked()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if st != nil { // nil only for a server built to list its routes
		reg.MustRegister(newWorkItemsCollector(st, log))
	}
	return m
}

func (m *metrics) observeRequest(method, route string, code int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

func (m *metrics) transition(state string) { m.transitions.WithLabelValues(state).Inc() }

// workItemsTTL is how long a count of berth_work_items is served before the next scrape
// counts again; workItemsTimeout bounds one count.
const (
	workItemsTTL     = 5 * time.Second
	workItemsTimeout = 2 * time.Second
)

// workItemsCollector serves the gauge berth_work_items{environment_id,state}: how many
// work items each environment has in each state, as store.Store.CountWork counts them at
// scrape time.
//
// Cost and caching: CountWork reads every work item in the store, stopped ones included,
// and those accumulate, so a count of a big store is a scan worth avoiding (200,000 items:
// about 0.1 s on SQLite, 0.05 s on PostgreSQL). A scrape therefore serves the previous
// count while it is younger than workItemsTTL of wall-clock time (not Config.Now: the cache
// is about real cost), and only an older one is counted afresh, within workItemsTimeout;
// scrapes that arrive during a count wait for it rather than start their own. So the
// store is counted at most once per workItemsTTL per server, however often it is scraped,
// and the gauge may be up to workItemsTTL old.
//
// Series: every environment that has at least one item gets all five states, 0 for a
// state without items, so that a state's series drops to 0 rather than vanishing when
// its last item moves on. An environment without items (none yet, or deleted with its
// items) has no series; nothing is remembered from one count to the next.
//
// Errors: a count that fails or times out is logged and the scrape goes on without
// berth_work_items (no error answer from /metrics); the failure is kept for workItemsTTL
// like a count, so that a struggling store is not asked again by every scrape.
type workItemsCollector struct {
	store store.Store
	log   *slog.Logger
	desc  *prometheus.Desc

	mu        sync.Mutex
	countedAt time.Time           // when the cached count finished; zero before the first
	cached    []prometheus.Metric // the series of that count; nil after a failure
}

func newWorkItemsCollector(st store.Store, log *slog.Logger) *workItemsCollector {
	return &workItemsCollector{
		store: st,
		log:   log,
		desc: prometheus.NewDesc("berth_work_items",
			"Work items by environment and state, counted by the store at most every 5 s.",
			[]string{"environment_id", "state"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *workItemsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *workItemsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.countedAt.IsZero() || time.Since(c.countedAt) >= workItemsTTL {
		c.cached = c.count()
		c.countedAt = time.Now()
	}
	for _, m := range c.cached {
		ch <- m
	}
}

// count asks the store and returns the series, or nil after logging a failure.
func (c *workItemsCollector) count() []prometheus.Metric {
	ctx, cancel := context.WithTimeout(context.Background(), workItemsTimeout)
	defer cancel()
	counts, err := c.store.CountWork(ctx)
	if err != nil {
		c.log.Error("count work items for berth_work_items", "err", err)
		return nil
	}
	byEnv := map[string]map[work.State]int{}
	for _, wc := range counts {
		if byEnv[wc.EnvironmentID] == nil {
			byEnv[wc.EnvironmentID] = map[work.State]int{}
		}
		byEnv[wc.EnvironmentID][wc.State] += wc.Count
	}
	out := make([]prometheus.Metric, 0, len(byEnv)*len(work.States))
	for _, env := range slices.Sorted(maps.Keys(byEnv)) {
		for _, state := range work.States {
			m, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(byEnv[env][state]), env, string(state))
			if err != nil {
				c.log.Error("berth_work_items series", "environment_id", env, "state", state, "err", err)
				continue
			}
			out = append(out, m)
		}
	}
	return out
}
