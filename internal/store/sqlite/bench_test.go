package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/work"
)

func benchStore(b *testing.B) (*sqlite.Store, string) {
	b.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	env := store.Environment{ID: id.New(id.Environment), Name: "bench", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := st.CreateEnvironment(ctx, env); err != nil {
		b.Fatal(err)
	}
	return st, env.ID
}

func seedQueued(b *testing.B, st *sqlite.Store, env string, n int) []work.Item {
	b.Helper()
	items := make([]work.Item, n)
	for i := range items {
		items[i] = work.New(id.New(id.Work), env, id.New(id.Session), nil, time.Now())
	}
	for i := 0; i < n; i += 5000 {
		if err := st.SeedWork(context.Background(), items[i:min(i+5000, n)]); err != nil {
			b.Fatal(err)
		}
	}
	return items
}

// BenchmarkClaimWork measures one durable claim of the oldest deliverable item, one
// caller at a time (so each pays a whole fsync: no group commit).
func BenchmarkClaimWork(b *testing.B) {
	st, env := benchStore(b)
	seedQueued(b, st, env, b.N+1)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		it, ok, err := st.ClaimWork(ctx, env, "w", work.DefaultReclaim, time.Now())
		if err != nil || !ok {
			b.Fatalf("claim: %v %v", ok, err)
		}
		// Acknowledge it, as a worker does at once: unacknowledged deliveries stay in the
		// queue's index until their reclaim window passes, and a claim walks past them.
		b.StopTimer()
		if _, err := st.UpdateWork(ctx, env, it.ID, func(w work.Item) (work.Item, bool, error) { return work.Ack(w, "w", time.Now()) }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkHeartbeatCompareAndSet measures one durable heartbeat: read, rule, write.
func BenchmarkHeartbeatCompareAndSet(b *testing.B) {
	st, env := benchStore(b)
	it := seedQueued(b, st, env, 1)[0]
	ctx := context.Background()
	if _, err := st.UpdateWork(ctx, env, it.ID, func(w work.Item) (work.Item, bool, error) { return work.Ack(w, "", time.Now()) }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if _, err := st.UpdateWork(ctx, env, it.ID, func(w work.Item) (work.Item, bool, error) {
			next, err := work.Heartbeat(w, work.ExpectHeartbeatAt(w.LatestHeartbeatAt), 60, time.Now())
			if w.LatestHeartbeatAt.IsZero() {
				next, err = work.Heartbeat(w, work.ExpectNoHeartbeat, 60, time.Now())
			}
			return next, err == nil, err
		}); err != nil {
			b.Fatal(err)
		}
	}
}
