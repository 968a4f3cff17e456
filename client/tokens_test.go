package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
)

func TestTokensAndRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	env := b.selfHosted("byoc")

	member, err := b.admin.CreateToken(ctx, client.CreateTokenParams{Name: "ci", Role: client.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	if member.Type != "token" || member.Role != client.RoleMember || member.EnvironmentID != "" ||
		!strings.HasPrefix(member.Secret, "pt-") || member.RevokedAt != nil || member.CreatedAt.IsZero() {
		t.Fatalf("created %+v", member)
	}
	worker, err := b.admin.CreateToken(ctx, client.CreateTokenParams{Name: "w", Role: client.RoleWorker, EnvironmentID: env.ID})
	if err != nil || worker.EnvironmentID != env.ID {
		t.Fatalf("worker token %+v %v", worker, err)
	}
	_, err = b.admin.CreateToken(ctx, client.CreateTokenParams{Name: "w", Role: client.RoleWorker})
	if e := apiError(t, err, 400, "invalid_request_error"); e.Param != "environment_id" {
		t.Errorf("param %q", e.Param)
	}

	page, err := b.admin.ListTokens(ctx, client.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tok := range page.Data {
		ids = append(ids, tok.ID)
		if tok.Secret != "" {
			t.Errorf("listed token %s shows its secret", tok.ID)
		}
	}
	if !slices.Contains(ids, member.ID) || !slices.Contains(ids, worker.ID) {
		t.Fatalf("list %v", ids)
	}

	// A member may do everything but delete environments and manage tokens.
	mc := b.client(member.Secret)
	other, err := mc.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "other", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mc.DeleteEnvironment(ctx, other.ID)
	apiError(t, err, 403, "permission_error")
	if !client.IsForbidden(err) {
		t.Errorf("IsForbidden(%v) = false", err)
	}
	if _, err := mc.ListTokens(ctx, client.ListParams{}); !client.IsForbidden(err) {
		t.Errorf("member lists tokens: %v", err)
	}

	// A worker token reaches its own environment only.
	wc := b.client(worker.Secret)
	if _, err := wc.GetEnvironment(ctx, env.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.PollWork(ctx, env.ID, client.PollParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.PollWork(ctx, other.ID, client.PollParams{}); !client.IsForbidden(err) {
		t.Errorf("worker polls another environment: %v", err)
	}
	if _, err := wc.ListSessions(ctx, client.ListSessionsParams{}); !client.IsForbidden(err) {
		t.Errorf("worker lists sessions: %v", err)
	}

	revoked, err := b.admin.RevokeToken(ctx, member.ID)
	if err != nil || revoked.RevokedAt == nil || revoked.Secret != "" {
		t.Fatalf("revoke %+v %v", revoked, err)
	}
	_, err = mc.GetEnvironment(ctx, other.ID)
	apiError(t, err, 401, "authentication_error")
	if !client.IsUnauthorized(err) {
		t.Errorf("IsUnauthorized(%v) = false", err)
	}
	if _, err := b.admin.RevokeToken(ctx, "tok_0000000000000000000000000000000f"); !client.IsNotFound(err) {
		t.Errorf("revoke unknown: %v", err)
	}
}

func TestUnauthorized(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, token := range []string{"", "pt-" + strings.Repeat("x", 43), "not-a-token"} {
		c := b.client(token)
		_, err := c.ListEnvironments(b.ctx, client.ListEnvironmentsParams{})
		e := apiError(t, err, 401, "authentication_error")
		if !client.IsUnauthorized(err) || client.IsForbidden(err) || client.IsNotFound(err) {
			t.Errorf("helpers disagree on %v", err)
		}
		want := "berth: HTTP 401 authentication_error: " + e.Message + " (request_id=" + e.RequestID + ")"
		if e.Error() != want {
			t.Errorf("Error() = %q, want %q", e.Error(), want)
		}
	}
}

func TestErrorCarriesRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.admin.GetEnvironment(b.ctx, "env_0000000000000000000000000000000f", client.WithHeader("x-request-id", "req-42"))
	e := apiError(t, err, 404, "not_found_error")
	if e.RequestID != "req-42" || !strings.HasSuffix(e.Error(), "(request_id=req-42)") {
		t.Fatalf("error %q, request ID %q", e.Error(), e.RequestID)
	}
	// The helpers see through wrapping.
	if !client.IsNotFound(errors.Join(errors.New("context"), err)) {
		t.Error("IsNotFound does not unwrap")
	}
}

func TestIdempotencyKeyReplay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	params := client.CreateEnvironmentParams{Name: "once", Config: client.SelfHostedConfig("")}
	first, err := b.admin.CreateEnvironment(ctx, params, client.WithIdempotencyKey("create-once"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.admin.CreateEnvironment(ctx, params, client.WithIdempotencyKey("create-once"))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !second.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("replay made another environment: %s and %s", first.ID, second.ID)
	}
	page, err := b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{})
	if err != nil || len(page.Data) != 1 {
		t.Fatalf("list %+v %v", page, err)
	}

	params.Name = "twice"
	_, err = b.admin.CreateEnvironment(ctx, params, client.WithIdempotencyKey("create-once"))
	apiError(t, err, 409, "conflict_error")

	// A keyed bodiless POST replays too: the second ack answers the first one's item.
	b.session(first.ID)
	w, err := b.admin.PollWork(ctx, first.ID, client.PollParams{})
	if err != nil || w == nil {
		t.Fatalf("poll %+v %v", w, err)
	}
	for range 2 {
		acked, err := b.admin.AckWork(ctx, first.ID, w.ID, client.AckParams{}, client.WithIdempotencyKey("ack-"+w.ID))
		if err != nil || acked.State != client.StateStarting {
			t.Fatalf("ack %+v %v", acked, err)
		}
	}
}

func TestServiceEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.admin.Healthz(b.ctx); err != nil {
		t.Error(err)
	}
	if err := b.client("").Readyz(b.ctx); err != nil {
		t.Error(err)
	}
}
