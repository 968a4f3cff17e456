package dashboard_test

import (
	"strings"
	"testing"
)

// TestWebhooksViewShowsDeliveries: the webhooks view has the environment's webhooks
// (never their secrets), each with the newest page of its deliveries, as the API answers
// them to the signed-in token.
func TestWebhooksViewShowsDeliveries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	hook := f.apiDo(f.admin, "POST", "/environments/"+env+"/webhooks", `{"url":"https://scaler.example/in","description":"keda"}`, 201)
	secret := hook["secret"].(string)
	_, work := f.session(env)
	c := cookie(f.admin)
	r := f.do("GET", "/ui/view?view=webhooks&env="+env, "", "Cookie", c)
	if r.status != 200 {
		t.Fatalf("webhooks view: %d %s", r.status, r.body)
	}
	if secret == "" || strings.Contains(string(r.body), secret) {
		t.Errorf("the webhooks view shows a secret")
	}
	v := r.json(t)
	hooks := v["webhooks"].(map[string]any)["data"].([]any)
	if len(hooks) != 1 || hooks[0].(map[string]any)["id"] != hook["id"] {
		t.Fatalf("webhooks: %v", v["webhooks"])
	}
	ds := v["deliveries"].(map[string]any)[hook["id"].(string)].(map[string]any)["data"].([]any)
	if len(ds) != 1 || ds[0].(map[string]any)["event"].(map[string]any)["work_id"] != work {
		t.Errorf("deliveries: %v", ds)
	}
	if v["environment"].(map[string]any)["name"] != "byoc" {
		t.Errorf("environment: %v", v["environment"])
	}
	if r := f.do("GET", "/ui/view?view=webhooks", "", "Cookie", c); r.status != 400 {
		t.Errorf("webhooks view without env: %d", r.status)
	}
}
