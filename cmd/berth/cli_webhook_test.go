package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/testserver"
	"github.com/berth-sh/berth/internal/webhook"
)

// TestCLIWebhooks: berth webhook create, list, deliveries and delete against a running
// server, whose sender delivers to a real receiver that checks the signature with the
// secret that create printed.
func TestCLIWebhooks(t *testing.T) {
	t.Parallel()
	verified := make(chan error, 4)
	var secret string
	secretSet := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		<-secretSet
		verified <- webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), b, 5*time.Minute)
	}))
	defer recv.Close()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	admin := readAdminToken(t, dir)
	cli := &cliRunner{t: t, env: []string{"BERTH_URL=" + p.url("/api/v1/cloud"), "BERTH_TOKEN=" + admin}}
	var env client.Environment
	cli.json(&env, "env", "create", "--name", "hooks", "--json")

	out, errs, code := cli.run("webhook", "create", env.ID, "--url", recv.URL+"/in", "--description", "scaler")
	if code != 0 || !regexp.MustCompile(`^whsec_[0-9A-Za-z]{43}\n$`).MatchString(out) || !strings.Contains(errs, "shown this once") {
		t.Fatalf("webhook create: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	secret = strings.TrimSpace(out)
	close(secretSet)
	ids := tableIDs(t, cli.ok("webhook", "list", env.ID))
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "whk_") {
		t.Fatalf("webhook list: %v", ids)
	}
	hook := ids[0]
	list := cli.ok("webhook", "list", env.ID, "--json")
	if strings.Contains(list, secret) || !strings.Contains(list, `"description":"scaler"`) {
		t.Errorf("webhook list --json: %s", list)
	}

	cli.ok("session", "create", "-e", env.ID, "--agent", "a")
	select {
	case err := <-verified:
		if err != nil {
			t.Errorf("the delivery's signature, with the secret create printed: %v", err)
		}
	case <-time.After(testserver.HangGuard):
		t.Fatal("no delivery")
	}
	var ds []client.WebhookDelivery
	testserver.WaitFor(t, "the delivery recorded", func() bool {
		cli.json(&ds, "webhook", "deliveries", env.ID, hook, "--all", "--json")
		return len(ds) == 1 && ds[0].DeliveredAt != nil
	})
	table := cli.ok("webhook", "deliveries", env.ID, hook)
	wantContains(t, table, "ATTEMPTS", ds[0].ID, " 200 ")

	cli.fail(2, "webhook", "create", env.ID, "--url", "ftp://x")
	member := strings.TrimSpace(cli.ok("token", "create", "--url", p.url("/api/v1/cloud"), "--name", "m", "--role", "member"))
	cli.with("BERTH_TOKEN="+member).ok("webhook", "list", env.ID)
	cli.with("BERTH_TOKEN="+member).fail(5, "webhook", "delete", env.ID, hook)
	wantContains(t, cli.ok("webhook", "delete", env.ID, hook), hook, "webhook_deleted")
	cli.fail(3, "webhook", "deliveries", env.ID, hook)
}
