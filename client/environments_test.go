package client_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/berth-sh/berth/client"
)

func TestEnvironmentRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx

	env, err := b.admin.CreateEnvironment(ctx, client.CreateEnvironmentParams{
		Name:        "byoc",
		Description: "our machines",
		Config:      client.SelfHostedConfig("echo hi"),
		Metadata:    map[string]string{"team": "infra", "tier": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != "environment" || env.Name != "byoc" || env.Description != "our machines" ||
		env.Config.Type != client.ConfigSelfHosted || env.ArchivedAt != nil || env.CreatedAt.IsZero() ||
		!env.UpdatedAt.Equal(env.CreatedAt) || env.Metadata["team"] != "infra" {
		t.Fatalf("created %+v", env)
	}
	var cfg map[string]string
	if err := json.Unmarshal(env.Config.Raw, &cfg); err != nil || cfg["setup_script"] != "echo hi" {
		t.Fatalf("config %s: %v", env.Config.Raw, err)
	}

	got, err := b.admin.GetEnvironment(ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != env.ID || !got.CreatedAt.Equal(env.CreatedAt) || string(got.Config.Raw) != string(env.Config.Raw) {
		t.Fatalf("get %+v, want %+v", got, env)
	}

	upd, err := b.admin.UpdateEnvironment(ctx, env.ID, client.UpdateEnvironmentParams{
		Name:     client.String("byoc-2"),
		Metadata: map[string]*string{"tier": nil, "zone": client.String("eu")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Name != "byoc-2" || upd.Description != "our machines" ||
		!maps.Equal(upd.Metadata, map[string]string{"team": "infra", "zone": "eu"}) {
		t.Fatalf("updated %+v", upd)
	}

	// The config's type may not change.
	_, err = b.admin.UpdateEnvironment(ctx, env.ID, client.UpdateEnvironmentParams{Config: &client.EnvironmentConfig{Type: client.ConfigCloud}})
	if e := apiError(t, err, 400, "invalid_request_error"); e.Param != "config.type" {
		t.Errorf("param = %q", e.Param)
	}

	cloud, err := b.admin.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	if cloud.Config.Type != client.ConfigCloud {
		t.Errorf("default config %s", cloud.Config.Raw)
	}

	page, err := b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{})
	if err != nil {
		t.Fatal(err)
	}
	if ids := envIDs(page.Data); !slices.Equal(ids, []string{env.ID, cloud.ID}) || page.HasMore ||
		page.FirstID != env.ID || page.LastID != cloud.ID || page.NextPage != "" {
		t.Fatalf("list %v %+v", ids, page)
	}

	arch, err := b.admin.ArchiveEnvironment(ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if arch.ArchivedAt == nil {
		t.Fatalf("archived %+v", arch)
	}
	again, err := b.admin.ArchiveEnvironment(ctx, env.ID)
	if err != nil || !again.ArchivedAt.Equal(*arch.ArchivedAt) {
		t.Fatalf("archive again: %+v %v", again, err)
	}
	page, err = b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{})
	if err != nil || !slices.Equal(envIDs(page.Data), []string{cloud.ID}) {
		t.Fatalf("list without archived: %v %v", envIDs(page.Data), err)
	}
	page, err = b.admin.ListEnvironments(ctx, client.ListEnvironmentsParams{IncludeArchived: true})
	if err != nil || len(page.Data) != 2 {
		t.Fatalf("list with archived: %v %v", envIDs(page.Data), err)
	}

	del, err := b.admin.DeleteEnvironment(ctx, env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *del != (client.Deleted{ID: env.ID, Type: "environment_deleted"}) {
		t.Fatalf("deleted %+v", del)
	}
	_, err = b.admin.GetEnvironment(ctx, env.ID)
	apiError(t, err, 404, "not_found_error")
	if !client.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}
}

func TestDeleteEnvironmentReferenced(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("busy")
	sess := b.session(env.ID)

	_, err := b.admin.DeleteEnvironment(b.ctx, env.ID)
	apiError(t, err, 409, "conflict_error")
	if !client.IsConflict(err) {
		t.Errorf("IsConflict(%v) = false", err)
	}
	if _, err := b.admin.DeleteSession(b.ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin.DeleteEnvironment(b.ctx, env.ID); err != nil {
		t.Fatal(err)
	}
}

func envIDs(envs []client.Environment) []string {
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.ID
	}
	return ids
}
