package sqlite_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"syscall"
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
	if _, err := st.CreateEnvironment(ctx, env); err != nil {
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
		it, ok, err := st.ClaimWork(ctx, env, work.Claim{WorkerID: "w", Reclaim: work.DefaultReclaim, At: time.Now()})
		if err != nil || !ok {
			b.Fatalf("claim: %v %v", ok, err)
		}
		// Acknowledge it, as a worker does at once: unacknowledged deliveries stay in the
		// queue's index until their reclaim window passes, and a claim walks past them.
		b.StopTimer()
		if _, err := st.UpdateWork(ctx, env, it.ID, work.Ack("w", time.Now())); err != nil {
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
	if _, err := st.UpdateWork(ctx, env, it.ID, work.Ack("", time.Now())); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		// The heartbeat echoes the last one, as a worker does.
		if _, err := st.UpdateWork(ctx, env, it.ID, work.Func("heartbeat", func(w work.Item) (work.Item, bool, error) {
			exp := work.ExpectHeartbeatAt(w.LatestHeartbeatAt)
			if w.LatestHeartbeatAt.IsZero() {
				exp = work.ExpectNoHeartbeat
			}
			return work.Heartbeat(exp, 60, time.Now()).Apply(w)
		})); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConcurrentHeartbeats measures heartbeats from 64 concurrent callers, each on
// its own item, as group commit sees them under load. Besides wall time per heartbeat it
// reports the process's CPU time per heartbeat (cpu-µs/op), which a noisy shared machine
// disturbs less.
func BenchmarkConcurrentHeartbeats(b *testing.B) {
	st, env := benchStore(b)
	const callers = 64
	items := seedQueued(b, st, env, callers)
	ctx := context.Background()
	for _, it := range items {
		if _, err := st.UpdateWork(ctx, env, it.ID, work.Ack("", time.Now())); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		it := items[int(next.Add(1)-1)%callers]
		for pb.Next() {
			if _, err := st.UpdateWork(ctx, env, it.ID, work.Heartbeat(work.AnyHeartbeat, 60, time.Now())); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
