package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/work"
)

// The Worker-IDs a replica remembers as written are bounded, whatever Worker-IDs its
// clients send. Polls that each bring a new Worker-ID (any token can send them) are
// written at once and leave nothing pending, so the flush never forgets them: the prune
// the server runs on its schedule does, and past maxWritten the oldest go first.
func TestPollersStayBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	t0 := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	e, err := st.CreateEnvironment(ctx, store.Environment{Name: "n", ConfigType: "self_hosted",
		Config: []byte(`{"type":"self_hosted"}`), CreatedAt: t0, UpdatedAt: t0})
	if err != nil {
		t.Fatal(err)
	}
	const polls = 120 // one a second, each with a new Worker-ID
	for i := range polls {
		if err := st.RecordPoll(ctx, e.ID, fmt.Sprint("w", i), t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	now := t0.Add(polls * time.Second)
	if err := st.PrunePollers(ctx, now); err != nil {
		t.Fatal(err)
	}
	p := st.d.pollers
	p.mu.Lock()
	kept := len(p.written)
	p.mu.Unlock()
	if want := int(work.PollerWindow / time.Second); kept > want {
		t.Errorf("after a prune, %d Worker-IDs remembered as written, want at most the %d of the stats window", kept, want)
	}
	if n, err := st.d.WorkersPolling(ctx, e.ID, now.Add(-work.PollerWindow)); err != nil || n != int(work.PollerWindow/time.Second) {
		t.Errorf("workers polling after the prune = %d (%v), want %d", n, err, int(work.PollerWindow/time.Second))
	}

	// The cap, without the database: past maxWritten the oldest tenth goes.
	q := &pollers{pending: map[pollerKey]time.Time{}, written: map[pollerKey]time.Time{}}
	for i := range maxWritten + maxWritten/2 {
		q.mu.Lock()
		q.noteLocked(pollerKey{"env_a", fmt.Sprint("w", i)}, t0.Add(time.Duration(i)*time.Millisecond))
		q.mu.Unlock()
	}
	if len(q.written) > maxWritten {
		t.Fatalf("%d Worker-IDs remembered as written, want at most %d", len(q.written), maxWritten)
	}
	if _, ok := q.written[pollerKey{"env_a", fmt.Sprint("w", maxWritten+maxWritten/2-1)}]; !ok {
		t.Errorf("the newest poll was forgotten")
	}
	if _, ok := q.written[pollerKey{"env_a", "w0"}]; ok {
		t.Errorf("the oldest poll was kept")
	}
}
