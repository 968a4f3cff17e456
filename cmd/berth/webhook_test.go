package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/store/postgres/pgtest"
	"github.com/berth-sh/berth/internal/testserver"
	"github.com/berth-sh/berth/internal/webhook"
)

// Webhooks across real `berth serve` processes: a delivery committed but not yet sent
// when the server is killed with SIGKILL arrives after a restart, and with two replicas
// on PostgreSQL each attempt is sent by exactly one of them.

// hookReceipt is one request a test receiver got.
type hookReceipt struct {
	id   string
	body []byte
	sig  string
	at   time.Time
}

// webhookClient is a client of a server process, as the admin, without retries.
func webhookClient(t *testing.T, p *proc, token string) *client.Client {
	t.Helper()
	c, err := client.New(p.url("/api/v1/cloud"), token, client.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// webhookEnv makes a self_hosted environment with a webhook to url.
func webhookEnv(t *testing.T, ctx context.Context, c *client.Client, url string) (envID string, w *client.Webhook) {
	t.Helper()
	env, err := c.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "hooks", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	w, err = c.CreateWebhook(ctx, env.ID, client.CreateWebhookParams{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	return env.ID, w
}

// TestWebhookSurvivesSIGKILL: the receiver holds the first attempt of a delivery without
// answering, and the server is killed with SIGKILL meanwhile, so the delivery is committed
// but its attempt never finished. A server restarted on the same data sends it again, once
// the killed server's claim on it has run out (twice --webhook-timeout), and the receiver
// gets the same delivery, signed, which it acknowledges. A second delivery, queued just
// before a second kill, arrives after a restart too, whatever moment the kill hit.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testserver.HangGuard)
	defer cancel()
	var mu sync.Mutex
	var receipts []hookReceipt
	got := make(chan hookReceipt, 16)
	hold := make(chan struct{}) // closed at the end: releases the held attempt
	defer close(hold)
	held := false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc := hookReceipt{id: r.Header.Get(webhook.IDHeader), body: b, sig: r.Header.Get(webhook.SignatureHeader), at: time.Now()}
		mu.Lock()
		receipts = append(receipts, rc)
		first := !held
		held = true
		mu.Unlock()
		got <- rc
		if first {
			select { // the first attempt never gets an answer from this receiver
			case <-hold:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()

	dir := t.TempDir()
	flags := []string{"--data-dir", dir, "--webhook-timeout", "1s"}
	start := func() *proc {
		p, addr := launchServe(t, flags...)
		awaitServe(t, p, addr)
		return p
	}
	srv := start()
	c := webhookClient(t, srv, readAdminToken(t, dir))
	env, w := webhookEnv(t, ctx, c, recv.URL+"/hook")
	if _, err := c.CreateSession(ctx, client.CreateSessionParams{Agent: "a", EnvironmentID: env}); err != nil {
		t.Fatal(err)
	}
	first := <-got // the attempt is under way, and held
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.wait()

	srv = start()
	c = webhookClient(t, srv, readAdminToken(t, dir))
	var again hookReceipt
	select {
	case again = <-got:
	case <-ctx.Done():
		t.Fatalf("the delivery never arrived after the restart\n%s", srv.log())
	}
	if again.id != first.id || string(again.body) != string(first.body) {
		t.Errorf("after the restart: %s %s, want the same delivery %s %s", again.id, again.body, first.id, first.body)
	}
	if err := webhook.Verify(w.Secret, again.sig, again.body, time.Minute); err != nil {
		t.Errorf("the resent delivery's signature: %v", err)
	}
	testserver.WaitFor(t, "the delivery recorded as delivered", func() bool {
		ds, err := c.ListWebhookDeliveries(ctx, env, w.ID, client.ListParams{})
		return err == nil && len(ds.Data) == 1 && ds.Data[0].DeliveredAt != nil
	})
	ds, _ := c.ListWebhookDeliveries(ctx, env, w.ID, client.ListParams{})
	if d := ds.Data[0]; d.ID != first.id || d.Attempts != 2 || d.LastStatus == nil || *d.LastStatus != 200 {
		t.Errorf("delivery %+v, want %s delivered at its second attempt", d, first.id)
	}
	t.Logf("resent %v after the kill's attempt began", again.at.Sub(first.at).Round(time.Millisecond))

	// Kill right after a commit that queued a delivery: sent or not, it arrives after the
	// restart.
	sess, err := c.CreateSession(ctx, client.CreateSessionParams{Agent: "a", EnvironmentID: env})
	if err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGKILL)
	srv.wait()
	srv = start()
	c = webhookClient(t, srv, readAdminToken(t, dir))
	testserver.WaitFor(t, "the second delivery delivered", func() bool {
		ds, err := c.ListWebhookDeliveries(ctx, env, w.ID, client.ListParams{})
		return err == nil && len(ds.Data) == 2 && ds.Data[1].DeliveredAt != nil
	})
	ds, _ = c.ListWebhookDeliveries(ctx, env, w.ID, client.ListParams{})
	second := ds.Data[1]
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for _, r := range receipts {
		if r.id == second.ID {
			n++
			if err := webhook.Verify(w.Secret, r.sig, r.body, time.Minute); err != nil {
				t.Errorf("second delivery's signature: %v", err)
			}
		}
	}
	// An attempt claimed just before the kill may never have been sent, so the log may
	// count more attempts than arrived, never fewer.
	if n < 1 || n > second.Attempts {
		t.Errorf("the receiver got the second delivery (of session %s) %d times; its log says %d attempts", sess.ID, n, second.Attempts)
	}
}

// TestWebhookReplicasSendEachAttemptOnce: two replicas on one PostgreSQL database, each
// running its sender; sessions are created through both. The receiver fails the first two
// attempts of every delivery and acknowledges the third. Every delivery must reach it
// exactly three times, never two attempts at once, and each replica must have sent some.
func TestWebhookReplicasSendEachAttemptOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), testserver.HangGuard)
	defer cancel()

	var mu sync.Mutex
	count := map[string]int{}
	inflight := map[string]bool{}
	overlaps := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(webhook.IDHeader)
		mu.Lock()
		if inflight[id] {
			overlaps++
		}
		inflight[id] = true
		count[id]++
		n := count[id]
		mu.Unlock()
		defer func() {
			mu.Lock()
			inflight[id] = false
			mu.Unlock()
		}()
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()

	dirA, dirB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a, addrA := launchReplica(t, dirA, dbURL)
	awaitServe(t, a, addrA)
	b, addrB := launchReplica(t, dirB, dbURL) // after A: A makes the first admin token
	awaitServe(t, b, addrB)
	token := readAdminToken(t, dirA)
	ca, cb := webhookClient(t, a, token), webhookClient(t, b, token)
	env, w := webhookEnv(t, ctx, ca, recv.URL)

	const sessions = 16
	for i := range sessions {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		if _, err := c.CreateSession(ctx, client.CreateSessionParams{Agent: "a", EnvironmentID: env}); err != nil {
			t.Fatal(err)
		}
	}
	var ds []client.WebhookDelivery
	testserver.WaitFor(t, "every delivery delivered", func() bool {
		ds = ds[:0]
		for d, err := range cb.AllWebhookDeliveries(ctx, env, w.ID, client.ListParams{Limit: 100}) {
			if err != nil {
				return false
			}
			ds = append(ds, d)
		}
		if len(ds) != sessions {
			return false
		}
		for _, d := range ds {
			if d.DeliveredAt == nil {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	for _, d := range ds {
		if count[d.ID] != 3 || d.Attempts != 3 {
			t.Errorf("delivery %s: received %d times, %d attempts in its log; want 3 and 3", d.ID, count[d.ID], d.Attempts)
		}
	}
	if len(count) != sessions {
		t.Errorf("the receiver saw %d deliveries, want %d", len(count), sessions)
	}
	if overlaps > 0 {
		t.Errorf("%d attempts arrived while another attempt of the same delivery was under way", overlaps)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	total := 0.0
	for name, p := range map[string]*proc{"A": a, "B": b} {
		n, err := replicaMetric(ctx, hc, p, "berth_webhook_attempts_total")
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("replica %s sent no attempt", name)
		}
		total += n
		t.Logf("replica %s sent %v attempts", name, n)
	}
	if total != 3*sessions {
		t.Errorf("the replicas count %v attempts, want %d", total, 3*sessions)
	}
}
