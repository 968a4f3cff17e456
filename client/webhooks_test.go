package client_test

import (
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
)

func TestWebhooks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	env := b.selfHosted("byoc")
	w, err := b.admin.CreateWebhook(ctx, env.ID, client.CreateWebhookParams{URL: "https://hooks.example/a", Description: "scaler"})
	if err != nil {
		t.Fatal(err)
	}
	if w.Type != "webhook" || w.EnvironmentID != env.ID || w.URL != "https://hooks.example/a" || w.Description != "scaler" ||
		!strings.HasPrefix(w.Secret, "whsec_") || w.CreatedAt.IsZero() {
		t.Fatalf("created %+v", w)
	}
	_, err = b.admin.CreateWebhook(ctx, env.ID, client.CreateWebhookParams{URL: "ftp://x"})
	if e := apiError(t, err, 400, "invalid_request_error"); e.Param != "url" {
		t.Errorf("param %q", e.Param)
	}
	if _, err := b.admin.CreateSession(ctx, client.CreateSessionParams{Agent: "a", EnvironmentID: env.ID}); err != nil {
		t.Fatal(err)
	}
	var listed []client.Webhook
	for wh, err := range b.admin.AllWebhooks(ctx, env.ID, client.ListParams{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, wh)
	}
	if len(listed) != 1 || listed[0].ID != w.ID || listed[0].Secret != "" {
		t.Fatalf("listed %+v", listed)
	}
	ds, err := b.admin.ListWebhookDeliveries(ctx, env.ID, w.ID, client.ListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Data) != 1 || ds.Data[0].Attempts != 0 || ds.Data[0].NextAttemptAt == nil || ds.Data[0].DeliveredAt != nil ||
		!strings.Contains(string(ds.Data[0].Event), `"type":"work.queued"`) {
		t.Fatalf("deliveries %+v", ds.Data)
	}
	del, err := b.admin.DeleteWebhook(ctx, env.ID, w.ID)
	if err != nil || del.ID != w.ID || del.Type != "webhook_deleted" {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	_, err = b.admin.ListWebhookDeliveries(ctx, env.ID, w.ID, client.ListParams{})
	apiError(t, err, 404, "not_found_error")
	if _, err := b.admin.DeleteWebhook(ctx, env.ID, "../x"); err == nil {
		t.Error("a path segment with a slash was sent")
	}
}
