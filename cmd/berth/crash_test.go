package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"github.com/berth-sh/berth/internal/testserver"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, for PRAGMA integrity_check

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/store/sqlite"
)

// Crash consistency: a real `berth serve` process runs under concurrent lifecycle load
// (sessions created, their items polled, acknowledged, heartbeated and stopped by several
// workers; a rival worker racing some of them for their leases; a long poll parked on an
// empty queue) and is killed with SIGKILL at random moments, then restarted on the same
// data. Every request and its answer goes into its client's log; a request whose
// connection broke is an unknown outcome, and its worker either sends it again to the
// restarted server or gives the item up, leaving its lease to expire. After the last
// restart the test reads everything back through the API and checks the logs against it:
//
//   - every write answered 2xx is there: each created session (exactly once, with its
//     work item), each delivery, acknowledgement, heartbeat and stop, with the very
//     timestamps that were answered (acknowledged_at, started_at, stop_requested_at and
//     stopped_at are written once; latest_heartbeat_at only grows), and no item is in an
//     earlier state than one it was answered in;
//   - a write with an unknown outcome happened at most once, and one that was never sent
//     (connection refused) did not happen; sent again with its Idempotency-Key, a create
//     with an unknown outcome is replayed, run (if it had not happened) or refused as in
//     progress, never run twice;
//   - every item's state and timestamps are ones the transition table can reach, and a
//     session never has two live items;
//   - no two workers held the same lease: per item, one successful NO_HEARTBEAT heartbeat
//     at most, one acknowledging Worker-ID at most, no two successful heartbeats with the
//     same expectation, and no delivery by poll repeated inside the reclaim window;
//   - a lease left behind expired within a second of its end (plus a restart) and its
//     session got one fresh item;
//   - IDs made after a restart sort after those made before it;
//   - each restarted server was serving and ready within a second of its start;
//   - no server logged an error or answered 5xx;
//   - on SQLite, PRAGMA integrity_check is ok (after some kills and after the last one).
//
// The normal suite kills berth 5 times on each store; BERTH_SOAK=1 (make soak) 50 times,
// and then waits for every lease left behind to expire. On PostgreSQL it is berth that is
// killed, never the database.

func TestCrashConsistencySQLite(t *testing.T) {
	t.Parallel()
	runCrashTest(t, "")
}

func TestCrashConsistencyPostgres(t *testing.T) {
	t.Parallel()
	runCrashTest(t, pgtest.URL(t))
}

// crashPlan is the shape of one run.
type crashPlan struct {
	kills   int
	workers int
	// Load runs for a random time in [minLoad, maxLoad) before each kill, and after the
	// last restart before the load stops and everything is read back.
	minLoad, maxLoad time.Duration
	// integrityEvery: on SQLite, PRAGMA integrity_check runs on the killed server's
	// database, before the restart, after every integrityEvery-th kill. Opening and
	// closing the database checkpoints its WAL, so the restarts in between recover from
	// a hot WAL themselves.
	integrityEvery int
	// awaitExpiry: after the load, wait until every lease the workers left behind has
	// expired (up to the 60 s lease of an acknowledgement) before reading back.
	awaitExpiry bool
}

func crashPlanFor() crashPlan {
	p := crashPlan{kills: 5, workers: 8, minLoad: 50 * time.Millisecond, maxLoad: 400 * time.Millisecond, integrityEvery: 2}
	if os.Getenv("BERTH_SOAK") == "1" {
		p.kills, p.integrityEvery, p.awaitExpiry = 50, 5, true
	}
	return p
}

const (
	// crashMaxStart is how soon after its start a restarted server must answer /readyz.
	crashMaxStart = time.Second
	// crashRequestTimeout bounds every request of the load. A request to a killed server
	// fails at once (the kernel closes its sockets), so reaching it means a live server
	// did not answer.
	crashRequestTimeout = 10 * time.Second
	// crashTTL is the lease the workers ask for: the shortest, so that items whose worker
	// lost track of them in a crash expire and are requeued within a soak run.
	crashTTL = 10
	// crashReclaim is the server's default reclaim window (reclaim_older_than_ms).
	crashReclaim = 5 * time.Second
	// crashAckTTL is the lease an acknowledgement starts, in seconds (API.md §4.6).
	crashAckTTL = 60
)

// crashOutcome is what became of a request.
type crashOutcome int

const (
	crashAnswered crashOutcome = iota // an HTTP answer arrived
	crashNotSent                      // never written to a connection (refused): no server saw it
	crashUnknown                      // the connection broke first: it may or may not have happened
)

// crashOp is one request of the load and its answer.
type crashOp struct {
	worker int
	gen    int    // the server generation it was sent to (0 = the first server)
	kind   string // create, poll, longpoll, ack, heartbeat, stop
	retry  bool   // sent again after a transport failure of the same step
	// abandoned: after this op's transport failure the worker gave its item up.
	abandoned bool
	// contested: a heartbeat on an item whose lease another worker races for.
	contested bool

	title    string // create: the session's title, unique per attempt
	workID   string // ack, heartbeat, stop
	expected string // heartbeat: expected_last_heartbeat

	sent, done time.Time
	outcome    crashOutcome
	status     int   // HTTP status when answered
	err        error // the client's error (transport errors and non-2xx answers)
	timedOut   bool  // no answer within crashRequestTimeout

	session *client.Session
	work    *client.Work // poll (nil for a null answer), ack, stop
	hb      *client.Heartbeat
}

func (op *crashOp) ok() bool { return op.outcome == crashAnswered && op.status/100 == 2 }

func (op *crashOp) String() string {
	s := fmt.Sprintf("w%d gen %d %s", op.worker, op.gen, op.kind)
	if op.retry {
		s += " (retry)"
	}
	if op.title != "" {
		s += " " + op.title
	}
	if op.workID != "" {
		s += " " + op.workID
	}
	if op.expected != "" {
		s += " expecting " + op.expected
	}
	switch op.outcome {
	case crashNotSent:
		s += ": not sent (connection refused)"
	case crashUnknown:
		s += fmt.Sprintf(": unknown outcome (%v)", op.err)
	default:
		s += fmt.Sprintf(": %d", op.status)
		switch {
		case op.session != nil:
			s += " " + op.session.ID
		case op.hb != nil:
			s += fmt.Sprintf(" %+v", *op.hb)
		case op.work != nil:
			s += fmt.Sprintf(" %s %s", op.work.ID, op.work.State)
		case op.err != nil:
			s += fmt.Sprintf(" (%v)", op.err)
		}
	}
	return s
}

// crashWireKey carries a *crashWire in a request's context, where crashTransport notes
// what the client does not report of an answer: its HTTP status and whether it was an
// Idempotency-Key replay.
type crashWireKey struct{}

type crashWire struct {
	status   int
	replayed bool
	wrote    atomic.Bool // the request was written to a connection, on some attempt
}

// crashTrace returns ctx carrying wire, noting in it whether the request was written.
func crashTrace(ctx context.Context, wire *crashWire) context.Context {
	ctx = context.WithValue(ctx, crashWireKey{}, wire)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wire.wrote.Store(true) },
	})
}

type crashTransport struct{ http.RoundTripper }

func (t crashTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := t.RoundTripper.RoundTrip(r)
	if w, ok := r.Context().Value(crashWireKey{}).(*crashWire); ok && err == nil {
		w.status, w.replayed = res.StatusCode, res.Header.Get("Idempotent-Replayed") == "true"
	}
	return res, err
}

// crashTarget is the server the load talks to, across its generations.
type crashTarget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	gen    int
	up     bool
	c      *client.Client
	killed map[int]bool // generations killed, marked just before the signal
	quit   bool         // the load is to stop
}

func newCrashTarget() *crashTarget {
	s := &crashTarget{killed: map[int]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// current waits until a server is up and returns it; ok is false once the load is to stop.
func (s *crashTarget) current() (gen int, c *client.Client, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.up && !s.quit {
		s.cond.Wait()
	}
	return s.gen, s.c, !s.quit
}

// awaitNewer waits until a server newer than gen is up; false once the load is to stop.
func (s *crashTarget) awaitNewer(gen int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.quit && !(s.up && s.gen > gen) {
		s.cond.Wait()
	}
	return !s.quit
}

func (s *crashTarget) wasKilled(gen int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killed[gen]
}

func (s *crashTarget) down(gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up, s.killed[gen] = false, true
}

func (s *crashTarget) serve(gen int, c *client.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen, s.c, s.up = gen, c, true
	s.cond.Broadcast()
}

func (s *crashTarget) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quit
}

func (s *crashTarget) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quit = true
	s.cond.Broadcast()
}

// crashWorker is one client of the load, with its own log.
type crashWorker struct {
	id     int
	name   string // its Worker-ID
	env    string
	target *crashTarget
	rivals chan string // items whose lease the rival races for
	log    []*crashOp
	// unexplained are transport failures on a server that had not been killed.
	unexplained []*crashOp
}

// attempt sends one request to the current server and logs it; false once the load is to
// stop (nothing was sent then).
func (w *crashWorker) attempt(op *crashOp, call func(context.Context, *client.Client) error) bool {
	gen, c, ok := w.target.current()
	if !ok {
		return false
	}
	op.worker, op.gen = w.id, gen
	var wire crashWire
	ctx, cancel := context.WithTimeout(crashTrace(context.Background(), &wire), crashRequestTimeout)
	op.sent = time.Now()
	err := call(ctx, c)
	op.done = time.Now()
	timedOut := ctx.Err() != nil
	cancel()
	op.err = err
	var apiErr *client.Error
	switch {
	case err == nil:
		op.outcome, op.status = crashAnswered, wire.status
	case errors.As(err, &apiErr):
		op.outcome, op.status = crashAnswered, apiErr.StatusCode
	case !wire.wrote.Load():
		// The dial was refused and nothing was written. (A refusal alone proves nothing:
		// net/http sends a GET, or a POST with an Idempotency-Key, again by itself on a
		// fresh connection when a reused one broke, and that first attempt may have
		// reached the killed server.)
		op.outcome = crashNotSent
	default:
		op.outcome, op.timedOut = crashUnknown, timedOut
	}
	if op.outcome != crashAnswered && (timedOut || !w.target.wasKilled(gen)) {
		w.unexplained = append(w.unexplained, op)
	}
	w.log = append(w.log, op)
	return true
}

// step sends a request until it is answered, waiting for the next server after each
// transport failure; nil once the load is to stop. When mayAbandon, a transport failure
// ends the step half of the time instead (the failed op is returned): the worker gives the
// item up, as a worker does that crashed with the server, and leaves its lease to expire.
func (w *crashWorker) step(proto crashOp, mayAbandon bool, call func(context.Context, *client.Client, *crashOp) error) *crashOp {
	for retry := false; ; retry = true {
		op := new(crashOp)
		*op = proto
		op.retry = retry
		if !w.attempt(op, func(ctx context.Context, c *client.Client) error { return call(ctx, c, op) }) {
			return nil
		}
		if op.outcome == crashAnswered {
			return op
		}
		if !w.target.awaitNewer(op.gen) {
			return nil
		}
		if mayAbandon && rand.N(2) == 0 {
			op.abandoned = true
			return op
		}
	}
}

// run is the lifecycle loop: create a session, poll an item (any: the workers share the
// queue), acknowledge it, take its lease with a NO_HEARTBEAT heartbeat, heartbeat again
// echoing the answer, stop it gracefully (→ stopping) and stop it again (→ stopped). A step
// whose connection broke is sent again to the restarted server, or (half of the time, past
// the poll) the item is abandoned; an answer other than 2xx abandons the item too, which is
// what a worker does that has lost its lease. An abandoned item's lease expires. A create
// whose connection broke is not sent again: its outcome stays unknown, to be checked after
// the run.
func (w *crashWorker) run() {
	for cycle := 0; ; cycle++ {
		create := &crashOp{kind: "create", title: fmt.Sprintf("crash-%s-%d", w.name, cycle)}
		if !w.attempt(create, func(ctx context.Context, c *client.Client) (err error) {
			create.session, err = c.CreateSession(ctx, crashCreateParams(w.env, create.title), client.WithIdempotencyKey(create.title))
			return err
		}) {
			return
		}
		if create.outcome != crashAnswered && !w.target.awaitNewer(create.gen) {
			return
		}
		var item *client.Work
		for try := 0; try < 3 && item == nil; try++ {
			poll := w.step(crashOp{kind: "poll"}, false, func(ctx context.Context, c *client.Client, op *crashOp) (err error) {
				op.work, err = c.PollWork(ctx, w.env, client.PollParams{BlockMS: 200, WorkerID: w.name})
				return err
			})
			if poll == nil {
				return
			}
			if poll.ok() {
				item = poll.work
			}
		}
		if item == nil {
			continue
		}
		ack := w.step(crashOp{kind: "ack", workID: item.ID}, true, func(ctx context.Context, c *client.Client, op *crashOp) (err error) {
			op.work, err = c.AckWork(ctx, w.env, item.ID, client.AckParams{WorkerID: w.name})
			return err
		})
		if ack == nil {
			return
		}
		if !ack.ok() {
			continue
		}
		contested := false
		if rand.N(4) == 0 {
			select {
			case w.rivals <- item.ID:
				contested = true
			default:
			}
		}
		if !w.hold(item.ID, contested) {
			return
		}
	}
}

// hold takes the lease of an acknowledged item with a NO_HEARTBEAT heartbeat, heartbeats
// again echoing the answer, then stops the item twice; false once the load is to stop.
// contested: another worker may be racing for the same lease.
func (w *crashWorker) hold(workID string, contested bool) bool {
	expected := client.NoHeartbeat
	for range 2 {
		hb := w.step(crashOp{kind: "heartbeat", workID: workID, expected: expected, contested: contested}, true, func(ctx context.Context, c *client.Client, op *crashOp) (err error) {
			op.hb, err = c.HeartbeatWork(ctx, w.env, workID, client.HeartbeatParams{ExpectedLastHeartbeat: op.expected, DesiredTTLSeconds: crashTTL})
			return err
		})
		if hb == nil {
			return false
		}
		if !hb.ok() {
			return true
		}
		expected = hb.hb.LastHeartbeat
	}
	for range 2 {
		stop := w.step(crashOp{kind: "stop", workID: workID}, true, func(ctx context.Context, c *client.Client, op *crashOp) (err error) {
			op.work, err = c.StopWork(ctx, w.env, workID, false)
			return err
		})
		if stop == nil {
			return false
		}
		if !stop.ok() {
			return true
		}
	}
	return true
}

// rival races the workers for the leases of the items they hand it, just after their
// acknowledgement: of its NO_HEARTBEAT heartbeat and the owner's, exactly one may win, and
// the winner carries on with the item.
func (w *crashWorker) rival() {
	for {
		select {
		case id := <-w.rivals:
			if !w.hold(id, true) {
				return
			}
		case <-time.After(20 * time.Millisecond):
			if w.target.stopped() {
				return
			}
		}
	}
}

// crashCreateParams is the body of a create of the load; its title is also its
// Idempotency-Key.
func crashCreateParams(env, title string) client.CreateSessionParams {
	return client.CreateSessionParams{Agent: "agent_crash", EnvironmentID: env, Title: title}
}

// longPoll keeps one long poll parked on an environment that never has work, so that
// every kill cuts one.
func (w *crashWorker) longPoll(env string) {
	for {
		op := &crashOp{kind: "longpoll"}
		if !w.attempt(op, func(ctx context.Context, c *client.Client) (err error) {
			op.work, err = c.PollWork(ctx, env, client.PollParams{BlockMS: 999, WorkerID: w.name})
			return err
		}) {
			return
		}
		if op.outcome != crashAnswered && !w.target.awaitNewer(op.gen) {
			return
		}
	}
}

// crashServer is one generation of the server.
type crashServer struct {
	p              *proc
	gen            int
	serving, ready time.Duration // from the process's start
	downtime       time.Duration // from the kill of the one before to ready
	killedAt       time.Time     // when the one before was killed (zero for the first)
	// cpu is the CPU time the process had used when it was ready, load the machine's
	// 1-minute load average then (-1 where /proc does not tell).
	cpu  time.Duration
	load float64
	tr   *http.Transport
	c    *client.Client
}

// startCrashServe starts `berth serve` on dataDir (and dbURL, when not empty) and waits
// until it answers /readyz, measuring how long that took.
func startCrashServe(t *testing.T, gen int, dataDir, dbURL, token string) *crashServer {
	t.Helper()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-format", "text"}
	if dbURL != "" {
		args = append(args, "--database-url", dbURL)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "BERTH_DATABASE_URL=")
	}), "BERTH_TEST_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // harmless once it has exited
		p.wait()
	})
	s := &crashServer{p: p, gen: gen}
	select {
	case p.addr = <-addrc:
		s.serving = time.Since(start)
	case <-p.exited:
		t.Fatalf("berth serve (generation %d) exited: %v\n%s", gen, p.exitErr, p.log())
	case <-time.After(testserver.HangGuard):
		t.Fatalf("berth serve (generation %d) did not start\n%s", gen, p.log())
	}
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		res, err := probe.Get(p.url("/readyz"))
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Since(start) > testserver.HangGuard {
			t.Fatalf("berth serve (generation %d) not ready after %v: %v\n%s", gen, testserver.HangGuard, err, p.log())
		}
		time.Sleep(time.Millisecond)
	}
	s.ready = time.Since(start)
	s.cpu, s.load = crashCPUTime(cmd.Process.Pid), crashLoadAverage()
	if token == "" {
		token = readAdminToken(t, dataDir)
	}
	s.tr = &http.Transport{MaxIdleConnsPerHost: 64}
	s.c, err = client.New(p.url("/api/v1/cloud"), token, client.WithMaxRetries(0),
		client.WithHTTPClient(&http.Client{Transport: crashTransport{s.tr}}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// crashCPUTime is the user and system CPU time a process has used so far, from
// /proc/<pid>/stat; -1 when it cannot be read.
func crashCPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The fields after the command name (which may hold spaces, in parentheses): utime
	// and stime are the 14th and 15th of the line, the 12th and 13th after it, in ticks
	// of USER_HZ (100 on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	var user, sys int64
	if _, err := fmt.Sscan(f[11], &user); err != nil {
		return -1
	}
	if _, err := fmt.Sscan(f[12], &sys); err != nil {
		return -1
	}
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// crashLoadAverage is the 1-minute load average, -1 when /proc/loadavg cannot be read.
func crashLoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return -1
	}
	return l
}

// crashStarved reports whether a slow start is the machine's doing: the load average
// exceeds the CPUs and the process got less than half of a CPU over its start-up, so it
// spent most of it waiting to run.
func crashStarved(s *crashServer) bool {
	return s.cpu >= 0 && s.load > float64(runtime.NumCPU()) && s.cpu < s.ready/2
}

// crashIntegrity opens a stopped server's SQLite database and runs PRAGMA integrity_check
// and foreign_key_check; it returns the number of sessions and work items in it.
func crashIntegrity(t *testing.T, dataDir string) (sessions, items int) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(dataDir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path}).String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	var res []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		res = append(res, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(res) != 1 || res[0] != "ok" {
		t.Errorf("PRAGMA integrity_check: %q, want ok", res)
	}
	rows, err = db.Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatalf("foreign_key_check: %v", err)
	}
	if rows.Next() {
		t.Errorf("PRAGMA foreign_key_check reports violations")
	}
	rows.Close()
	if err := db.QueryRow("SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM work)").Scan(&sessions, &items); err != nil {
		t.Fatal(err)
	}
	return sessions, items
}

// crashProblems reports the first problems found as test errors and counts the rest.
type crashProblems struct {
	t *testing.T
	n int
}

func (p *crashProblems) add(format string, args ...any) {
	p.t.Helper()
	p.n++
	if p.n <= 40 {
		p.t.Errorf(format, args...)
	}
}

func (p *crashProblems) finish() {
	if p.n > 40 {
		p.t.Errorf("… and %d more problems", p.n-40)
	}
}

var crashRank = map[client.State]int{
	client.StateQueued: 0, client.StateStarting: 1, client.StateActive: 2, client.StateStopping: 3, client.StateStopped: 4,
}

// crashItemProblems lists what in an item's state and timestamps the transition table of
// API.md §4 cannot produce (for the load of this test, whose requests on one item follow
// each other).
func crashItemProblems(w client.Work) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	ack, started, beat := w.AcknowledgedAt != nil, w.StartedAt != nil, w.LatestHeartbeatAt != nil
	stopReq, stopped := w.StopRequestedAt != nil, w.StoppedAt != nil
	want := func(name string, set, wantSet bool) {
		if set != wantSet {
			if wantSet {
				bad("%s is null", name)
			} else {
				bad("%s is set", name)
			}
		}
	}
	switch w.State {
	case client.StateQueued:
		want("acknowledged_at", ack, false)
		want("started_at", started, false)
		want("latest_heartbeat_at", beat, false)
		want("stop_requested_at", stopReq, false)
		want("stopped_at", stopped, false)
	case client.StateStarting:
		want("acknowledged_at", ack, true)
		want("started_at", started, false)
		want("latest_heartbeat_at", beat, false)
		want("stop_requested_at", stopReq, false)
		want("stopped_at", stopped, false)
	case client.StateActive:
		want("acknowledged_at", ack, true)
		want("started_at", started, true)
		want("latest_heartbeat_at", beat, true)
		want("stop_requested_at", stopReq, false)
		want("stopped_at", stopped, false)
	case client.StateStopping:
		want("acknowledged_at", ack, true)
		want("stop_requested_at", stopReq, true)
		want("stopped_at", stopped, false)
	case client.StateStopped:
		want("stopped_at", stopped, true)
		if !ack { // queued → stopped
			want("started_at", started, false)
			want("latest_heartbeat_at", beat, false)
			want("stop_requested_at", stopReq, false)
		}
	default:
		bad("unknown state %q", w.State)
	}
	if started != beat {
		bad("started_at set=%v but latest_heartbeat_at set=%v", started, beat)
	}
	before := func(a string, at *time.Time, b string, bt *time.Time) {
		if at != nil && bt != nil && bt.Before(*at) {
			bad("%s %v before %s %v", b, bt.Format(time.RFC3339Nano), a, at.Format(time.RFC3339Nano))
		}
	}
	before("created_at", &w.CreatedAt, "acknowledged_at", w.AcknowledgedAt)
	before("acknowledged_at", w.AcknowledgedAt, "started_at", w.StartedAt)
	before("started_at", w.StartedAt, "latest_heartbeat_at", w.LatestHeartbeatAt)
	before("acknowledged_at", w.AcknowledgedAt, "stop_requested_at", w.StopRequestedAt)
	before("created_at", &w.CreatedAt, "stopped_at", w.StoppedAt)
	return out
}

// crashCurrentState is the lease a 412 answer reports.
func crashCurrentState(op *crashOp) *client.HeartbeatState {
	var e *client.Error
	if errors.As(op.err, &e) {
		return e.CurrentState
	}
	return nil
}

// sameTime compares two nullable timestamps.
func crashSameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func crashFmtTime(t *time.Time) string {
	if t == nil {
		return "null"
	}
	return t.Format(time.RFC3339Nano)
}

func runCrashTest(t *testing.T, dbURL string) {
	plan := crashPlanFor()
	storeName := "SQLite"
	if dbURL != "" {
		storeName = "PostgreSQL"
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	started := time.Now()

	// The first server, an environment for the load and an empty one for long polls.
	var servers []*crashServer
	srv := startCrashServe(t, 0, dataDir, dbURL, "")
	servers = append(servers, srv)
	token := readAdminToken(t, dataDir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	newEnv := func(name string) string {
		env, err := srv.c.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: name, Config: client.SelfHostedConfig("")})
		if err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	env, idleEnv := newEnv("crash"), newEnv("crash-idle")

	target := newCrashTarget()
	t.Cleanup(target.stop) // lets the load's goroutines end should the test fail early
	target.serve(0, srv.c)
	workers := make([]*crashWorker, plan.workers+2)
	rivals := make(chan string, 1)
	var wg sync.WaitGroup
	for i := range workers {
		w := &crashWorker{id: i, name: fmt.Sprintf("w%d", i), env: env, target: target, rivals: rivals}
		workers[i] = w
		wg.Add(1)
		switch i {
		case plan.workers:
			w.name = "long-poller"
			go func() { defer wg.Done(); w.longPoll(idleEnv) }()
		case plan.workers + 1:
			w.name = "rival"
			go func() { defer wg.Done(); w.rival() }()
		default:
			go func() { defer wg.Done(); w.run() }()
		}
	}
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()
	stopLoad := func() {
		target.stop()
		select {
		case <-loadDone:
		case <-time.After(2 * crashRequestTimeout):
			t.Fatalf("the load did not stop within %v", 2*crashRequestTimeout)
		}
	}
	loadFor := func() {
		d := plan.minLoad + rand.N(plan.maxLoad-plan.minLoad)
		select {
		case <-time.After(d):
		case <-loadDone:
		}
	}

	// Kill, restart, repeat.
	integrityChecks := 0
	for k := 1; k <= plan.kills; k++ {
		loadFor()
		target.down(srv.gen)
		killedAt := time.Now()
		srv.p.cmd.Process.Signal(syscall.SIGKILL)
		srv.p.wait()
		srv.tr.CloseIdleConnections()
		if dbURL == "" && k%plan.integrityEvery == 0 {
			crashIntegrity(t, dataDir)
			integrityChecks++
		}
		if t.Failed() {
			stopLoad()
			t.FailNow()
		}
		srv = startCrashServe(t, k, dataDir, dbURL, token)
		srv.downtime, srv.killedAt = time.Since(killedAt), killedAt
		servers = append(servers, srv)
		target.serve(k, srv.c)
	}
	loadFor()
	stopLoad()
	loadTime := time.Since(started)
	c := srv.c
	if plan.awaitExpiry {
		// Leases last 10 s from a heartbeat, 60 s from an acknowledgement; the server
		// expires them within a second, but a busy machine gets a minute's grace.
		deadline := time.Now().Add(time.Duration(crashAckTTL+crashTTL)*time.Second + time.Minute)
		for {
			page, err := c.ListWork(ctx, env, client.ListWorkParams{ListParams: client.ListParams{Limit: 1},
				States: []client.State{client.StateStarting, client.StateActive, client.StateStopping}})
			if err != nil {
				t.Fatalf("list leased work: %v", err)
			}
			if len(page.Data) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("item %s still %s at %v, after every lease should have expired", page.Data[0].ID, page.Data[0].State, time.Now().UTC())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	// Read everything back from the last server.
	sessions := map[string]client.Session{}
	var sessionOrder []string
	for s, err := range c.AllSessions(ctx, client.ListSessionsParams{ListParams: client.ListParams{Limit: 100}, EnvironmentID: env}) {
		if err != nil {
			t.Fatalf("list sessions: %v", err)
		}
		if _, dup := sessions[s.ID]; dup {
			t.Errorf("session %s listed twice", s.ID)
		}
		sessions[s.ID] = s
		sessionOrder = append(sessionOrder, s.ID)
	}
	items := map[string]client.Work{}
	var itemOrder []string
	for w, err := range c.AllWork(ctx, env, client.ListWorkParams{ListParams: client.ListParams{Limit: 100}}) {
		if err != nil {
			t.Fatalf("list work: %v", err)
		}
		if _, dup := items[w.ID]; dup {
			t.Errorf("work item %s listed twice", w.ID)
		}
		items[w.ID] = w
		itemOrder = append(itemOrder, w.ID)
	}
	if !slices.IsSorted(sessionOrder) || !slices.IsSorted(itemOrder) {
		t.Errorf("lists are not in ascending ID order")
	}

	var all []*crashOp
	probs := &crashProblems{t: t}
	for _, w := range workers {
		all = append(all, w.log...)
		for _, op := range w.unexplained {
			probs.add("transport failure on a server that had not been killed, or no answer within %v: %v", crashRequestTimeout, op)
		}
	}

	// Sessions: answered creates exist exactly once; unknown ones at most once; unsent
	// and rejected ones not at all; no session that nobody created.
	byTitle := map[string][]client.Session{}
	for _, s := range sessions {
		byTitle[s.Title] = append(byTitle[s.Title], s)
	}
	titles := map[string]bool{}
	var fig struct {
		requests, answered2xx, answeredOther, notSent, unknown, retries, longPollsCut, abandoned int
		verified, rejected                                                                       map[string]int
		unknownCreates, unknownCreatesDone, unknownHeartbeatsDone, contests, contestsLost        int
	}
	fig.verified, fig.rejected = map[string]int{}, map[string]int{}
	sessionGen := map[int][]string{} // session IDs answered per server generation
	for _, op := range all {
		fig.requests++
		switch {
		case op.outcome == crashNotSent:
			fig.notSent++
		case op.outcome == crashUnknown:
			fig.unknown++
			if op.kind == "longpoll" {
				fig.longPollsCut++
			}
		case op.status/100 == 2:
			fig.answered2xx++
		default:
			fig.answeredOther++
			fig.rejected[fmt.Sprintf("%s %d", op.kind, op.status)]++
		}
		if op.retry {
			fig.retries++
		}
		if op.abandoned {
			fig.abandoned++
		}
		if op.worker == plan.workers+1 && op.kind == "heartbeat" && op.expected == client.NoHeartbeat && !op.retry {
			fig.contests++
		}
		if op.outcome == crashAnswered && op.status >= 500 {
			probs.add("5xx answer: %v", op)
		}
		// Nobody but its worker touches an item between its poll and its stop, so only the
		// repetition of a step whose first attempt had an unknown outcome may be refused:
		// a heartbeat sent again gets 412 when the first one did happen.
		if op.outcome == crashAnswered && op.status/100 != 2 && op.status < 500 && op.kind != "create" && op.kind != "poll" && op.kind != "longpoll" {
			switch {
			case op.contested && op.expected == client.NoHeartbeat && (op.status == 412 || op.status == 409):
				fig.contestsLost++ // the other worker took the lease, or already stopped the item
			case !op.retry || !(op.kind == "heartbeat" && op.status == 412):
				probs.add("unexpected refusal: %v", op)
			case crashCurrentState(op) == nil || crashCurrentState(op).LastHeartbeat == "":
				probs.add("412 without the current lease: %v", op)
			default:
				fig.unknownHeartbeatsDone++
			}
		}
		if op.kind != "create" {
			continue
		}
		titles[op.title] = true
		got := byTitle[op.title]
		switch {
		case op.ok():
			if op.status != 201 {
				probs.add("create answered %d, want 201: %v", op.status, op)
			}
			if len(got) != 1 || got[0].ID != op.session.ID || !got[0].CreatedAt.Equal(op.session.CreatedAt) {
				probs.add("answered create not read back exactly once: %v; sessions titled so: %+v", op, got)
			} else {
				fig.verified["create"]++
			}
			sessionGen[op.gen] = append(sessionGen[op.gen], op.session.ID)
		case op.outcome == crashUnknown:
			fig.unknownCreates++
			if len(got) > 1 {
				probs.add("create with an unknown outcome happened %d times: %v", len(got), op)
			}
			fig.unknownCreatesDone += len(got)
		default: // not sent, or rejected
			if len(got) != 0 {
				probs.add("create that was not sent or was rejected happened: %v; sessions: %+v", op, got)
			}
		}
	}
	for title, ss := range byTitle {
		if !titles[title] {
			probs.add("session nobody created: %+v", ss)
		}
	}
	// IDs made by a later server sort after those of an earlier one.
	maxBefore := ""
	for gen := 0; gen <= plan.kills; gen++ {
		ids := sessionGen[gen]
		if len(ids) == 0 {
			continue
		}
		if lo := slices.Min(ids); lo <= maxBefore {
			probs.add("session %s, made by server %d, sorts before %s made by an earlier one", lo, gen, maxBefore)
		}
		maxBefore = max(maxBefore, slices.Max(ids))
	}

	// Items: each is consistent with the transition table, belongs to a listed session,
	// and no session has two live items.
	live := map[string][]string{}
	perSession := map[string]int{}
	expired := 0
	for _, id := range itemOrder {
		w := items[id]
		for _, p := range crashItemProblems(w) {
			probs.add("item %s (%s): %s", w.ID, w.State, p)
		}
		if _, ok := sessions[w.Data.ID]; !ok {
			probs.add("item %s belongs to session %q, which is not listed", w.ID, w.Data.ID)
		}
		perSession[w.Data.ID]++
		if w.State != client.StateStopped {
			live[w.Data.ID] = append(live[w.Data.ID], w.ID)
		}
	}
	for sess, ids := range live {
		if len(ids) > 1 {
			probs.add("session %s has %d live items: %v", sess, len(ids), ids)
		}
	}
	for id := range sessions {
		if perSession[id] == 0 {
			probs.add("session %s has no work item", id)
		}
	}

	// Every 2xx answer on an item is reflected in what was read back.
	type hbKey struct{ item, expected string }
	noHeartbeatWins := map[string][]*crashOp{}
	hbExpectations := map[hbKey]*crashOp{}
	hbValues := map[hbKey]*crashOp{}
	ackers := map[string]map[string]bool{}
	holders := map[string]map[int]bool{}
	polls := map[string][]*crashOp{}
	stoppedByUs := map[string]bool{}
	for _, op := range all {
		if !op.ok() || op.kind == "create" || op.kind == "longpoll" {
			if op.kind == "longpoll" && op.ok() && op.work != nil {
				probs.add("long poll on the idle environment got an item: %v", op)
			}
			continue
		}
		if op.kind == "poll" && op.work == nil {
			continue
		}
		id := op.workID
		if op.kind == "poll" {
			id = op.work.ID
		}
		got, ok := items[id]
		if !ok {
			probs.add("item of an answered %s is missing: %v", op.kind, op)
			continue
		}
		if op.work != nil {
			a := op.work
			if a.ID != got.ID || a.Data != got.Data || !a.CreatedAt.Equal(got.CreatedAt) {
				probs.add("item read back as %s %+v created %v, answered as %s %+v created %v: %v", got.ID, got.Data, got.CreatedAt, a.ID, a.Data, a.CreatedAt, op)
			}
			if crashRank[got.State] < crashRank[a.State] {
				probs.add("item %s moved back from %s (answered) to %s: %v", id, a.State, got.State, op)
			}
			for _, f := range []struct {
				name           string
				answered, read *time.Time
			}{
				{"acknowledged_at", a.AcknowledgedAt, got.AcknowledgedAt},
				{"started_at", a.StartedAt, got.StartedAt},
				{"stop_requested_at", a.StopRequestedAt, got.StopRequestedAt},
				{"stopped_at", a.StoppedAt, got.StoppedAt},
			} {
				if f.answered != nil && !crashSameTime(f.answered, f.read) {
					probs.add("item %s: %s answered %s, read back %s: %v", id, f.name, crashFmtTime(f.answered), crashFmtTime(f.read), op)
				}
			}
			if a.LatestHeartbeatAt != nil && (got.LatestHeartbeatAt == nil || got.LatestHeartbeatAt.Before(*a.LatestHeartbeatAt)) {
				probs.add("item %s: latest_heartbeat_at answered %s, read back %s: %v", id, crashFmtTime(a.LatestHeartbeatAt), crashFmtTime(got.LatestHeartbeatAt), op)
			}
		}
		switch op.kind {
		case "poll":
			polls[id] = append(polls[id], op)
		case "ack":
			if ackers[id] == nil {
				ackers[id] = map[string]bool{}
			}
			ackers[id][workers[op.worker].name] = true
		case "heartbeat":
			hb := op.hb
			beat, err := time.Parse(time.RFC3339Nano, hb.LastHeartbeat)
			if err != nil {
				probs.add("heartbeat answered a bad last_heartbeat: %v", op)
				continue
			}
			if hb.TTLSeconds != crashTTL || !hb.LeaseExtended {
				probs.add("heartbeat answered ttl_seconds %d, lease_extended %v; want %d, true: %v", hb.TTLSeconds, hb.LeaseExtended, crashTTL, op)
			}
			if crashRank[got.State] < crashRank[hb.State] {
				probs.add("item %s moved back from %s (answered) to %s: %v", id, hb.State, got.State, op)
			}
			if got.LatestHeartbeatAt == nil || got.LatestHeartbeatAt.Before(beat) {
				probs.add("item %s: heartbeat answered last_heartbeat %s, read back latest_heartbeat_at %s: %v", id, hb.LastHeartbeat, crashFmtTime(got.LatestHeartbeatAt), op)
			}
			if op.expected == client.NoHeartbeat {
				noHeartbeatWins[id] = append(noHeartbeatWins[id], op)
				if !crashSameTime(got.StartedAt, &beat) {
					probs.add("item %s: first heartbeat answered %s, read back started_at %s: %v", id, hb.LastHeartbeat, crashFmtTime(got.StartedAt), op)
				}
			}
			if prev := hbExpectations[hbKey{id, op.expected}]; prev != nil {
				probs.add("two heartbeats with the same expectation both succeeded:\n\t%v\n\t%v", prev, op)
			}
			hbExpectations[hbKey{id, op.expected}] = op
			if prev := hbValues[hbKey{id, hb.LastHeartbeat}]; prev != nil {
				probs.add("two heartbeats answered the same last_heartbeat:\n\t%v\n\t%v", prev, op)
			}
			hbValues[hbKey{id, hb.LastHeartbeat}] = op
			if holders[id] == nil {
				holders[id] = map[int]bool{}
			}
			holders[id][op.worker] = true
		case "stop":
			if op.work.State == client.StateStopped {
				stoppedByUs[id] = true
			}
		}
		fig.verified[op.kind]++
	}
	for id, wins := range noHeartbeatWins {
		if len(wins) > 1 {
			probs.add("item %s: %d NO_HEARTBEAT heartbeats succeeded (two lease holders): %v", id, len(wins), wins)
		}
	}
	for id, ws := range ackers {
		if len(ws) > 1 {
			probs.add("item %s acknowledged by %d Worker-IDs: %v", id, len(ws), ws)
		}
	}
	for id, ws := range holders {
		if len(ws) > 1 {
			probs.add("item %s heartbeated successfully by %d workers: %v", id, len(ws), ws)
		}
	}
	// A delivery answered by poll is durable: the item is not delivered again inside the
	// reclaim window. Delivery n happened within [sent, done] of its poll, so two
	// deliveries are provably closer than the window when the later poll's answer came
	// less than the window after the earlier poll was sent.
	for id, ps := range polls {
		slices.SortFunc(ps, func(a, b *crashOp) int { return a.sent.Compare(b.sent) })
		for i := 1; i < len(ps); i++ {
			if ps[i].done.Sub(ps[i-1].sent) < crashReclaim-time.Millisecond {
				probs.add("item %s delivered twice inside the reclaim window:\n\t%v (sent %v)\n\t%v (answered %v)", id, ps[i-1], ps[i-1].sent.Format(time.StampMicro), ps[i], ps[i].done.Format(time.StampMicro))
			}
		}
	}
	// Leases left behind expire, not earlier than their end nor later than a second after
	// (plus the time the server was down in between: with a kill every half second or so,
	// several restarts can fall between a lease's end and its expiry), and the session of
	// an item that nobody asked to stop gets one fresh item then. In this load a stopped, acknowledged item without stop_requested_at
	// can only have expired: the workers stop gracefully.
	createdAt := map[string][]client.Work{} // by session and created_at
	for _, w := range items {
		k := w.Data.ID + " " + w.CreatedAt.Format(time.RFC3339Nano)
		createdAt[k] = append(createdAt[k], w)
	}
	var maxExpiryLag, maxDowntime time.Duration
	for _, s := range servers {
		maxDowntime = max(maxDowntime, s.downtime)
	}
	// downBetween is how long the server was down (from a kill to the next generation's
	// readiness) between from and to.
	downBetween := func(from, to time.Time) time.Duration {
		var d time.Duration
		for _, s := range servers {
			if s.killedAt.IsZero() {
				continue
			}
			lo, hi := s.killedAt, s.killedAt.Add(s.downtime)
			if from.After(lo) {
				lo = from
			}
			if to.Before(hi) {
				hi = to
			}
			if hi.After(lo) {
				d += hi.Sub(lo)
			}
		}
		return d
	}
	for _, id := range itemOrder {
		w := items[id]
		if w.State != client.StateStopped || w.AcknowledgedAt == nil || w.StopRequestedAt != nil || w.StoppedAt == nil {
			continue
		}
		expired++
		end := w.AcknowledgedAt.Add(crashAckTTL * time.Second)
		if w.LatestHeartbeatAt != nil {
			end = w.LatestHeartbeatAt.Add(crashTTL * time.Second)
		}
		lag := w.StoppedAt.Sub(end)
		maxExpiryLag = max(maxExpiryLag, lag)
		if down := downBetween(end, *w.StoppedAt); lag < 0 || lag > time.Second+down {
			probs.add("item %s: lease ended %s, expired (stopped_at) %s; want within 1 s, plus %v the server was down in between",
				id, end.Format(time.RFC3339Nano), crashFmtTime(w.StoppedAt), down)
		}
		fresh := createdAt[w.Data.ID+" "+w.StoppedAt.Format(time.RFC3339Nano)]
		if len(fresh) != 1 || fresh[0].ID <= id {
			probs.add("item %s expired at %s: its session %s has %d items created then, want one fresh item", id, crashFmtTime(w.StoppedAt), w.Data.ID, len(fresh))
		}
	}

	// A create whose outcome is unknown is sent again with its Idempotency-Key, as a client
	// would: it must be replayed if its answer was kept, run if it never began, and refused
	// (409) while its first run holds the key (after a crash, until the reservation counts
	// as abandoned), but never run a second time.
	var idem struct{ replayed, fresh, busy, busyDone int }
	for _, op := range all {
		if op.kind != "create" || op.outcome != crashUnknown {
			continue
		}
		var wire crashWire
		rctx, rcancel := context.WithTimeout(crashTrace(ctx, &wire), crashRequestTimeout)
		again, err := c.CreateSession(rctx, crashCreateParams(env, op.title), client.WithIdempotencyKey(op.title))
		rcancel()
		before := byTitle[op.title]
		switch {
		case err == nil && wire.replayed:
			idem.replayed++
			if len(before) != 1 || before[0].ID != again.ID {
				probs.add("create sent again with its Idempotency-Key replayed %s; sessions titled %s: %+v: %v", again.ID, op.title, before, op)
			}
		case err == nil:
			idem.fresh++
			if len(before) != 0 {
				probs.add("create sent again with its Idempotency-Key ran a second time (%s) though it had happened (%+v): %v", again.ID, before, op)
			}
		case client.IsConflict(err):
			idem.busy++
			if len(before) == 1 {
				idem.busyDone++
			}
		default:
			probs.add("create sent again with its Idempotency-Key: %v: %v", err, op)
		}
	}

	// The servers: each was ready within a second, and none logged an error.
	var maxServing, maxReady, sumReady time.Duration
	starved := 0
	for _, s := range servers {
		if s.gen > 0 {
			maxServing, maxReady = max(maxServing, s.serving), max(maxReady, s.ready)
			sumReady += s.ready
			switch {
			case s.ready <= crashMaxStart:
			case s.ready < 10*time.Second && crashStarved(s):
				// The machine is overloaded (the whole suite runs in parallel, under the
				// race detector) and the process was waiting for a CPU, not working.
				starved++
				t.Logf("server %d was ready %v after its start, but had %v of CPU in that time, with a load average of %.1f on %d CPUs: not counted",
					s.gen, s.ready.Round(time.Millisecond), s.cpu, s.load, runtime.NumCPU())
			default:
				probs.add("server %d was ready %v after its start (serving after %v, %v of CPU, load average %.1f), want under %v",
					s.gen, s.ready, s.serving, s.cpu, s.load, crashMaxStart)
			}
		}
		if l := s.p.log(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
			probs.add("server %d logged an error:\n%s", s.gen, l)
		}
	}

	// The last server is killed too, and its database checked.
	srv.p.cmd.Process.Signal(syscall.SIGKILL)
	srv.p.wait()
	if dbURL == "" {
		nSessions, nItems := crashIntegrity(t, dataDir)
		integrityChecks++
		// Lease expiry may have requeued items since the read.
		if nSessions != len(sessions)+idem.fresh || nItems < len(items)+idem.fresh {
			probs.add("the database holds %d sessions and %d items; the API listed %d sessions and %d items, and %d were created since",
				nSessions, nItems, len(sessions), len(items), idem.fresh)
		}
	}
	probs.finish()

	verified := 0
	for _, n := range fig.verified {
		verified += n
	}
	t.Logf("%s: %d kills survived in %v; %d workers, a lease rival and a long poller sent %d requests: %d answered 2xx, %d otherwise %v; %d unknown outcomes (connection broken by the kill; %d of them parked long polls), %d not sent (refused); %d sent again after a kill, %d items given up after one",
		storeName, plan.kills, loadTime.Round(time.Millisecond), plan.workers, fig.requests, fig.answered2xx, fig.answeredOther, fig.rejected,
		fig.unknown, fig.longPollsCut, fig.notSent, fig.retries, fig.abandoned)
	t.Logf("%s: %d answered writes verified after the last restart (%d creates, %d polls, %d acks, %d heartbeats, %d stops); %d creates with unknown outcome, %d of which happened (once each); %d heartbeats with unknown outcome found done when sent again (412); %d leases raced for, %d NO_HEARTBEAT losers; %d sessions, %d items, %d leases expired (at most %v after their end)",
		storeName, verified, fig.verified["create"], fig.verified["poll"], fig.verified["ack"], fig.verified["heartbeat"], fig.verified["stop"],
		fig.unknownCreates, fig.unknownCreatesDone, fig.unknownHeartbeatsDone, fig.contests, fig.contestsLost,
		len(sessions), len(items), expired, maxExpiryLag.Round(time.Millisecond))
	t.Logf("%s: the %d creates with unknown outcome sent again with their Idempotency-Key: %d replayed, %d run (had not happened), %d refused with 409 as still in progress (%d of those had happened, and would run a second time if sent once the reservation counts as abandoned, 3 minutes on)",
		storeName, fig.unknownCreates, idem.replayed, idem.fresh, idem.busy, idem.busyDone)
	t.Logf("%s: restart to ready: max %v, mean %v (to the \"berth serving\" line: max %v; from the kill: max %v; %d slower than %v on an overloaded machine); %d integrity checks",
		storeName, maxReady.Round(time.Millisecond), (sumReady / time.Duration(max(plan.kills, 1))).Round(time.Millisecond),
		maxServing.Round(time.Millisecond), maxDowntime.Round(time.Millisecond), starved, crashMaxStart, integrityChecks)
}
