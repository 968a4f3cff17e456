package api_test

// Two servers on one PostgreSQL database, in-process, as two replicas behind a load
// balancer: a poll parked on one is woken by work queued through the other. Their long
// polls never time out (Config.PollTimer), so a poll answers only when it is woken: a
// lost wake-up makes the poll hang, whatever the speed of the machine.

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/testserver"
)

// neverTimer is a PollTimer whose timers never fire.
func neverTimer(time.Duration) (<-chan time.Time, func() bool) {
	return nil, func() bool { return true }
}

// listening wraps a store's ListenWork to report each time its listener has begun to
// listen (the resync call).
type listening struct {
	*postgres.Store
	mu          sync.Mutex
	starts      chan struct{} // one send per start
	eventStarts chan struct{} // one send per start of ListenEvents
}

func (l *listening) ListenEvents(ctx context.Context, fn func(string), resync func()) error {
	return l.Store.ListenEvents(ctx, fn, func() {
		resync()
		l.eventStarts <- struct{}{}
	})
}

func (l *listening) ListenWork(ctx context.Context, fn func(string), resync func()) error {
	return l.Store.ListenWork(ctx, fn, func() {
		resync()
		l.starts <- struct{}{}
	})
}

// replica is one server of the pair.
type replica struct {
	*harness
	st  *listening
	url string // the database URL, with the test's application_name
}

// newReplicas starts two servers on one fresh schema, each listening for the other's
// work, and returns once both listen.
func newReplicas(t *testing.T) (a, b *replica) {
	t.Helper()
	if testserver.StoreName(t) != "postgres" {
		t.Skipf("replicas share a PostgreSQL database: run with %s=postgres (make test does)", testserver.StoreEnvVar)
	}
	// The test's own application_name tells its connections apart from other tests'.
	url := pgtest.URL(t) + "&application_name=" + strings.ToLower(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func() *replica {
		pg, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		st := &listening{Store: pg, starts: make(chan struct{}, 16), eventStarts: make(chan struct{}, 16)}
		// Streams hear of the other replica's events by its notices alone: their own
		// catch-up reads would hide a lost notice.
		srv := api.New(api.Config{Store: st, Logger: discardLogger(), PollTimer: neverTimer, StreamCatchUp: time.Hour})
		ts := httptest.NewServer(srv)
		t.Cleanup(func() { srv.Shutdown(); ts.Close(); pg.Close() })
		wg.Add(1)
		go func() { defer wg.Done(); srv.Run(ctx) }()
		<-st.starts
		<-st.eventStarts
		return &replica{harness: &harness{t: t, srv: srv, store: st, url: ts.URL}, st: st, url: url}
	}
	a, b = start(), start()
	a.admin = a.token(api.RoleAdmin, "")
	b.admin = a.admin
	return a, b
}

var _ store.Notifier = (*listening)(nil)

// waitParked waits until n polls sleep on the replica: a state, read until it holds.
func (r *replica) waitParked(n int) {
	r.t.Helper()
	for r.wkParked() != n {
		time.Sleep(time.Millisecond)
	}
}

// TestPollWokenAcrossReplicas: a poll parked on A gets the item of a session created
// through B, and of a dormant wake-up through B.
func TestPollWokenAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b := newReplicas(t)
	env := a.env(true)
	for round := range 20 {
		res := a.wkPollAsync(env, "block_ms=999", "w-a")
		a.waitParked(1)
		sess := b.session(env)
		p := <-res
		w := p.item(t)
		if w == nil || w.Data["id"] != sess {
			t.Fatalf("round %d: the poll parked on A answered %s, want the item of %s", round, p.r.Body, sess)
		}
		wantStatus(t, a.do("POST", workPath(env, w.ID, "/stop"), `{"force":true}`), 200)
	}
	// A dormant session woken through B.
	sess := b.session(env)
	first := b.wkItemsOf(env, sess)[0]
	wantStatus(t, b.do("POST", workPath(env, first.ID, "/stop"), `{"force":true}`), 200)
	res := a.wkPollAsync(env, "block_ms=999", "w-a")
	a.waitParked(1)
	wantStatus(t, b.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":[]}]}`), 200)
	if w := (<-res).item(t); w == nil || w.Data["id"] != sess || w.ID == first.ID {
		t.Fatalf("the poll parked on A: %+v, want the new item of %s", w, sess)
	}
}

// TestPollWokenAfterTheListenerReconnects: work queued through B while A's listener is
// disconnected reaches the poll parked on A once A listens again, although its notice
// was lost.
func TestPollWokenAfterTheListenerReconnects(t *testing.T) {
	t.Parallel()
	a, b := newReplicas(t)
	env := a.env(true)
	res := a.wkPollAsync(env, "block_ms=999", "w-a")
	a.waitParked(1)

	// Cut the replicas' listening connections, and queue the session while they are
	// down: its notice reaches nobody.
	conn, err := pgx.Connect(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND application_name = $1`, appName(a.url))
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(pids) == 0 {
		t.Fatalf("listening connections: %v %v", pids, err)
	}
	for _, pid := range pids {
		if _, err := conn.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
	}
	for {
		var n int
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	sess := b.session(env) // its notice reaches no listener
	// A listens again a second later, and looks for what it missed. The poll can answer
	// only when woken; the bound only turns a lost wake-up into a failure, not a hang.
	var p wkPollResult
	select {
	case p = <-res:
	case <-time.After(2 * time.Minute):
		t.Fatal("the poll parked on A was never woken: the notice was lost and nothing made up for it")
	}
	w := p.item(t)
	if w == nil || w.Data["id"] != sess {
		t.Fatalf("the poll parked on A answered %s, want the item of %s", p.r.Body, sess)
	}
	<-a.st.starts // A's listener started again: that is what woke the poll
}

// appName is the application_name of a database URL.
func appName(url string) string {
	_, v, _ := strings.Cut(url, "application_name=")
	name, _, _ := strings.Cut(v, "&")
	return name
}
