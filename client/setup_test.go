package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/testserver"
)

// bundle is one real berth server (SQLite in a temporary directory, behind a real HTTP
// listener) and a client holding an admin token.
type bundle struct {
	t     *testing.T
	ctx   context.Context
	store store.Store
	url   string // the server's root URL
	base  string // the API base URL
	admin *client.Client
	// requests counts the HTTP requests the admin client sent.
	requests *atomic.Int64
	// clock is the server's clock, moved by hand.
	clock *testClock
	api   *testserver.API
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := t.Context()
	a := testserver.NewAPI(t, nil)
	// Microseconds in every timestamp: the client must carry them through.
	a.Clock.Set(time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC))
	st, clock := a.Store, a.Clock
	ts := httptest.NewServer(a.Server)
	t.Cleanup(ts.Close)
	b := &bundle{t: t, ctx: ctx, store: st, url: ts.URL, base: ts.URL + api.BasePath, requests: new(atomic.Int64), clock: clock, api: a}
	hc := &http.Client{Transport: countingTransport{next: http.DefaultTransport, n: b.requests}}
	b.admin = b.client(a.Admin, client.WithHTTPClient(hc))
	return b
}

// token creates a token directly in the store and returns its secret.
func (b *bundle) token(role, environmentID string) string {
	b.t.Helper()
	return b.api.Token(role, environmentID)
}

// client returns a client of the bundle's server with the given token. Backoff is tiny
// so that a test never waits on a schedule.
func (b *bundle) client(token string, opts ...client.Option) *client.Client {
	b.t.Helper()
	opts = append([]client.Option{client.WithBackoff(time.Millisecond, 2*time.Millisecond)}, opts...)
	c, err := client.New(b.base, token, opts...)
	if err != nil {
		b.t.Fatalf("client.New: %v", err)
	}
	return c
}

// selfHosted creates a self_hosted environment.
func (b *bundle) selfHosted(name string) *client.Environment {
	b.t.Helper()
	env, err := b.admin.CreateEnvironment(b.ctx, client.CreateEnvironmentParams{Name: name, Config: client.SelfHostedConfig("")})
	if err != nil {
		b.t.Fatalf("create environment: %v", err)
	}
	return env
}

// session creates a session in env, which queues a work item when env is self_hosted.
func (b *bundle) session(envID string) *client.Session {
	b.t.Helper()
	sess, err := b.admin.CreateSession(b.ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: envID})
	if err != nil {
		b.t.Fatalf("create session: %v", err)
	}
	return sess
}

// countingTransport counts the requests sent through it.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// apiError asserts that err is a *client.Error with the given status and type.
func apiError(t *testing.T, err error, status int, typ string) *client.Error {
	t.Helper()
	e, ok := err.(*client.Error)
	if !ok {
		t.Fatalf("err = %T %v, want *client.Error %d %s", err, err, status, typ)
	}
	if e.StatusCode != status || e.Type != typ {
		t.Fatalf("err = %d %s (%q), want %d %s", e.StatusCode, e.Type, e.Message, status, typ)
	}
	if e.RequestID == "" {
		t.Errorf("err %v: no request ID", e)
	}
	return e
}

// testClock is the shared clock that the test moves by hand.
type testClock = testserver.Clock
