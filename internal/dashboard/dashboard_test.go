package dashboard_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
)

func TestSignInSetsStrictHttpOnlyCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	member := f.token(api.RoleMember, "")
	for _, tc := range []struct {
		secret, role string
	}{{f.admin, "admin"}, {member, "member"}} {
		r := f.do("POST", "/ui/signin", `{"token":" `+tc.secret+`\n"}`, "Content-Type", "application/json")
		if r.status != 200 || r.json(t)["role"] != tc.role {
			t.Fatalf("sign in as %s: %d %s", tc.role, r.status, r.body)
		}
		cs := r.res.Cookies()
		if len(cs) != 1 {
			t.Fatalf("sign in set %d cookies: %v", len(cs), r.header.Values("Set-Cookie"))
		}
		c := cs[0]
		if c.Name != "berth_token" || c.Value != tc.secret || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode ||
			c.Path != "/" || c.Secure {
			t.Errorf("cookie %+v: want berth_token=<token>, HttpOnly, SameSite=Strict, Path=/, not Secure over plain HTTP", c)
		}
		raw := r.header.Get("Set-Cookie")
		if !strings.Contains(raw, "HttpOnly") || !strings.Contains(raw, "SameSite=Strict") {
			t.Errorf("Set-Cookie %q", raw)
		}
		me := f.do("GET", "/ui/me", "", "Cookie", cookie(tc.secret))
		if me.status != 200 || me.json(t)["role"] != tc.role {
			t.Errorf("me as %s: %d %s", tc.role, me.status, me.body)
		}
	}

	// The form, as submitted without scripts, signs in too, and is sent home.
	r := f.do("POST", "/ui/signin", "token="+f.admin, "Content-Type", "application/x-www-form-urlencoded")
	if r.status != 200 || r.res.Request.URL.Path != "/" || len(r.res.Request.Response.Cookies()) != 1 {
		t.Errorf("form sign-in: %d, ended at %s", r.status, r.res.Request.URL)
	}
}

func TestSignInCookieIsSecureOverTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{tls: true})
	r := f.do("POST", "/ui/signin", `{"token":"`+f.admin+`"}`, "Content-Type", "application/json")
	if r.status != 200 {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	if c := r.res.Cookies(); len(c) != 1 || !c[0].Secure || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie over TLS: %v", r.header.Values("Set-Cookie"))
	}
}

func TestSignInRefusesWorkerAndBadTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	revoked := f.token(api.RoleMember, "")
	list := f.apiDo(f.admin, "GET", "/tokens", "", 200)
	for _, tok := range list["data"].([]any) {
		if tok.(map[string]any)["role"] == "member" {
			f.apiDo(f.admin, "POST", "/tokens/"+tok.(map[string]any)["id"].(string)+"/revoke", "", 200)
		}
	}
	for _, tc := range []struct {
		name, token string
		status      int
		message     string
	}{
		{"worker", f.token(api.RoleWorker, env), 403, "This is a worker token. Sign in with an admin or member token."},
		{"unknown", api.NewSecret(), 401, "Invalid or revoked token."},
		{"malformed", "hello", 401, "Invalid or revoked token."},
		{"revoked", revoked, 401, "Invalid or revoked token."},
		{"empty", "  ", 400, "Enter a token."},
	} {
		body, _ := json.Marshal(map[string]string{"token": tc.token})
		r := f.do("POST", "/ui/signin", string(body), "Content-Type", "application/json")
		if r.status != tc.status || r.errorMessage(t) != tc.message {
			t.Errorf("%s token: %d %s, want %d %q", tc.name, r.status, r.body, tc.status, tc.message)
		}
		if sc := r.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("%s token: a cookie was set: %v", tc.name, sc)
		}
	}
}

func TestSignOutClearsCookie(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	r := f.do("POST", "/ui/signout", "", "Cookie", cookie(f.admin))
	if r.status != 200 {
		t.Fatalf("sign out: %d %s", r.status, r.body)
	}
	cs := r.res.Cookies()
	if len(cs) != 1 || cs[0].Name != "berth_token" || cs[0].Value != "" || cs[0].MaxAge >= 0 || !cs[0].HttpOnly ||
		cs[0].SameSite != http.SameSiteStrictMode || cs[0].Path != "/" {
		t.Errorf("sign out cookie: %v", r.header.Values("Set-Cookie"))
	}
	if me := f.do("GET", "/ui/me", ""); me.status != 401 {
		t.Errorf("me without cookie: %d %s", me.status, me.body)
	}
}

func TestUIAPIWithoutCookieIsTheAPIs401(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	viaUI := f.do("GET", "/ui/api/v1/cloud/environments", "", "x-request-id", "req-1")
	direct := f.do("GET", "/api/v1/cloud/environments", "", "x-request-id", "req-1")
	if viaUI.status != 401 || string(viaUI.body) != string(direct.body) {
		t.Fatalf("without cookie: %d %s, want the API's %d %s", viaUI.status, viaUI.body, direct.status, direct.body)
	}
	m := viaUI.json(t)
	if m["type"] != "error" || m["request_id"] != "req-1" || viaUI.header.Get("x-request-id") != "req-1" ||
		m["error"].(map[string]any)["type"] != "authentication_error" {
		t.Errorf("not the API's 401 envelope: %s", viaUI.body)
	}
	// An Authorization header of the page's own is not a way in: the token comes from the
	// cookie only.
	if r := f.do("GET", "/ui/api/v1/cloud/environments", "", "Authorization", "Bearer "+f.admin); r.status != 401 {
		t.Errorf("Authorization header without cookie: %d", r.status)
	}
}

func TestUIAPIRelaysTheAPIWithTheCookiesToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	r := f.do("POST", "/ui/api/v1/cloud/sessions", `{"agent":"agent_ui","environment_id":"`+env+`","title":"from the page"}`,
		"Cookie", cookie(f.admin), "Sec-Fetch-Site", "same-origin", "Content-Type", "application/json", "Idempotency-Key", "k1")
	if r.status != 201 || r.json(t)["title"] != "from the page" {
		t.Fatalf("create session via /ui/api: %d %s", r.status, r.body)
	}
	again := f.do("POST", "/ui/api/v1/cloud/sessions", `{"agent":"agent_ui","environment_id":"`+env+`","title":"from the page"}`,
		"Cookie", cookie(f.admin), "Origin", f.url, "Content-Type", "application/json", "Idempotency-Key", "k1")
	if again.status != 201 || again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(r.body) {
		t.Errorf("same-origin retry with the Idempotency-Key: %d %v %s", again.status, again.header, again.body)
	}
	list := f.do("GET", "/ui/api/v1/cloud/environments/"+env+"/work?state=queued", "", "Cookie", cookie(f.admin))
	direct := f.apiDo(f.admin, "GET", "/environments/"+env+"/work?state=queued", "", 200)
	if list.status != 200 || len(list.json(t)["data"].([]any)) != 1 || len(direct["data"].([]any)) != 1 {
		t.Errorf("list via /ui/api: %d %s", list.status, list.body)
	}
	if list.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", list.header.Get("Cache-Control"))
	}
	// A member may not delete environments: the API says so, not the dashboard.
	member := f.token(api.RoleMember, "")
	del := f.do("DELETE", "/ui/api/v1/cloud/environments/"+env, "", "Cookie", cookie(member), "Sec-Fetch-Site", "same-origin")
	if del.status != 403 || del.json(t)["error"].(map[string]any)["type"] != "permission_error" {
		t.Errorf("member delete via /ui/api: %d %s", del.status, del.body)
	}
}

func TestCrossOriginRequestsAreRefusedAndChangeNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	_, work := f.session(env)
	stop := "/ui/api/v1/cloud/environments/" + env + "/work/" + work + "/stop"
	c := cookie(f.admin)
	for _, tc := range []struct {
		name, method, path, body string
		headers                  []string
	}{
		{"cross-site stop", "POST", stop, `{"force":true}`, []string{"Sec-Fetch-Site", "cross-site"}},
		{"same-site stop", "POST", stop, `{"force":true}`, []string{"Sec-Fetch-Site", "same-site"}},
		{"foreign Origin stop", "POST", stop, `{"force":true}`, []string{"Origin", "http://evil.example"}},
		{"cross-site session", "POST", "/ui/api/v1/cloud/sessions", `{"agent":"a","environment_id":"` + env + `"}`, []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-site delete", "DELETE", "/ui/api/v1/cloud/sessions/" + strings.Replace(work, "work_", "sess_", 1), "", []string{"Sec-Fetch-Site", "cross-site"}},
		{"cross-site poll", "GET", "/ui/api/v1/cloud/environments/" + env + "/work/poll", "", []string{"Sec-Fetch-Site", "cross-site", "Worker-ID", "evil"}},
		{"cross-site sign-in", "POST", "/ui/signin", `{"token":"` + f.admin + `"}`, []string{"Sec-Fetch-Site", "cross-site"}},
		{"foreign Origin sign-out", "POST", "/ui/signout", "", []string{"Origin", "http://evil.example"}},
		{"cross-site stream", "GET", "/ui/stream?view=overview", "", []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		hs := append([]string{"Cookie", c, "Content-Type", "application/json"}, tc.headers...)
		r := f.do(tc.method, tc.path, tc.body, hs...)
		// The API's envelope, in its key order.
		const want = `{"type":"error","error":{"type":"permission_error","message":"Cross-origin request refused."}}`
		if r.status != 403 || string(r.body) != want {
			t.Errorf("%s: %d %s, want 403 %s", tc.name, r.status, r.body, want)
		}
		if sc := r.header.Values("Set-Cookie"); len(sc) != 0 {
			t.Errorf("%s: set a cookie: %v", tc.name, sc)
		}
	}
	// Nothing changed: the item is still queued and was never delivered, and there is
	// still one session.
	it, err := f.store.GetWork(context.Background(), env, work)
	if err != nil || it.State != "queued" || it.Deliveries != 0 {
		t.Errorf("item after refused requests: %+v %v", it, err)
	}
	if s := f.apiDo(f.admin, "GET", "/sessions", "", 200); len(s["data"].([]any)) != 1 {
		t.Errorf("sessions after refused requests: %v", s["data"])
	}
}

func TestItemViewHasDeliveryDetailsOnlyWhenTheAPIAnswers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	sess, work := f.session(env)
	polled := f.apiDo(f.admin, "GET", "/environments/"+env+"/work/poll", "", 200, "Worker-ID", "w-1")
	if polled["id"] != work {
		t.Fatalf("poll delivered %v, want %s", polled["id"], work)
	}
	f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+work+"/ack", "", 200, "Worker-ID", "w-1")
	f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+work+"/heartbeat?desired_ttl_seconds=90", "", 200)

	q := "/ui/view?view=item&env=" + env + "&id=" + work
	r := f.do("GET", q, "", "Cookie", cookie(f.admin))
	if r.status != 200 {
		t.Fatalf("item view: %d %s", r.status, r.body)
	}
	v := r.json(t)
	d := v["delivery"].(map[string]any)
	w := v["work"].(map[string]any)
	if d["delivered_to"] != "w-1" || d["deliveries"] != 1.0 || d["acked_by"] != "w-1" || d["ttl_seconds"] != 90.0 ||
		d["delivered_at"] == nil || d["lease_expires_at"] == nil {
		t.Errorf("delivery: %v", d)
	}
	if w["id"] != work || w["state"] != "active" || w["data"].(map[string]any)["id"] != sess || w["latest_heartbeat_at"] == nil {
		t.Errorf("work: %v", w)
	}
	if v["environment"].(map[string]any)["name"] != "byoc" {
		t.Errorf("environment: %v", v["environment"])
	}
	// The API object is the API's, unchanged: no delivery field leaks into it.
	fromAPI := f.apiDo(f.admin, "GET", "/environments/"+env+"/work/"+work, "", 200)
	if len(fromAPI) != len(w) {
		t.Errorf("work object in the view has %d keys, the API's %d", len(w), len(fromAPI))
	}
	if _, ok := fromAPI["delivered_to"]; ok {
		t.Errorf("the API object grew delivered_to")
	}

	// The API decides who sees an item: no token, and a worker token of another
	// environment, get its error and nothing of the store.
	other := f.environment("other")
	for _, tc := range []struct {
		name, secret string
		status       int
	}{{"no token", "", 401}, {"worker of another environment", f.token(api.RoleWorker, other), 403}} {
		hs := []string{}
		if tc.secret != "" {
			hs = []string{"Cookie", cookie(tc.secret)}
		}
		r := f.do("GET", q, "", hs...)
		if r.status != tc.status || strings.Contains(string(r.body), "w-1") || strings.Contains(string(r.body), "delivery") {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
		if e := r.json(t)["error"].(map[string]any); e["status"] != float64(tc.status) {
			t.Errorf("%s: error %v", tc.name, e)
		}
	}
	// An item of another environment is the API's 404.
	if r := f.do("GET", "/ui/view?view=item&env="+other+"&id="+work, "", "Cookie", cookie(f.admin)); r.status != 404 ||
		strings.Contains(string(r.body), "w-1") {
		t.Errorf("item in the wrong environment: %d %s", r.status, r.body)
	}
}

func TestViewsShowTheAPIsData(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	cloud := f.apiDo(f.admin, "POST", "/environments", `{"name":"cloudy"}`, 201)["id"].(string)
	sess, work := f.session(env)
	f.apiDo(f.admin, "POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":[{"type":"text","text":"hello"}]}]}`, 200)
	f.apiDo(f.admin, "GET", "/environments/"+env+"/work/poll", "", 200, "Worker-ID", "w-1")
	c := cookie(f.admin)

	ov := f.do("GET", "/ui/view?view=overview", "", "Cookie", c).json(t)
	if envs := ov["environments"].(map[string]any)["data"].([]any); len(envs) != 2 {
		t.Errorf("overview environments: %v", envs)
	}
	stats := ov["stats"].(map[string]any)
	if s, ok := stats[env].(map[string]any); !ok || s["pending"] != 1.0 || s["workers_polling"] != 1.0 || s["depth"] != 0.0 {
		t.Errorf("overview stats of %s: %v", env, stats[env])
	}
	if _, ok := stats[cloud]; ok {
		t.Errorf("a cloud environment has stats: %v", stats[cloud])
	}

	wv := f.do("GET", "/ui/view?view=work&env="+env+"&state=queued", "", "Cookie", c).json(t)
	if items := wv["work"].(map[string]any)["data"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != work {
		t.Errorf("work view: %v", wv["work"])
	}
	if wv["stats"].(map[string]any)["pending"] != 1.0 {
		t.Errorf("work view stats: %v", wv["stats"])
	}
	if wv := f.do("GET", "/ui/view?view=work&env="+env+"&state=stopped", "", "Cookie", c).json(t); len(wv["work"].(map[string]any)["data"].([]any)) != 0 {
		t.Errorf("work view, stopped: %v", wv["work"])
	}
	// Paging backwards from an item, and forwards: nothing before or after the only one.
	for _, cur := range []string{"before", "after"} {
		wv := f.do("GET", "/ui/view?view=work&env="+env+"&"+cur+"="+work, "", "Cookie", c).json(t)
		if p := wv["work"].(map[string]any); len(p["data"].([]any)) != 0 || p["has_more"] != false {
			t.Errorf("work view %s the only item: %v", cur, p)
		}
	}
	cv := f.do("GET", "/ui/view?view=work&env="+cloud, "", "Cookie", c).json(t)
	if e, _ := cv["work"].(map[string]any)["error"].(map[string]any); e == nil || e["status"] != 400.0 {
		t.Errorf("work view of a cloud environment: %v", cv)
	}

	sv := f.do("GET", "/ui/view?view=sessions&env="+env, "", "Cookie", c).json(t)
	if ss := sv["sessions"].(map[string]any)["data"].([]any); len(ss) != 1 || ss[0].(map[string]any)["id"] != sess {
		t.Errorf("sessions view: %v", sv["sessions"])
	}
	ev := f.do("GET", "/ui/view?view=session&id="+sess, "", "Cookie", c).json(t)
	events := ev["events"].(map[string]any)["data"].([]any)
	if ev["session"].(map[string]any)["id"] != sess || len(events) != 1 ||
		events[0].(map[string]any)["type"] != "user.message" || ev["environment"].(map[string]any)["name"] != "byoc" {
		t.Errorf("session view: %v", ev)
	}

	for _, q := range []string{"view=nope", "view=work", "view=work&env=../tokens", "view=item&env=" + env,
		"view=overview&before=" + work, "view=work&env=" + env + "&before=" + sess,
		"view=work&env=" + env + "&before=" + work + "&after=" + work} {
		if r := f.do("GET", "/ui/view?"+q, "", "Cookie", c); r.status != 400 {
			t.Errorf("%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}

// The dashboard adds / and /ui/ and leaves every other path to the API: the same request
// gets the same answer, byte for byte, with and without the dashboard.
func TestOtherPathsAreTheAPIsUnchanged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	bare := httptest.NewServer(f.api)
	t.Cleanup(bare.Close)
	auth := "Bearer " + f.admin
	for _, tc := range []struct {
		method, path, token string
	}{
		{"GET", "/v1/x", ""},
		{"GET", "/api/v1/cloud/x", auth},
		{"GET", "/api/v1/cloud/environments", auth},
		{"GET", "/api/v1/cloud/environments", ""},
		{"DELETE", "/api/v1/cloud/environments", auth},
		{"POST", "/", ""},
		{"PUT", "/", auth},
		{"GET", "/ui", ""},
		{"GET", "/uix/y", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/openapi.json", ""},
		{"GET", "/favicon.ico", ""},
	} {
		get := func(base string) (int, http.Header, string) {
			req, _ := http.NewRequest(tc.method, base+tc.path, nil)
			req.Header.Set("x-request-id", "same")
			if tc.token != "" {
				req.Header.Set("Authorization", tc.token)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var b strings.Builder
			buf := make([]byte, 32<<10)
			for {
				n, err := res.Body.Read(buf)
				b.Write(buf[:n])
				if err != nil {
					break
				}
			}
			return res.StatusCode, res.Header, b.String()
		}
		s1, h1, b1 := get(f.url)
		s2, h2, b2 := get(bare.URL)
		if s1 != s2 || b1 != b2 || h1.Get("Content-Type") != h2.Get("Content-Type") || h1.Get("Allow") != h2.Get("Allow") {
			t.Errorf("%s %s: with the dashboard %d %q, without %d %q", tc.method, tc.path, s1, b1, s2, b2)
		}
	}
	if r := f.do("GET", "/v1/x", ""); r.status != 404 || r.json(t)["error"].(map[string]any)["type"] != "not_found_error" {
		t.Errorf("GET /v1/x: %d %s", r.status, r.body)
	}
}

func TestPageAndAssetsAreEmbeddedAndSelfContained(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	r := f.do("GET", "/", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(r.body), `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
		t.Fatalf("GET /: %d %v", r.status, r.header)
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if h := f.do("HEAD", "/", ""); h.status != 200 || len(h.body) != 0 {
		t.Errorf("HEAD /: %d %q", h.status, h.body)
	}
	for path, ctype := range map[string]string{
		"/ui/assets/app.js":   "text/javascript",
		"/ui/assets/app.css":  "text/css",
		"/ui/assets/icon.svg": "image/svg+xml",
	} {
		r := f.do("GET", path, "")
		if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) || len(r.body) == 0 {
			t.Errorf("GET %s: %d %q", path, r.status, r.header.Get("Content-Type"))
		}
	}
	for _, path := range []string{"/ui/assets/", "/ui/assets/nope.js", "/ui/", "/ui/nope"} {
		if r := f.do("GET", path, ""); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.status)
		}
	}

	// Nothing is fetched from elsewhere: no absolute URL in any asset but the SVG
	// namespace, which names and loads nothing.
	abs := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(os.DirFS("assets"), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile("assets/" + p)
		if err != nil {
			return err
		}
		s := strings.ReplaceAll(string(b), `xmlns="http://www.w3.org/2000/svg"`, "")
		if m := abs.FindString(s); m != "" {
			t.Errorf("assets/%s refers to %s", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStreamSendsTheViewThenEachChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	s := f.stream(f.admin, "view=work&env="+env)
	if ct := s.res.Header.Get("Content-Type"); s.res.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("stream: %d %q", s.res.StatusCode, ct)
	}
	first := s.next(t)
	if first["view"] != "work" || len(first["work"].(map[string]any)["data"].([]any)) != 0 {
		t.Fatalf("first view: %v", first)
	}
	_, work := f.session(env)
	// A view is several reads: one computed while the session was being made may show
	// part of it (the stats but not yet the list). A later one shows all.
	v := s.until(t, func(v map[string]any) bool { return len(v["work"].(map[string]any)["data"].([]any)) > 0 })
	items := v["work"].(map[string]any)["data"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["id"] != work || items[0].(map[string]any)["state"] != "queued" {
		t.Fatalf("view after the session: %v", v["work"])
	}
	f.apiDo(f.admin, "POST", "/environments/"+env+"/work/"+work+"/stop", `{"force":true}`, 200)
	// The item stopped, and the stats that follow (read before the list: one view may
	// show the stop in the list but not yet in the stats).
	s.until(t, func(v map[string]any) bool {
		items := v["work"].(map[string]any)["data"].([]any)
		return len(items) == 1 && items[0].(map[string]any)["state"] == "stopped" &&
			v["stats"].(map[string]any)["depth"] == 0.0
	})
}

func TestStreamOutlivesTheServersTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	f := newFixture(t, fixtureOpt{server: func(s *http.Server) {
		s.ReadTimeout = timeout
		s.WriteTimeout = timeout
	}})
	// The other requests go to a server without the timeouts: on a busy machine one of
	// them may take longer than they allow.
	plain := httptest.NewServer(f.dash)
	t.Cleanup(plain.Close)
	other := *f
	other.srv, other.url = plain, plain.URL
	env := other.environment("byoc")
	s := f.stream(f.admin, "view=work&env="+env)
	s.next(t)
	// Real time must pass here: the timeouts are the server's, on the wall clock.
	time.Sleep(4 * timeout)
	_, work := other.session(env)
	v := s.until(t, func(v map[string]any) bool { return len(v["work"].(map[string]any)["data"].([]any)) > 0 })
	if items := v["work"].(map[string]any)["data"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != work {
		t.Fatalf("view after the timeouts: %v", v["work"])
	}
}

func TestStreamEndsWhenTheServerShutsDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	s := f.stream(f.admin, "view=overview")
	s.next(t)
	f.stop()
	s.waitEnd(t)
}

func TestStreamRefusesOrEndsWithoutAValidToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	r := f.do("GET", "/ui/stream?view=overview", "")
	if r.status != 401 || strings.HasPrefix(r.header.Get("Content-Type"), "text/event-stream") {
		t.Errorf("stream without cookie: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r := f.do("GET", "/ui/stream?view=nope", "", "Cookie", cookie(f.admin)); r.status != 400 {
		t.Errorf("stream of an unknown view: %d", r.status)
	}

	// A token revoked while its stream is open: the stream says so, and ends.
	member := f.token(api.RoleMember, "")
	s := f.stream(member, "view=overview")
	s.next(t)
	tokens := f.apiDo(f.admin, "GET", "/tokens", "", 200)["data"].([]any)
	for _, tok := range tokens {
		if m := tok.(map[string]any); m["role"] == "member" {
			f.apiDo(f.admin, "POST", "/tokens/"+m["id"].(string)+"/revoke", "", 200)
		}
	}
	v := s.until(t, func(v map[string]any) bool { return v["error"] != nil })
	if v["error"].(map[string]any)["status"] != 401.0 {
		t.Errorf("view after revocation: %v", v)
	}
	s.waitEnd(t)
}

// A view that is an error names what is missing; the stream of such a view sends it and
// ends, since asking again would not change it.
func TestViewErrorsNameWhatIsMissingAndEndTheStream(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	_, work := f.session(env)
	unknownEnv := id.New(id.Environment)
	unknownWork := id.New(id.Work)
	unknownSess := id.New(id.Session)
	for _, tc := range []struct {
		q, resource, message string
	}{
		{"view=work&env=" + unknownEnv, "environment", "Environment not found."},
		{"view=sessions&env=" + unknownEnv, "environment", "Environment not found."},
		{"view=item&env=" + unknownEnv + "&id=" + work, "environment", "Environment not found."},
		{"view=item&env=" + env + "&id=" + unknownWork, "work", "Work item not found."},
		{"view=session&id=" + unknownSess, "session", "Session not found."},
	} {
		r := f.do("GET", "/ui/view?"+tc.q, "", "Cookie", cookie(f.admin))
		e, _ := r.json(t)["error"].(map[string]any)
		if r.status != 404 || e == nil || e["status"] != 404.0 || e["resource"] != tc.resource || e["message"] != tc.message {
			t.Errorf("%s: %d %s, want 404 for the %s", tc.q, r.status, r.body, tc.resource)
		}
		s := f.stream(f.admin, tc.q)
		if v := s.next(t); v["error"] == nil || v["error"].(map[string]any)["resource"] != tc.resource {
			t.Errorf("%s: stream sent %v", tc.q, v)
		}
		s.waitEnd(t)
	}

	// An ID that is not one is refused before anything is asked, and says why.
	for _, tc := range []struct{ q, message string }{
		{"view=work&env=env_nope", `env: "env_nope" is not a valid environment ID (env_ followed by 32 lowercase hex digits)`},
		{"view=work", "env is required: the environment ID (env_…)"},
		{"view=session&id=sess_0000", `id: "sess_0000" is not a valid session ID (sess_ followed by 32 lowercase hex digits)`},
		{"view=item&env=" + env + "&id=garbage", `id: "garbage" is not a valid work item ID (work_ followed by 32 lowercase hex digits)`},
		{"view=work&env=" + env + "&before=" + url.QueryEscape("work_<x>"), `before: "work_<x>" is not a valid work item ID (work_ followed by 32 lowercase hex digits)`},
		{"view=session&id=" + url.QueryEscape(strings.Repeat("é", 100)), `id: "` + strings.Repeat("é", 80) + `…" is not a valid session ID (sess_ followed by 32 lowercase hex digits)`},
	} {
		for _, path := range []string{"/ui/view?", "/ui/stream?"} {
			r := f.do("GET", path+tc.q, "", "Cookie", cookie(f.admin))
			if r.status != 400 || r.errorMessage(t) != tc.message {
				t.Errorf("%s%s: %d %s, want 400 %q", path, tc.q, r.status, r.body, tc.message)
			}
		}
	}
}
