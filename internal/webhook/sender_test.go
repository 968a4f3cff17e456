package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/testserver"
	"github.com/berth-sh/berth/internal/webhook"
	"github.com/berth-sh/berth/internal/work"
)

// The sender against a real berth API (on the store testserver picks) and real HTTP
// receivers, on a clock the test moves: a retry is due when the test says so, never after
// a sleep.

type rig struct {
	t      *testing.T
	st     store.Store
	clock  *testserver.Clock
	url    string
	admin  string
	sender *webhook.Sender
	reg    *prometheus.Registry
}

func newRig(t *testing.T, mod func(*webhook.Config)) *rig {
	t.Helper()
	st := testserver.OpenStore(t)
	clock := testserver.NewClock()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &rig{t: t, st: st, clock: clock, reg: prometheus.NewRegistry()}
	cfg := webhook.Config{Store: st, Now: clock.Now, Logger: log, Registerer: r.reg,
		Rand: func() float64 { return 0.5 }} // no jitter: waits of exactly 1 s, 2 s, 4 s, …
	if mod != nil {
		mod(&cfg)
	}
	r.sender = webhook.New(cfg)
	srv := api.New(api.Config{Store: st, Now: clock.Now, Logger: log, WakeWebhooks: r.sender.Wake})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	r.url = ts.URL + api.BasePath
	tok, secret := api.NewToken("admin", api.RoleAdmin, "", clock.Now())
	if _, err := st.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	r.admin = secret
	return r
}

// call sends a request to the API as the admin and decodes a 2xx answer into out.
func (r *rig) call(method, path, body string, out any) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+r.admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		r.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatal(err)
		}
	}
}

type hook struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

// envWithWebhook makes a self_hosted environment with a webhook to url.
func (r *rig) envWithWebhook(url string) (envID string, h hook) {
	r.t.Helper()
	var env struct{ ID string }
	r.call("POST", "/environments", `{"name":"e","config":{"type":"self_hosted"}}`, &env)
	r.call("POST", "/environments/"+env.ID+"/webhooks", `{"url":"`+url+`"}`, &h)
	return env.ID, h
}

// session queues an item in env and returns the session's ID.
func (r *rig) session(env string) string {
	r.t.Helper()
	var s struct{ ID string }
	r.call("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`, &s)
	return s.ID
}

type delivery struct {
	ID            string          `json:"id"`
	Event         json.RawMessage `json:"event"`
	Attempts      int             `json:"attempts"`
	LastStatus    *int            `json:"last_status"`
	LastError     *string         `json:"last_error"`
	NextAttemptAt *string         `json:"next_attempt_at"`
	DeliveredAt   *string         `json:"delivered_at"`
	CreatedAt     string          `json:"created_at"`
}

func (r *rig) deliveries(env, webhookID string) []delivery {
	r.t.Helper()
	var p struct{ Data []delivery }
	r.call("GET", "/environments/"+env+"/webhooks/"+webhookID+"/deliveries?limit=100", "", &p)
	return p.Data
}

// only returns the webhook's one delivery.
func (r *rig) only(env, webhookID string) delivery {
	r.t.Helper()
	ds := r.deliveries(env, webhookID)
	if len(ds) != 1 {
		r.t.Fatalf("%d deliveries, want 1", len(ds))
	}
	return ds[0]
}

// sendDue runs one round of the sender and checks how many it attempted.
func (r *rig) sendDue(want int) {
	r.t.Helper()
	n, err := r.sender.SendDue(context.Background())
	if err != nil || n != want {
		r.t.Fatalf("SendDue = %d, %v; want %d attempts", n, err, want)
	}
}

func ts(t time.Time) string { return work.Timestamp(t).Format(work.TimeLayout) }

func parseTS(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// TestSignatureVerifies: a delivery arrives as API.md §9 says, and its signature checks
// out with the recipe of the package documentation (and the README), computed by hand,
// and with Verify; a changed body, another secret or an old timestamp do not.
func TestSignatureVerifies(t *testing.T) {
	t.Parallel()
	got := make(chan received, 1)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		got <- received{req.Header.Clone(), b}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	r := newRig(t, nil)
	env, h := r.envWithWebhook(recv.URL + "/hook")
	sess := r.session(env)
	r.sendDue(1)
	in := <-got

	d := r.only(env, h.ID)
	if in.header.Get("Content-Type") != "application/json" || in.header.Get(webhook.IDHeader) != d.ID {
		t.Errorf("headers %v: want Content-Type application/json and Berth-Webhook-Id %s", in.header, d.ID)
	}
	var list struct {
		Data []struct{ ID string } `json:"data"`
	}
	r.call("GET", "/environments/"+env+"/work", "", &list)
	want := `{"id":"` + d.ID + `","type":"work.queued","created_at":"` + ts(r.clock.Now()) + `","environment_id":"` + env +
		`","work_id":"` + list.Data[0].ID + `","session_id":"` + sess + `"}`
	if string(in.body) != want || string(d.Event) != want {
		t.Errorf("body %s\nevent %s\nwant  %s", in.body, d.Event, want)
	}
	if d.Attempts != 1 || d.LastStatus == nil || *d.LastStatus != 204 || d.LastError != nil ||
		d.NextAttemptAt != nil || d.DeliveredAt == nil || *d.DeliveredAt != ts(r.clock.Now()) {
		t.Errorf("delivery after a 204: %+v", d)
	}

	// The recipe, by hand: t and v1 from the header; v1 = hex(HMAC-SHA256(secret, t "." body)).
	sig := in.header.Get(webhook.SignatureHeader)
	var tsec, v1 string
	for part := range strings.SplitSeq(sig, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			tsec = v
		case "v1":
			v1 = v
		}
	}
	if sec, err := strconv.ParseInt(tsec, 10, 64); err != nil || sec != r.clock.Now().Unix() {
		t.Errorf("t=%s, want the sender's clock %d", tsec, r.clock.Now().Unix())
	}
	m := hmac.New(sha256.New, []byte(h.Secret))
	m.Write([]byte(tsec + "." + string(in.body)))
	if want := hex.EncodeToString(m.Sum(nil)); !hmac.Equal([]byte(v1), []byte(want)) {
		t.Errorf("v1=%s, want %s", v1, want)
	}

	// Verify, at the receiver's clock.
	now := r.clock.Now().Add(time.Minute)
	if err := webhook.VerifyAt(h.Secret, sig, in.body, 5*time.Minute, now); err != nil {
		t.Errorf("VerifyAt: %v", err)
	}
	for _, tc := range []struct {
		name, secret, header string
		body                 []byte
		now                  time.Time
		want                 error
	}{
		{"changed body", h.Secret, sig, bytes.Replace(in.body, []byte("work.queued"), []byte("work.qveued"), 1), now, webhook.ErrSignature},
		{"other secret", webhook.NewSecret(), sig, in.body, now, webhook.ErrSignature},
		{"too old", h.Secret, sig, in.body, now.Add(5 * time.Minute), webhook.ErrTooOld},
		{"from the future", h.Secret, sig, in.body, now.Add(-7 * time.Minute), webhook.ErrTooOld},
		{"changed t", h.Secret, strings.Replace(sig, "t="+tsec, "t="+strconv.FormatInt(now.Unix(), 10), 1), in.body, now, webhook.ErrSignature},
		{"no v1", h.Secret, "t=" + tsec, in.body, now, webhook.ErrMalformed},
		{"empty", h.Secret, "", in.body, now, webhook.ErrMalformed},
		{"not hex", h.Secret, "t=" + tsec + ",v1=zz", in.body, now, webhook.ErrMalformed},
	} {
		if err := webhook.VerifyAt(tc.secret, tc.header, tc.body, 5*time.Minute, tc.now); !errors.Is(err, tc.want) {
			t.Errorf("%s: VerifyAt = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Several v1 values (a receiver accepting an old and a new secret): any one may match.
	if err := webhook.VerifyAt(h.Secret, "t="+tsec+",v1="+strings.Repeat("00", 32)+",v1="+v1, in.body, 0, time.Time{}); err != nil {
		t.Errorf("a matching second v1: %v", err)
	}
	// Verify reads the real clock: the rig's is months behind.
	if err := webhook.Verify(h.Secret, sig, in.body, 5*time.Minute); !errors.Is(err, webhook.ErrTooOld) {
		t.Errorf("Verify of a signature from %s: %v, want ErrTooOld", r.clock.Now(), err)
	}
	if err := webhook.Verify(h.Secret, webhook.Sign(h.Secret, time.Now(), in.body), in.body, 5*time.Minute); err != nil {
		t.Errorf("Verify of a fresh signature: %v", err)
	}
}

// TestRetriesAFailingReceiver: a receiver that fails four times, four ways, then answers
// 200 gets five attempts, each due 1 s, 2 s, 4 s and 8 s after the previous failure (no
// jitter in this test), none sooner; the log shows each failure until the delivery.
func TestRetriesAFailingReceiver(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ids []string
	fail := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { http.Error(w, "down", http.StatusInternalServerError) },
		func(w http.ResponseWriter) { w.Header().Set("Location", "/elsewhere"); w.WriteHeader(http.StatusFound) },
		func(w http.ResponseWriter) { // no answer at all: the connection closes
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
		},
		func(w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) },
	}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		n := len(ids)
		ids = append(ids, req.Header.Get(webhook.IDHeader))
		mu.Unlock()
		if n < len(fail) {
			fail[n](w)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()
	r := newRig(t, nil)
	env, h := r.envWithWebhook(recv.URL)
	r.session(env)

	wantErrors := []struct {
		status int
		err    string
	}{{500, "HTTP 500"}, {302, "HTTP 302"}, {0, "EOF"}, {400, "HTTP 400"}}
	for i, we := range wantErrors {
		r.sendDue(1)
		d := r.only(env, h.ID)
		status := 0
		if d.LastStatus != nil {
			status = *d.LastStatus
		}
		wait := time.Second << i
		if d.Attempts != i+1 || status != we.status || d.LastError == nil || !strings.Contains(*d.LastError, we.err) ||
			d.DeliveredAt != nil || d.NextAttemptAt == nil || *d.NextAttemptAt != ts(r.clock.Now().Add(wait)) {
			t.Fatalf("after failure %d: %+v; want attempts %d, status %d, error %q, next attempt %s", i+1, d,
				i+1, we.status, we.err, ts(r.clock.Now().Add(wait)))
		}
		r.sendDue(0) // not due yet
		r.clock.Advance(wait - time.Microsecond)
		r.sendDue(0)
		r.clock.Advance(time.Microsecond)
	}
	r.sendDue(1)
	d := r.only(env, h.ID)
	if d.Attempts != 5 || *d.LastStatus != 200 || d.LastError != nil || d.NextAttemptAt != nil || d.DeliveredAt == nil {
		t.Errorf("after the fifth attempt: %+v; want delivered", d)
	}
	r.clock.Advance(time.Hour)
	r.sendDue(0)
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 5 {
		t.Errorf("the receiver got %d requests, want 5", len(ids))
	}
	for _, id := range ids {
		if id != d.ID {
			t.Errorf("Berth-Webhook-Id %s, want %s on every attempt", id, d.ID)
		}
	}
	for name, want := range map[string]float64{
		"berth_webhook_attempts_total": 5, "berth_webhook_failures_total": 4, "berth_webhook_give_ups_total": 0,
		"berth_webhook_deliveries_pending": 0,
	} {
		if got, err := testutil.GatherAndCount(r.reg, name); err != nil || got != 1 {
			t.Errorf("%s: %d series, %v", name, got, err)
		}
		if got := gauge(t, r.reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// gauge reads an unlabelled metric.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestGivesUpAfterADay: a receiver that never succeeds is tried, at most an hour apart,
// until the next try would fall more than 24 h after the delivery was made; then the
// delivery is given up and never tried again.
func TestGivesUpAfterADay(t *testing.T) {
	t.Parallel()
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer recv.Close()
	r := newRig(t, func(c *webhook.Config) { c.Rand = nil }) // real jitter
	env, h := r.envWithWebhook(recv.URL)
	r.session(env)
	created := r.clock.Now()
	var times []time.Time
	for {
		at, ok, err := r.st.NextDelivery(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		r.clock.Set(at)
		times = append(times, at)
		r.sendDue(1)
		if len(times) > 100 {
			t.Fatal("more than 100 attempts")
		}
	}
	d := r.only(env, h.ID)
	if d.Attempts != len(times) || d.NextAttemptAt != nil || d.DeliveredAt != nil || *d.LastStatus != 503 {
		t.Errorf("given up delivery %+v after %d attempts", d, len(times))
	}
	last := times[len(times)-1]
	if last.Sub(created) > webhook.RetryFor || last.Sub(created) < webhook.RetryFor-webhook.MaxRetry {
		t.Errorf("last attempt %v after the delivery was made, want within the last hour of %v", last.Sub(created), webhook.RetryFor)
	}
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		want := webhook.Backoff(i, 0.5)
		if gap > webhook.MaxRetry || gap < want*8/10 || gap > want*12/10 {
			t.Errorf("wait before attempt %d: %v, want %v ± 20 %%, at most 1 h", i+1, gap, want)
		}
	}
	r.clock.Advance(48 * time.Hour)
	r.sendDue(0)
	if got := gauge(t, r.reg, "berth_webhook_give_ups_total"); got != 1 {
		t.Errorf("give-ups %v, want 1", got)
	}
	if got := gauge(t, r.reg, "berth_webhook_failures_total"); got != float64(len(times)) {
		t.Errorf("failures %v, want %d", got, len(times))
	}
	t.Logf("%d attempts over %v", len(times), last.Sub(created))
}

// TestRunSendsWhenWoken: a running sender sends a delivery as soon as the write that
// queued it commits, without waiting for its poll.
func TestRunSendsWhenWoken(t *testing.T) {
	t.Parallel()
	got := make(chan string, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got <- req.Header.Get(webhook.IDHeader)
	}))
	defer recv.Close()
	r := newRig(t, func(c *webhook.Config) { c.Poll = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.sender.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	env, h := r.envWithWebhook(recv.URL)
	for range 3 {
		r.session(env)
		select {
		case <-got:
		case <-time.After(testserver.HangGuard):
			t.Fatal("no delivery")
		}
	}
	testserver.WaitFor(t, "three deliveries recorded", func() bool {
		for _, d := range r.deliveries(env, h.ID) {
			if d.DeliveredAt == nil {
				return false
			}
		}
		return true
	})
}

// TestInterruptedAttemptIsDueAgain: an attempt cut off because the sender stops is
// recorded as failed and due again at once, for the next server.
func TestInterruptedAttemptIsDueAgain(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}), make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		close(arrived)
		<-release
	}))
	defer recv.Close()
	defer close(release)
	r := newRig(t, nil)
	env, h := r.envWithWebhook(recv.URL)
	r.session(env)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := r.sender.SendDue(ctx)
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := r.only(env, h.ID)
	if d.Attempts != 1 || d.LastError == nil || !strings.Contains(*d.LastError, "server stopped") ||
		d.NextAttemptAt == nil || *d.NextAttemptAt != ts(r.clock.Now()) {
		t.Errorf("interrupted delivery %+v; want due again now", d)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 100; n++ {
		d := min(time.Second<<min(n-1, 20), time.Hour)
		for _, r := range []float64{0, 0.5, 0.999999} {
			got := webhook.Backoff(n, r)
			if got < d*8/10 || got > d*12/10 || got > time.Hour {
				t.Errorf("Backoff(%d, %v) = %v, want %v ± 20 %%, at most 1 h", n, r, got, d)
			}
		}
	}
	if webhook.Backoff(1, 0.5) != time.Second || webhook.Backoff(3, 0.5) != 4*time.Second {
		t.Errorf("Backoff without jitter: %v, %v", webhook.Backoff(1, 0.5), webhook.Backoff(3, 0.5))
	}
}
