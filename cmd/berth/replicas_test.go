package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/testserver"
)

// This file runs two real `berth serve` replicas on one PostgreSQL database, as a
// deployment behind a load balancer would, and checks from the outside what must hold
// across replicas: one first admin token, long polls woken by work queued elsewhere,
// shared poller counts, immediate revocation, lease expiry without double requeue, and
// Idempotency-Key replay on any replica.

// launchReplica starts a replica on a free loopback port with its own data directory
// (where a first admin token would go) and the shared database, without waiting for it.
func launchReplica(t *testing.T, dataDir, databaseURL string) (*proc, <-chan string) {
	t.Helper()
	return launchServe(t, "--data-dir", dataDir, "--database-url", databaseURL)
}

// replicaMetric reads one unlabelled metric of a replica's /metrics.
func replicaMetric(ctx context.Context, hc *http.Client, p *proc, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", p.url("/metrics"), nil)
	if err != nil {
		return 0, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("metric %s not in /metrics of %s", name, p.addr)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// replicaPoll is the outcome of a long poll run in the background.
type replicaPoll struct {
	work *client.Work
	err  error
	at   time.Time // when the answer arrived
}

// parkPollOn starts a long poll (block_ms=999) on a replica and returns once the replica
// reports it parked (berth_work_pollers_parked counts polls that claimed in vain and
// sleep, so work queued from then on wakes it). Only one poll may be in flight on the
// replica while this runs. The answer arrives on the returned channel. On a busy machine
// the poll's 999 ms can run out before this process sees it parked: then it answers
// null (nothing was queued meanwhile) and a new one is started.
func parkPollOn(t *testing.T, ctx context.Context, hc *http.Client, c *client.Client, p *proc, envID, workerID string) (started time.Time, answer <-chan replicaPoll) {
	t.Helper()
	for {
		ch := make(chan replicaPoll, 1)
		started = time.Now()
		go func() {
			w, err := c.PollWork(ctx, envID, client.PollParams{BlockMS: 999, WorkerID: workerID})
			ch <- replicaPoll{w, err, time.Now()}
		}()
		for {
			n, err := replicaMetric(ctx, hc, p, "berth_work_pollers_parked")
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				return started, ch
			}
			if len(ch) > 0 {
				if r := <-ch; r.err != nil || r.work != nil {
					t.Fatalf("poll answered %+v %v, with nothing queued", r.work, r.err)
				}
				break // ran out of time before it was seen parked: again
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// replicaPercentile is the nearest-rank replicaPercentile of sorted durations.
func replicaPercentile(sorted []time.Duration, pct int) time.Duration {
	i := (pct*len(sorted)+99)/100 - 1
	return sorted[max(i, 0)]
}

func replicaRandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func TestReplicasOnPostgres(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}

	// Two replicas, started at the same moment on an empty database, each with a data
	// directory of its own.
	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a, addrA := launchReplica(t, dirA, dbURL)
	b, addrB := launchReplica(t, dirB, dbURL)
	awaitServe(t, a, addrA)
	awaitServe(t, b, addrB)

	// --- The first admin token: created by exactly one replica. ---
	var winner, loser *proc
	var winnerDir, loserDir string
	_, errA := os.Stat(filepath.Join(dirA, AdminTokenFile))
	_, errB := os.Stat(filepath.Join(dirB, AdminTokenFile))
	switch {
	case errA == nil && errB != nil:
		winner, winnerDir, loser, loserDir = a, dirA, b, dirB
	case errB == nil && errA != nil:
		winner, winnerDir, loser, loserDir = b, dirB, a, dirA
	default:
		t.Fatalf("want exactly one admin-token file: in A %v, in B %v\nA:\n%s\nB:\n%s", errA, errB, a.log(), b.log())
	}
	token := readAdminToken(t, winnerDir)
	if !strings.Contains(winner.log(), "created the first admin token") ||
		!strings.Contains(winner.log(), filepath.Join(winnerDir, AdminTokenFile)) {
		t.Errorf("the replica that wrote the token file does not say so:\n%s", winner.log())
	}
	if l := loser.log(); strings.Contains(strings.ToLower(l), "admin token") || strings.Contains(l, AdminTokenFile) {
		t.Errorf("the other replica logs about an admin token:\n%s", l)
	}
	if entries, err := os.ReadDir(loserDir); err == nil && len(entries) > 0 {
		t.Errorf("the other replica left files in its data directory: %v", entries)
	}
	for _, p := range []*proc{a, b} {
		if strings.Contains(p.log(), token) {
			t.Errorf("a replica logged the admin token")
		}
	}
	newClient := func(p *proc, secret string) *client.Client {
		c, err := client.New(p.url("/api/v1/cloud"), secret, client.WithHTTPClient(hc), client.WithMaxRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca, cb := newClient(a, token), newClient(b, token)
	for name, c := range map[string]*client.Client{"A": ca, "B": cb} {
		if err := c.Readyz(ctx); err != nil {
			t.Fatalf("readyz on %s: %v", name, err)
		}
		toks, err := c.ListTokens(ctx, client.ListParams{})
		if err != nil {
			t.Fatalf("the admin token on %s: %v", name, err)
		}
		if len(toks.Data) != 1 || toks.Data[0].Role != client.RoleAdmin {
			t.Fatalf("tokens on %s: %+v, want the one admin token", name, toks.Data)
		}
	}
	t.Logf("first admin token created by replica %s only", map[*proc]string{a: "A", b: "B"}[winner])

	newEnv := func(c *client.Client, name string) string {
		t.Helper()
		env, err := c.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: name, Config: client.SelfHostedConfig("")})
		if err != nil {
			t.Fatal(err)
		}
		return env.ID
	}
	newSession := func(c *client.Client, envID string) *client.Session {
		t.Helper()
		s, err := c.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_replicas", EnvironmentID: envID})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// --- Leases, set up first and checked last: they take ten seconds to expire. ---
	// Ten sessions, each item replicaPoll and acknowledged and given a 10 s lease, through
	// alternating replicas. Both replicas run lease expiry every 200 ms, so they race for
	// every one of these leases.
	const leases = 10
	envL := newEnv(ca, "leases")
	type lease struct {
		work string    // the session's first item
		end  time.Time // when its lease ends
	}
	leased := map[string]lease{} // by session ID
	var leaseEnd time.Time       // the latest lease end
	for i := range leases {
		c1, c2 := ca, cb
		if i%2 == 1 {
			c1, c2 = cb, ca
		}
		sess := newSession(c2, envL)
		w, err := c1.PollWork(ctx, envL, client.PollParams{WorkerID: "w-lease"})
		if err != nil || w == nil || w.Data.ID != sess.ID {
			t.Fatalf("poll the item of %s: %+v %v", sess.ID, w, err)
		}
		if _, err := c2.AckWork(ctx, envL, w.ID, client.AckParams{WorkerID: "w-lease"}); err != nil {
			t.Fatalf("ack: %v", err)
		}
		hb, err := c1.HeartbeatWork(ctx, envL, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat, DesiredTTLSeconds: 10})
		if err != nil || hb.TTLSeconds != 10 || hb.State != client.StateActive {
			t.Fatalf("heartbeat: %+v %v", hb, err)
		}
		at, err := time.Parse(time.RFC3339Nano, hb.LastHeartbeat)
		if err != nil {
			t.Fatal(err)
		}
		end := at.Add(10 * time.Second)
		if end.After(leaseEnd) {
			leaseEnd = end
		}
		leased[sess.ID] = lease{w.ID, end}
	}

	// --- Pickup: a poll parked on A, a session created on B (or on A). ---
	// That a parked poll is woken by work queued on another replica, and not only finds it
	// when its block_ms runs out, is checked deterministically in internal/api
	// (TestPollWokenAcrossReplicas, whose polls never time out); here, between processes,
	// the latencies are reported, and what is asserted is that every item reaches the
	// poll of its round exactly once. Interleaved, so that both series see the same
	// conditions. Each item is stopped once picked up, so that none is left to be
	// reclaimed by a later poll.
	const rounds = 100
	envP := newEnv(ca, "pickup")
	var across, same []time.Duration
	late := 0
	for i := range 2 * rounds {
		creator := cb
		if i%2 == 1 {
			creator = ca
		}
		started, answer := parkPollOn(t, ctx, hc, ca, a, envP, "w-pickup")
		t0 := time.Now()
		sess := newSession(creator, envP)
		r := <-answer
		if r.err != nil {
			t.Fatalf("poll: %v", r.err)
		}
		w := r.work
		if w == nil || r.at.Sub(started) >= 999*time.Millisecond {
			late++ // its block ran out before, or as, the item came: on a busy machine
		}
		if w == nil {
			if w, r.err = ca.PollWork(ctx, envP, client.PollParams{WorkerID: "w-pickup"}); r.err != nil || w == nil {
				t.Fatalf("poll after a null answer: %+v %v", w, r.err)
			}
		}
		if w.Data.ID != sess.ID {
			t.Fatalf("poll got the item of %s, want %s", w.Data.ID, sess.ID)
		}
		if creator == cb {
			across = append(across, r.at.Sub(t0))
		} else {
			same = append(same, r.at.Sub(t0))
		}
		if _, err := ca.StopWork(ctx, envP, w.ID, false); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(across)
	slices.Sort(same)
	round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	t.Logf("pickup across replicas: p50=%v p99=%v max=%v (same replica: p50=%v p99=%v max=%v), %d rounds each; %d polls ran out of block_ms first",
		round(replicaPercentile(across, 50)), round(replicaPercentile(across, 99)), round(across[len(across)-1]),
		round(replicaPercentile(same, 50)), round(replicaPercentile(same, 99)), round(same[len(same)-1]), rounds, late)

	// --- workers_polling counts the pollers of every replica. ---
	envS := newEnv(ca, "stats")
	for _, p := range []struct {
		c      *client.Client
		worker string
	}{{ca, "w-a"}, {cb, "w-b"}} {
		if w, err := p.c.PollWork(ctx, envS, client.PollParams{WorkerID: p.worker}); err != nil || w != nil {
			t.Fatalf("poll of %s: %+v %v", p.worker, w, err)
		}
	}
	for name, c := range map[string]*client.Client{"A": ca, "B": cb} {
		st, err := c.GetWorkStats(ctx, envS)
		if err != nil {
			t.Fatal(err)
		}
		if st.WorkersPolling != 2 {
			t.Errorf("stats on %s: workers_polling %d, want 2 (w-a on A, w-b on B)", name, st.WorkersPolling)
		}
	}

	// --- A token revoked through one replica is refused by it at once, and by the other
	// once the revocation's notice has arrived (README: within a second at most). ---
	for _, dir := range []struct {
		name         string
		revoke, user *client.Client
		userProc     *proc
	}{{"revoked on A, used on B", ca, cb, b}, {"revoked on B, used on A", cb, ca, a}} {
		tok, err := dir.revoke.CreateToken(ctx, client.CreateTokenParams{Name: "revoke-me", Role: client.RoleMember})
		if err != nil {
			t.Fatal(err)
		}
		member := newClient(dir.userProc, tok.Secret)
		self := newClient(map[*proc]*proc{a: b, b: a}[dir.userProc], tok.Secret) // on the revoking replica
		for _, c := range []*client.Client{member, self} {
			if _, err := c.ListEnvironments(ctx, client.ListEnvironmentsParams{}); err != nil {
				t.Fatalf("%s: before the revocation: %v", dir.name, err)
			}
		}
		if _, err := dir.revoke.RevokeToken(ctx, tok.ID); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		if _, err := self.ListEnvironments(ctx, client.ListEnvironmentsParams{}); !client.IsUnauthorized(err) {
			t.Errorf("%s: the revoking replica's next request got %v, want 401", dir.name, err)
		}
		testserver.WaitFor(t, dir.name+": the other replica refuses the revoked token", func() bool {
			_, err := member.ListEnvironments(ctx, client.ListEnvironmentsParams{})
			if err != nil && !client.IsUnauthorized(err) {
				t.Fatalf("%s: %v", dir.name, err)
			}
			return err != nil
		})
		t.Logf("%s: refused by the other replica %v after the revocation's answer", dir.name, time.Since(revoked).Round(time.Microsecond))
	}

	// --- Idempotency-Key: the retry may land on the other replica. ---
	name := "idem-" + replicaRandomHex(8)
	body := `{"name":"` + name + `","config":{"type":"self_hosted"}}`
	key := "replicas-" + replicaRandomHex(16)
	post := func(p *proc) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, "POST", p.url("/api/v1/cloud/environments"), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, res.Header, b
	}
	code1, h1, body1 := post(a)
	code2, h2, body2 := post(b)
	if code1 != 201 || h1.Get("Idempotent-Replayed") != "" {
		t.Errorf("first POST on A: %d, Idempotent-Replayed %q: %s", code1, h1.Get("Idempotent-Replayed"), body1)
	}
	if code2 != 201 || h2.Get("Idempotent-Replayed") != "true" || !bytes.Equal(body1, body2) {
		t.Errorf("retry on B: %d, Idempotent-Replayed %q\n%s\nwant the first answer\n%s", code2, h2.Get("Idempotent-Replayed"), body2, body1)
	}
	n := 0
	for env, err := range ca.AllEnvironments(ctx, client.ListEnvironmentsParams{}) {
		if err != nil {
			t.Fatal(err)
		}
		if env.Name == name {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d environments named %s, want 1", n, name)
	}

	// --- The leases expire: each is stopped and its session requeued exactly once. ---
	listAll := func() []client.Work {
		t.Helper()
		var items []client.Work
		for w, err := range cb.AllWork(ctx, envL, client.ListWorkParams{ListParams: client.ListParams{Limit: 100}}) {
			if err != nil {
				t.Fatal(err)
			}
			items = append(items, w)
		}
		return items
	}
	deadline := leaseEnd.Add(20 * time.Second)
	time.Sleep(time.Until(leaseEnd))
	for {
		stopped := 0
		for _, w := range listAll() {
			if leased[w.Data.ID].work == w.ID && w.State == client.StateStopped {
				stopped++
			}
		}
		if stopped == leases {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d expired leases stopped 20 s after the last expiry", stopped, leases)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Both replicas' expiry loops have had several more turns since.
	time.Sleep(time.Second)
	items := listAll()
	var lag time.Duration
	for sessID, l := range leased {
		var fresh []client.Work
		for _, w := range items {
			switch {
			case w.Data.ID != sessID:
			case w.ID == l.work:
				if w.State != client.StateStopped {
					t.Errorf("expired item %s is %s, want stopped", w.ID, w.State)
				}
			default:
				fresh = append(fresh, w)
			}
		}
		if len(fresh) != 1 || fresh[0].State != client.StateQueued {
			t.Errorf("session %s: after its lease expired, items %+v besides %s, want exactly one queued", sessID, fresh, l.work)
			continue
		}
		lag = max(lag, fresh[0].CreatedAt.Sub(l.end))
	}
	if len(items) != 2*leases {
		t.Errorf("%d items in the lease environment, want %d", len(items), 2*leases)
	}
	var requeues [2]float64
	for i, p := range []*proc{a, b} {
		v, err := replicaMetric(ctx, hc, p, "berth_work_requeues_total")
		if err != nil {
			t.Fatal(err)
		}
		requeues[i] = v
	}
	if requeues[0]+requeues[1] != leases {
		t.Errorf("requeues: %v on A + %v on B, want %d in all", requeues[0], requeues[1], leases)
	}
	t.Logf("lease expiry: %d leases expired, each requeued once (by A %v, by B %v); requeued at most %v after its lease ended",
		leases, requeues[0], requeues[1], lag.Round(time.Millisecond))

	// Both replicas are still healthy and logged no error.
	for name, p := range map[string]*proc{"A": a, "B": b} {
		if strings.Contains(p.log(), "level=ERROR") {
			t.Errorf("replica %s logged an error:\n%s", name, p.log())
		}
	}
}
