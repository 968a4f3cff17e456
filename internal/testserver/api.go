package testserver

import (
	"context"
	"log/slog"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
)

// API is a berth API server on a fresh store (OpenStore) with a clock the test moves
// (Clock) and an admin token: what the tests of the packages above the API (the client,
// the worker, the dashboard) start, each putting it behind the listener or transport it
// needs. It is shut down and its store closed when the test ends, after whatever the
// test started later (t.Cleanup runs last in, first out).
type API struct {
	t      testing.TB
	Store  store.Store
	Server *api.Server
	Clock  *Clock
	// Admin is the admin token's secret.
	Admin string
}

// NewAPI starts an API server; mod, when not nil, changes its configuration first (the
// clock is the Clock's unless mod sets Now; the log is discarded unless mod sets Logger).
func NewAPI(t testing.TB, mod func(*api.Config)) *API {
	t.Helper()
	st := OpenStore(t)
	clock := NewClock()
	cfg := api.Config{Store: st, Now: clock.Now, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	srv := api.New(cfg)
	t.Cleanup(func() {
		srv.Shutdown()
		st.Close()
	})
	a := &API{t: t, Store: st, Server: srv, Clock: clock}
	a.Admin = a.Token(api.RoleAdmin, "")
	return a
}

// Token creates a token directly in the store and returns its secret.
func (a *API) Token(role, environmentID string) string {
	a.t.Helper()
	tok, secret := api.NewToken("test-"+role, role, environmentID, a.Clock.Now())
	if _, err := a.Store.CreateToken(context.Background(), tok); err != nil {
		a.t.Fatalf("create token: %v", err)
	}
	return secret
}
