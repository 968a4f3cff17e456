package sqlite

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CommitMetrics describe group commits: how many write transactions each commit carried
// and how long it took. A nil *CommitMetrics records nothing.
type CommitMetrics struct {
	batch    prometheus.Histogram
	duration prometheus.Histogram
}

// Instrument registers the store's commit metrics with reg.
func (s *Store) Instrument(reg prometheus.Registerer) {
	m := &CommitMetrics{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_store_commit_batch_size",
			Help:    "Write transactions committed together by one SQLite commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "berth_store_commit_duration_seconds",
			Help:    "Time of one SQLite group commit, from BEGIN to durable COMMIT.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
	}
	reg.MustRegister(m.batch, m.duration)
	s.d.metrics.Store(m)
}

func (m *CommitMetrics) observe(n int, d time.Duration) {
	if m != nil {
		m.batch.Observe(float64(n))
		m.duration.Observe(d.Seconds())
	}
}
