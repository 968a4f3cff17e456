package api_test

import (
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/work"
)

// Webhooks (API.md §9): the routes, their objects and access, and the delivery log that
// queuing work fills. Sending is internal/webhook's (its tests run the sender against
// this API).

type webhookJSON struct {
	ID            string  `json:"id"`
	Type          string  `json:"type"`
	EnvironmentID string  `json:"environment_id"`
	URL           string  `json:"url"`
	Description   string  `json:"description"`
	CreatedAt     string  `json:"created_at"`
	Secret        *string `json:"secret"`
}

type deliveryJSON struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Event struct {
		ID            string `json:"id"`
		Type          string `json:"type"`
		CreatedAt     string `json:"created_at"`
		EnvironmentID string `json:"environment_id"`
		WorkID        string `json:"work_id"`
		SessionID     string `json:"session_id"`
	} `json:"event"`
	Attempts      int     `json:"attempts"`
	LastStatus    *int    `json:"last_status"`
	LastError     *string `json:"last_error"`
	NextAttemptAt *string `json:"next_attempt_at"`
	DeliveredAt   *string `json:"delivered_at"`
	CreatedAt     string  `json:"created_at"`
}

func (h *harness) webhook(env, body string) webhookJSON {
	h.t.Helper()
	r := h.do("POST", "/environments/"+env+"/webhooks", body)
	wantStatus(h.t, r, 201)
	var w webhookJSON
	r.decode(h.t, &w)
	return w
}

func (h *harness) deliveries(env, webhookID string) []deliveryJSON {
	h.t.Helper()
	r := h.do("GET", "/environments/"+env+"/webhooks/"+webhookID+"/deliveries?limit=100", "")
	wantStatus(h.t, r, 200)
	var p struct{ Data []deliveryJSON }
	r.decode(h.t, &p)
	return p.Data
}

var whSecretRE = regexp.MustCompile(`^whsec_[0-9A-Za-z]{43}$`)

func TestWebhookLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false) // any environment type
	r := h.do("POST", "/environments/"+env+"/webhooks", `{"url":"https://hooks.example/scale?team=infra","description":"KEDA"}`)
	wantStatus(t, r, 201)
	wantKeys := `{"id":"%s","type":"webhook","environment_id":"%s","url":"https://hooks.example/scale?team=infra","description":"KEDA","created_at":"%s","secret":"%s"}`
	var created webhookJSON
	r.decode(t, &created)
	if created.Secret == nil || !whSecretRE.MatchString(*created.Secret) {
		t.Fatalf("secret %v, want whsec_ and 43 base62 characters", created.Secret)
	}
	if want := fmt.Sprintf(wantKeys, created.ID, env, wkTS(h.now()), *created.Secret); string(r.Body) != want {
		t.Errorf("create answered\n%s\nwant\n%s", r.Body, want)
	}
	second := h.webhook(env, `{"url":"http://10.0.0.7:8080/"}`)
	if second.Description != "" || *second.Secret == *created.Secret {
		t.Errorf("second webhook %+v: want an empty description and a secret of its own", second)
	}

	// Listed by admins and members, never with the secret.
	member := h.token(api.RoleMember, "")
	for _, who := range []string{h.admin, member} {
		r := h.do("GET", "/environments/"+env+"/webhooks", "", as(who))
		wantStatus(t, r, 200)
		if strings.Contains(string(r.Body), "secret") || strings.Contains(string(r.Body), *created.Secret) {
			t.Errorf("the list shows a secret: %s", r.Body)
		}
		var p struct {
			Data    []webhookJSON
			HasMore bool `json:"has_more"`
		}
		r.decode(t, &p)
		if len(p.Data) != 2 || p.Data[0].ID != created.ID || p.Data[1].ID != second.ID || p.HasMore {
			t.Errorf("list = %+v, want both webhooks in creation order", p)
		}
	}
	// Paged like every list.
	r = h.do("GET", "/environments/"+env+"/webhooks?limit=1", "")
	wantStatus(t, r, 200)
	if r.str(t, "next_page") != created.ID {
		t.Errorf("first page of one: next_page %q, want %s", r.str(t, "next_page"), created.ID)
	}
	wantError(t, h.do("GET", "/environments/"+env+"/webhooks?after_id=tok_0", ""), 400, "invalid_request_error", "after_id")

	// Another environment sees neither, and cannot reach them.
	other := h.env(true)
	if r := h.do("GET", "/environments/"+other+"/webhooks", ""); !strings.Contains(string(r.Body), `"data":[]`) {
		t.Errorf("another environment lists %s", r.Body)
	}
	wantError(t, h.do("DELETE", "/environments/"+other+"/webhooks/"+created.ID, ""), 404, "not_found_error", "")
	wantError(t, h.do("GET", "/environments/"+other+"/webhooks/"+created.ID+"/deliveries", ""), 404, "not_found_error", "")

	// Delete.
	r = h.do("DELETE", "/environments/"+env+"/webhooks/"+created.ID, "")
	wantStatus(t, r, 200)
	if want := `{"id":"` + created.ID + `","type":"webhook_deleted"}`; string(r.Body) != want {
		t.Errorf("delete answered %s, want %s", r.Body, want)
	}
	wantError(t, h.do("DELETE", "/environments/"+env+"/webhooks/"+created.ID, ""), 404, "not_found_error", "")
	wantError(t, h.do("GET", "/environments/"+env+"/webhooks/"+created.ID+"/deliveries", ""), 404, "not_found_error", "")
	r = h.do("GET", "/environments/"+env+"/webhooks", "")
	if strings.Contains(string(r.Body), created.ID) || !strings.Contains(string(r.Body), second.ID) {
		t.Errorf("list after the delete: %s", r.Body)
	}

	// Malformed and unknown IDs are 404s.
	for _, p := range []string{
		"/environments/env_x/webhooks",
		"/environments/" + strings.Replace(env, "env_", "env_0", 1) + "/webhooks",
		"/environments/" + env + "/webhooks/tok_0/deliveries",
		"/environments/" + env + "/webhooks/" + strings.Replace(second.ID, "whk_", "whd_", 1) + "/deliveries",
	} {
		wantError(t, h.do("GET", p, ""), 404, "not_found_error", "")
	}
	wantError(t, h.do("POST", "/environments/env_019f3be4fd2475d9a784bf2c739e1194/webhooks", `{"url":"https://x.example"}`), 404, "not_found_error", "")
}

func TestWebhookCreateValidation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	long := "https://hooks.example/" + strings.Repeat("a", 2048-len("https://hooks.example/"))
	for _, tc := range []struct{ body, param string }{
		{`{}`, "url"},
		{`{"url":null}`, "url"},
		{`{"url":42}`, "url"},
		{`{"url":""}`, "url"},
		{`{"url":"hooks.example/x"}`, "url"},
		{`{"url":"/relative"}`, "url"},
		{`{"url":"ftp://hooks.example/x"}`, "url"},
		{`{"url":"javascript:alert(1)"}`, "url"},
		{`{"url":"http://"}`, "url"},
		{`{"url":"https:opaque"}`, "url"},
		{`{"url":" https://hooks.example/"}`, "url"},
		{`{"url":"https://user:pw@hooks.example/"}`, "url"},
		{`{"url":"https://hooks.example/%zz"}`, "url"},
		{`{"url":"` + long + `x"}`, "url"},
		{`{"url":"https://hooks.example/","description":7}`, "description"},
		{`{"url":"https://hooks.example/","description":"` + strings.Repeat("d", 2049) + `"}`, "description"},
		{`[]`, ""},
		{`{"url":`, ""},
	} {
		r := h.do("POST", "/environments/"+env+"/webhooks", tc.body)
		wantError(t, r, 400, "invalid_request_error", tc.param)
	}
	if r := h.do("GET", "/environments/"+env+"/webhooks", ""); !strings.Contains(string(r.Body), `"data":[]`) {
		t.Errorf("a refused create stored a webhook: %s", r.Body)
	}
	// The longest URL allowed, and an uppercase scheme.
	for _, u := range []string{long, "HTTPS://hooks.example/x"} {
		if w := h.webhook(env, `{"url":"`+u+`"}`); w.URL != u {
			t.Errorf("url stored as %q, want %q", w.URL, u)
		}
	}
}

// TestWebhookDeliveryLog: every item queued in the environment (session create, dormant
// wake-up, requeue after lease expiry) shows up as one pending delivery to each webhook,
// its event naming the item and its session.
func TestWebhookDeliveryLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	before := h.queuedItem(env) // queued before any webhook: no delivery
	a := h.webhook(env, `{"url":"https://a.example/"}`)
	b := h.webhook(env, `{"url":"https://b.example/"}`)

	h.clock.Advance(time.Second)
	created := h.queuedItem(env)
	// A dormant wake-up: the item stops, then a user message queues a fresh one.
	h.clock.Advance(time.Second)
	sess := h.session(env)
	first := h.wkItemsOf(env, sess)[0]
	for _, step := range []string{"/ack", "/stop", "/stop"} {
		wantStatus(t, h.do("POST", workPath(env, first.ID, step), `{"force":true}`), 200)
	}
	h.clock.Advance(time.Second)
	wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":"again"}]}`), 200)
	woken := h.wkItemsOf(env, sess)[1]
	// A requeue after lease expiry.
	leasedSess, leased := h.wkLeasedSession(env)
	h.clock.Advance(time.Duration(work.DefaultTTL+1) * time.Second)
	h.wkExpire()
	requeued := h.wkWantRequeued(env, leasedSess, leased)

	queued := []workJSON{created, first, woken, h.wkItemsOf(env, leasedSess)[0], requeued}
	for _, w := range []webhookJSON{a, b} {
		ds := h.deliveries(env, w.ID)
		if len(ds) != len(queued) {
			t.Fatalf("webhook %s has %d deliveries, want %d (one per item queued since it exists)", w.ID, len(ds), len(queued))
		}
		for i, d := range ds {
			it := queued[i]
			if d.Type != "webhook_delivery" || d.Event.ID != d.ID || d.Event.Type != "work.queued" ||
				d.Event.WorkID != it.ID || d.Event.SessionID != it.Data["id"] || d.Event.EnvironmentID != env ||
				d.Event.CreatedAt != *it.CreatedAt || d.CreatedAt != *it.CreatedAt {
				t.Errorf("delivery %d = %+v, want one of item %+v", i, d, it)
			}
			if d.Attempts != 0 || d.LastStatus != nil || d.LastError != nil || d.DeliveredAt != nil ||
				d.NextAttemptAt == nil || *d.NextAttemptAt != d.CreatedAt {
				t.Errorf("delivery %d = %+v, want pending, due at its creation, never attempted", i, d)
			}
			if d.Event.WorkID == before.ID {
				t.Errorf("an item queued before the webhook existed has a delivery")
			}
		}
	}
}

// TestWebhookWakesSender: a write that queues deliveries wakes the sender once it has
// committed; one that queues none does not.
func TestWebhookWakesSender(t *testing.T) {
	t.Parallel()
	var wakes atomic.Int32
	h := newHarnessWith(t, func(c *api.Config) { c.WakeWebhooks = func() { wakes.Add(1) } })
	quiet, env := h.env(true), h.env(true)
	h.session(quiet)
	if n := wakes.Load(); n != 0 {
		t.Fatalf("%d wakes without any webhook", n)
	}
	h.webhook(env, `{"url":"https://a.example/"}`)
	h.session(env)
	if n := wakes.Load(); n != 1 {
		t.Errorf("%d wakes after a session create with a webhook, want 1", n)
	}
}

// TestWebhookCreateReplay: an Idempotency-Key replays the create, secret and all, and
// makes no second webhook.
func TestWebhookCreateReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	body := `{"url":"https://a.example/"}`
	first := h.do("POST", "/environments/"+env+"/webhooks", body, header("Idempotency-Key", "wh-1"))
	wantStatus(t, first, 201)
	again := h.do("POST", "/environments/"+env+"/webhooks", body, header("Idempotency-Key", "wh-1"))
	if again.Status != 201 || string(again.Body) != string(first.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay = %d %s, want the first answer %s", again.Status, again.Body, first.Body)
	}
	r := h.do("GET", "/environments/"+env+"/webhooks", "")
	var p struct{ Data []webhookJSON }
	r.decode(t, &p)
	if len(p.Data) != 1 {
		t.Errorf("%d webhooks after a replay, want 1", len(p.Data))
	}
}
