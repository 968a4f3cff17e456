package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The commit metrics count every write transaction once: after K writes one at a time,
// the batch-size histogram holds K commits of one transaction each, and the duration
// histogram K commits. A burst of concurrent writes adds exactly its size to the sum of
// batch sizes, in at most that many commits.
func TestCommitMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	reg := prometheus.NewRegistry()
	st.Instrument(reg)
	histogram := func(name string) (count uint64, sum float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name && mf.GetType() == dto.MetricType_HISTOGRAM {
				h := mf.GetMetric()[0].GetHistogram()
				return h.GetSampleCount(), h.GetSampleSum()
			}
		}
		t.Fatalf("%s not gathered", name)
		return 0, 0
	}

	now := time.Now()
	env := store.Environment{ID: id.New(id.Environment), Name: "m", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: now, UpdatedAt: now}
	if _, err := st.CreateEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	const sequential = 5
	for i := range sequential - 1 {
		it := work.New(id.New(id.Work), env.ID, id.New(id.Session), nil, now)
		s := store.Session{ID: it.SessionID, EnvironmentID: env.ID, Agent: []byte(`"a"`), CreatedAt: now, UpdatedAt: now}
		if _, err := st.CreateSession(ctx, s, nil, &it, nil); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	if n, sum := histogram("berth_store_commit_batch_size"); n != sequential || sum != sequential {
		t.Fatalf("after %d writes one at a time: %d commits carrying %v, want %d and %d", sequential, n, sum, sequential, sequential)
	}
	if n, sum := histogram("berth_store_commit_duration_seconds"); n != sequential || sum <= 0 {
		t.Fatalf("commit durations: %d summing to %v s, want %d above 0", n, sum, sequential)
	}

	const burst = 40
	errs := make(chan error, burst)
	for range burst {
		go func() {
			_, err := st.UpdateEnvironment(ctx, env.ID, func(e *store.Environment) error { e.Description += "x"; return nil })
			errs <- err
		}()
	}
	for range burst {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	n, sum := histogram("berth_store_commit_batch_size")
	if sum != sequential+burst || n > sequential+burst || n <= sequential {
		t.Fatalf("after a burst of %d: %d commits carrying %v, want the sum %d in at most %d commits",
			burst, n, sum, sequential+burst, sequential+burst)
	}
	t.Logf("a burst of %d concurrent writes took %d commits", burst, n-sequential)
}
