package api_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// holdStore is the store under test with one hook: the test can take over the next
// CreateSession, getting the request's context and the real write (next) to call when
// and how it likes.
type holdStore struct {
	store.Store
	hold atomic.Pointer[func(ctx context.Context, next func(context.Context) error) error]
}

func (s *holdStore) CreateSession(ctx context.Context, sess store.Session, events []store.Event, item *work.Item, claim *work.Claim) (store.Created, error) {
	var created store.Created
	next := func(ctx context.Context) error {
		var err error
		created, err = s.Store.CreateSession(ctx, sess, events, item, claim)
		return err
	}
	if h := s.hold.Swap(nil); h != nil {
		return created, (*h)(ctx, next)
	}
	return created, next(ctx)
}

// holdNext makes fn take over the next CreateSession.
func (s *holdStore) holdNext(fn func(ctx context.Context, next func(context.Context) error) error) {
	s.hold.Store(&fn)
}

// disconnectHarness is a harness whose store is a holdStore, and which reports on served
// the x-request-id of every request whose handling has ended (handler returned).
func disconnectHarness(t *testing.T, mod func(*api.Config)) (*harness, *holdStore, <-chan string) {
	t.Helper()
	hs := &holdStore{}
	served := make(chan string, 64)
	h := newHarnessWrapped(t, func(c *api.Config) {
		hs.Store = c.Store
		c.Store = hs
		if mod != nil {
			mod(c)
		}
	}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r)
			if id := r.Header.Get("x-request-id"); strings.HasPrefix(id, "hangup-") {
				served <- id
			}
		})
	})
	return h, hs, served
}

// hangUp sends a request (as the admin, with x-request-id reqID, which must start with
// "hangup-") over a connection of its own, waits until entered says the server is inside
// the held store call, and then hangs up, as a client does when its timeout fires. It
// returns once the server has finished handling the request.
func hangUp(t *testing.T, h *harness, served <-chan string, entered <-chan struct{}, method, path, body, reqID string, opts ...reqOpt) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.url+api.BasePath+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.admin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-request-id", reqID)
	for _, o := range opts {
		o(req)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	errc := make(chan error, 1)
	go func() {
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("the client that hung up got %v, want its own cancellation", err)
	}
	for id := range served {
		if id == reqID {
			return
		}
	}
}

// A keyed POST /sessions whose client hangs up mid-request leaves no key stuck: the retry
// with the same key gets the first answer replayed when the first request's write had
// committed, and runs afresh when the hang-up reached the write first. Either way there is
// exactly one session and one work item, and later retries replay that one answer.
func TestIdempotencyKeySurvivesAClientHangingUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		committed bool
	}{{"the write committed before the hang-up", true}, {"the hang-up came before the write", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, hs, served := disconnectHarness(t, nil)
			env := h.env(true)
			body := `{"agent":"agent_x","environment_id":"` + env + `"}`
			key := header("Idempotency-Key", "retry-after-timeout")
			entered := make(chan struct{})
			hs.holdNext(func(ctx context.Context, next func(context.Context) error) error {
				if tc.committed {
					err := next(ctx)
					entered <- struct{}{}
					<-ctx.Done() // the client hangs up after the commit
					return err
				}
				entered <- struct{}{}
				<-ctx.Done() // the client hangs up before the write
				return next(ctx)
			})
			hangUp(t, h, served, entered, "POST", "/sessions", body, "hangup-1", key)

			retry := h.do("POST", "/sessions", body, key)
			wantStatus(t, retry, 201)
			if replayed := retry.Header.Get("Idempotent-Replayed") == "true"; replayed != tc.committed {
				t.Errorf("retry: Idempotent-Replayed %v, want %v", replayed, tc.committed)
			}
			sessions := tcList(t, h, "/sessions?limit=100").ids()
			if len(sessions) != 1 || sessions[0] != retry.str(t, "id") {
				t.Fatalf("sessions %v, want exactly the retry's %s", sessions, retry.str(t, "id"))
			}
			if items := tcList(t, h, "/environments/"+env+"/work?limit=100").ids(); len(items) != 1 {
				t.Errorf("work items %v, want one", items)
			}
			again := h.do("POST", "/sessions", body, key)
			wantStatus(t, again, 201)
			if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(retry.Body) {
				t.Errorf("second retry: %v %s, want the replay of %s", again.Header, again.Body, retry.Body)
			}
		})
	}
}

// A client that hangs up before it is answered is counted under code 499 in
// berth_http_requests_total and logs no ERROR line (its access line says status 499, at
// Info, with the status the handler chose if it wrote one), whether the hang-up cut the
// store write off or came after it. A real failure while the client waits is still a 500
// with an ERROR line.
func TestClientHangingUpIsCounted499NotAsAServerError(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	h, hs, served := disconnectHarness(t, func(c *api.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	env := h.env(true)
	body := `{"agent":"agent_x","environment_id":"` + env + `"}`

	// Cut off before the write: the store call fails with the cancellation.
	entered := make(chan struct{})
	hs.holdNext(func(ctx context.Context, next func(context.Context) error) error {
		entered <- struct{}{}
		<-ctx.Done()
		return next(ctx)
	})
	hangUp(t, h, served, entered, "POST", "/sessions", body, "hangup-before-write")

	// Gone after the write: the handler answers 201 to no one.
	hs.holdNext(func(ctx context.Context, next func(context.Context) error) error {
		err := next(ctx)
		entered <- struct{}{}
		<-ctx.Done()
		return err
	})
	hangUp(t, h, served, entered, "POST", "/sessions", body, "hangup-after-write")

	// A real failure, the client waiting.
	hs.holdNext(func(ctx context.Context, next func(context.Context) error) error {
		return errors.New("disk on fire")
	})
	wantError(t, h.do("POST", "/sessions", body, header("x-request-id", "real-failure")), 500, "api_error", "")

	m := h.doRaw("GET", "/metrics", "", as(""))
	for sample, want := range map[string]float64{
		`berth_http_requests_total{code="499",method="POST",route="/api/v1/cloud/sessions"}`: 2,
		`berth_http_requests_total{code="500",method="POST",route="/api/v1/cloud/sessions"}`: 1,
		`berth_http_requests_total{code="201",method="POST",route="/api/v1/cloud/sessions"}`: 0,
	} {
		if got, _ := metricValue(m.Body, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}

	lines, raw := logLines(t, logs)
	access := map[string]map[string]any{}
	errorLines := map[string]int{}
	for _, l := range lines {
		id, _ := l["request_id"].(string)
		if l["msg"] == "request" {
			access[id] = l
		}
		if l["level"] == "ERROR" {
			errorLines[id]++
		}
	}
	for id, want := range map[string]struct {
		status, handlerStatus float64
		errors                int
	}{
		"hangup-before-write": {499, 500, 0},
		"hangup-after-write":  {499, 201, 0},
		"real-failure":        {500, 0, 1},
	} {
		a := access[id]
		if a == nil {
			t.Errorf("%s: no access line in\n%s", id, raw)
			continue
		}
		hs, _ := a["handler_status"].(float64)
		if a["status"] != want.status || hs != want.handlerStatus || a["level"] != "INFO" {
			t.Errorf("%s: access line %v, want status %v, handler_status %v, at INFO", id, a, want.status, want.handlerStatus)
		}
		if errorLines[id] != want.errors {
			t.Errorf("%s: %d ERROR lines, want %d:\n%s", id, errorLines[id], want.errors, raw)
		}
	}
}
