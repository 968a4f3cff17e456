package kubernetes

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store/sqlite"
)

// The KEDA triggers' valueLocation, a GJSON path as KEDA's metrics-api scaler reads it
// (with the same library), finds the queue's depth in what a real berth server answers to
// the trigger's request: GET of its URL's path, with the worker token as the bearer
// token, as the TriggerAuthentication gives it.
func TestKEDATriggerReadsDepthFromStats(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := api.New(api.Config{Store: st, Logger: slog.New(slog.DiscardHandler)})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	tok, secret := api.NewToken("admin", api.RoleAdmin, "", time.Now())
	if _, err := st.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	admin, err := client.New(ts.URL+api.BasePath, secret)
	if err != nil {
		t.Fatal(err)
	}
	env, err := admin.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "keda", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := admin.CreateToken(ctx, client.CreateTokenParams{Name: "worker", Role: client.RoleWorker, EnvironmentID: env.ID})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := admin.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_keda", EnvironmentID: env.ID}); err != nil {
			t.Fatal(err)
		}
	}
	worker, err := client.New(ts.URL+api.BasePath, wt.Secret)
	if err != nil {
		t.Fatal(err)
	}
	// One item taken: two remain queued.
	w, err := worker.PollWork(ctx, env.ID, client.PollParams{WorkerID: "w1"})
	if err != nil || w == nil {
		t.Fatalf("poll: %v, %v", w, err)
	}
	if _, err := worker.AckWork(ctx, env.ID, w.ID, client.AckParams{WorkerID: "w1"}); err != nil {
		t.Fatal(err)
	}

	all := manifests(t)
	triggers := map[string][]kedaTrigger{
		"keda-scaledobject.yaml": only[*scaledObject](t, all, "keda-scaledobject.yaml").Spec.Triggers,
		"keda-scaledjob.yaml":    only[*scaledJob](t, all, "keda-scaledjob.yaml").Spec.Triggers,
	}
	for file, tr := range triggers {
		md := tr[0].Metadata
		u, err := url.Parse(md["url"])
		if err != nil {
			t.Fatal(err)
		}
		// The manifest's request, to this server and environment.
		path := strings.Replace(u.Path, "/env_REPLACE/", "/"+env.ID+"/", 1)
		req, err := http.NewRequest("GET", ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+wt.Secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("%s: GET %s with the worker token: %d %s", file, path, res.StatusCode, body)
		}
		v := gjson.GetBytes(body, md["valueLocation"])
		if !v.Exists() || v.Type != gjson.Number || v.Int() != 2 {
			t.Errorf("%s: valueLocation %q in %s is %v, want the depth, 2", file, md["valueLocation"], body, v)
		}
	}
}
