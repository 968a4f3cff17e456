package api

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/berth-sh/berth/internal/wait"
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
}

func newMetrics(reg *prometheus.Registry, w *wait.Waiters) *metrics {
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
	}
	reg.MustRegister(m.pickup, m.requests, m.duration, m.transitions, m.leaseExpiries, m.requeues, m.reclaims,
		m.preconditionFailures, m.pollWait,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "berth_work_pollers_parked", Help: "Long polls currently waiting for work.",
		}, func() float64 { return float64(w.Parked()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) observeRequest(method, route string, code int, d time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(method, route).Observe(d.Seconds())
}

func (m *metrics) transition(state string) { m.transitions.WithLabelValues(state).Inc() }
