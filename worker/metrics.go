package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a worker's Prometheus metrics, all named berth_worker_*. A nil *Metrics
// records nothing.
type Metrics struct {
	running         prometheus.Gauge
	outcomes        *prometheus.CounterVec
	pollErrors      prometheus.Counter
	heartbeatErrors prometheus.Counter
	exitCodeErrors  prometheus.Counter
}

// NewMetrics registers a worker's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "berth_worker_items_running", Help: "Work items this worker is running.",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_worker_items_total",
			Help: "Work items finished, by outcome: completed (stopped after the handler), lost (lease lost, abandoned), abandoned (not acknowledged), failed (could not be stopped).",
		}, []string{"outcome"}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_worker_poll_errors_total", Help: "Polls that failed.",
		}),
		heartbeatErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_worker_heartbeat_errors_total", Help: "Heartbeats that failed without losing the lease.",
		}),
		exitCodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_worker_exit_code_errors_total",
			Help: "Exit codes that could not be recorded in their item's metadata: the item was stopped without exit_code, and only the worker's log has the code.",
		}),
	}
	reg.MustRegister(m.running, m.outcomes, m.pollErrors, m.heartbeatErrors, m.exitCodeErrors)
	return m
}

func (m *Metrics) started() {
	if m != nil {
		m.running.Inc()
	}
}

func (m *Metrics) finished() {
	if m != nil {
		m.running.Dec()
	}
}

func (m *Metrics) outcome(o string) {
	if m != nil {
		m.outcomes.WithLabelValues(o).Inc()
	}
}

func (m *Metrics) pollError() {
	if m != nil {
		m.pollErrors.Inc()
	}
}

func (m *Metrics) heartbeatError() {
	if m != nil {
		m.heartbeatErrors.Inc()
	}
}

func (m *Metrics) exitCodeNotRecorded() {
	if m != nil {
		m.exitCodeErrors.Inc()
	}
}
