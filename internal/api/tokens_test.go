package api_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

var tcSecretRE = regexp.MustCompile(`^pt-[0-9A-Za-z]{40,}$`)

// TestTokensAdminOnly: members and workers get 403 permission_error on every token route,
// with no effect.
func TestTokensAdminOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	member := h.token(api.RoleMember, "")
	worker := h.token(api.RoleWorker, env)
	victim := tcCreateToken(t, h, `{"name":"v","role":"member"}`)
	for _, tok := range []string{member, worker} {
		tcWantErr(t, "create", h.do("POST", "/tokens", `{"name":"x","role":"admin"}`, as(tok)), 403, "permission_error", "")
		tcWantErr(t, "create worker", h.do("POST", "/tokens", `{"name":"x","role":"worker","environment_id":"`+env+`"}`, as(tok)), 403, "permission_error", "")
		tcWantErr(t, "list", h.do("GET", "/tokens", "", as(tok)), 403, "permission_error", "")
		tcWantErr(t, "revoke", h.do("POST", "/tokens/"+victim["id"].(string)+"/revoke", "", as(tok)), 403, "permission_error", "")
		tcWantErr(t, "revoke unknown", h.do("POST", "/tokens/tok_00000000000000000000000000000000/revoke", "", as(tok)), 403, "permission_error", "")
	}
	p := tcList(t, h, "/tokens")
	if len(p.Data) != 4 {
		t.Errorf("%d tokens, want 4 (nothing created by non-admins)", len(p.Data))
	}
	for _, d := range p.Data {
		if d["revoked_at"] != nil {
			t.Errorf("token %v revoked by a non-admin", d["id"])
		}
	}
	// The victim still works.
	wantStatus(t, h.do("GET", "/environments", "", as(victim["secret"].(string))), 200)
}

// TestTokensCreate: 201 with the object and its secret, shown this once; the secret
// works with the role it was made for.
func TestTokensCreate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	other := h.env(true)
	now := tcTS(h.clock.Now())
	secrets := map[string]bool{h.admin: true}
	made := map[string]map[string]any{}
	for _, c := range []struct {
		role, body string
		env        any
	}{
		{"admin", `{"name":"ops","role":"admin"}`, nil},
		{"member", `{"name":"dev","role":"member"}`, nil},
		{"worker", `{"name":"box","role":"worker","environment_id":"` + env + `"}`, env},
	} {
		r := h.do("POST", "/tokens", c.body)
		wantStatus(t, r, 201)
		var raw map[string]json.RawMessage
		r.decode(t, &raw)
		if len(raw) != 9 {
			t.Errorf("%s token keys: %s", c.role, r.Body)
		}
		o := r.obj(t)
		id, _ := o["id"].(string)
		secret, _ := o["secret"].(string)
		if !strings.HasPrefix(id, "tok_") || len(id) != 36 || o["type"] != "token" || o["role"] != c.role ||
			o["environment_id"] != c.env || o["created_at"] != now || o["last_used_at"] != nil || o["revoked_at"] != nil {
			t.Errorf("%s token: %s", c.role, r.Body)
		}
		if v, ok := o["environment_id"]; !ok || (c.env == nil && v != nil) {
			t.Errorf("%s token: environment_id %v present=%t", c.role, v, ok)
		}
		if !tcSecretRE.MatchString(secret) || secrets[secret] {
			t.Errorf("%s token: secret %q", c.role, secret)
		}
		secrets[secret] = true
		made[c.role] = o
	}
	if made["admin"]["name"] != "ops" || made["member"]["name"] != "dev" || made["worker"]["name"] != "box" {
		t.Errorf("names: %v %v %v", made["admin"]["name"], made["member"]["name"], made["worker"]["name"])
	}

	// Each secret works, with its role.
	admin, member, worker := made["admin"]["secret"].(string), made["member"]["secret"].(string), made["worker"]["secret"].(string)
	wantStatus(t, h.do("GET", "/tokens", "", as(admin)), 200)
	wantStatus(t, h.do("GET", "/environments", "", as(member)), 200)
	tcWantErr(t, "member lists tokens", h.do("GET", "/tokens", "", as(member)), 403, "permission_error", "")
	wantStatus(t, h.do("GET", "/environments/"+env, "", as(worker)), 200)
	tcWantErr(t, "worker on another env", h.do("GET", "/environments/"+other, "", as(worker)), 403, "permission_error", "")

	// The list never shows a secret, and shows last_used_at once a token was used.
	r := h.do("GET", "/tokens", "")
	wantStatus(t, r, 200)
	for s := range secrets {
		if bytes.Contains(r.Body, []byte(s)) || bytes.Contains(r.Body, []byte(s[3:])) {
			t.Errorf("token list shows a secret")
		}
	}
	var p tcPage
	r.decode(t, &p)
	if len(p.Data) != 4 {
		t.Errorf("%d tokens listed, want 4", len(p.Data))
	}
	for _, d := range p.Data {
		if _, ok := d["secret"]; ok {
			t.Errorf("listed token %v has a secret key", d["id"])
		}
		if len(d) != 8 {
			t.Errorf("listed token keys %v", d)
		}
		for role, o := range made {
			if d["id"] != o["id"] {
				continue
			}
			if d["last_used_at"] != now {
				t.Errorf("%s token used at %s: last_used_at %v", role, now, d["last_used_at"])
			}
			want := map[string]any{}
			for k, v := range o {
				want[k] = v
			}
			delete(want, "secret")
			want["last_used_at"] = d["last_used_at"]
			if !reflect.DeepEqual(d, want) {
				t.Errorf("listed %v, created %v", d, want)
			}
		}
	}
	// A token made and never used has last_used_at null.
	unused := tcCreateToken(t, h, `{"name":"unused","role":"member"}`)
	for _, d := range tcList(t, h, "/tokens").Data {
		if d["id"] == unused["id"] && d["last_used_at"] != nil {
			t.Errorf("unused token last_used_at %v", d["last_used_at"])
		}
	}
}

// TestTokensCreateErrors: role missing/invalid → 400 role; a worker needs an existing
// environment_id (400 / 404); other roles take none (400). Nothing is created.
func TestTokensCreateErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	cases := []struct {
		body   string
		status int
		typ    string
		params []string
	}{
		{`{"name":"x"}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":null}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":""}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":"root"}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":"Admin"}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":5}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":["admin"]}`, 400, "invalid_request_error", []string{"role"}},
		{`{"name":"x","role":"worker"}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"name":"x","role":"worker","environment_id":null}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"name":"x","role":"worker","environment_id":5}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"name":"x","role":"worker","environment_id":"env_00000000000000000000000000000000"}`, 404, "not_found_error", []string{"", "environment_id"}},
		{`{"name":"x","role":"worker","environment_id":"env_nope"}`, 404, "not_found_error", []string{"", "environment_id"}},
		{`{"name":"x","role":"member","environment_id":"` + env + `"}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"name":"x","role":"admin","environment_id":"` + env + `"}`, 400, "invalid_request_error", []string{"environment_id"}},
		{`{"role":"member"}`, 400, "invalid_request_error", []string{"name"}},
		{`{"name":"","role":"member"}`, 400, "invalid_request_error", []string{"name"}},
		{`{"name":5,"role":"member"}`, 400, "invalid_request_error", []string{"name"}},
		{`{"name":"` + tcRepeat("n", 256) + `","role":"member"}`, 400, "invalid_request_error", []string{"name"}},
	}
	for _, c := range cases {
		r := h.do("POST", "/tokens", c.body)
		tcWantErr(t, "create "+c.body[:min(len(c.body), 80)], r, c.status, c.typ, c.params...)
		if bytes.Contains(r.Body, []byte(`"secret"`)) {
			t.Errorf("error answer carries a secret: %s", r.Body)
		}
	}
	if p := tcList(t, h, "/tokens"); len(p.Data) != 1 {
		t.Errorf("%d tokens, want only the harness admin", len(p.Data))
	}
}

// TestTokensRevoke: revoke answers the object with revoked_at, is idempotent, and the
// token fails with 401 from the next request on.
func TestTokensRevoke(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	for _, body := range []string{`{"name":"m","role":"member"}`, `{"name":"a","role":"admin"}`, `{"name":"w","role":"worker","environment_id":"` + env + `"}`} {
		tok := tcCreateToken(t, h, body)
		id, secret := tok["id"].(string), tok["secret"].(string)
		wantStatus(t, h.do("GET", "/environments/"+env, "", as(secret)), 200)
		h.clock.Advance(time.Minute)
		at := tcTS(h.clock.Now())
		r := h.do("POST", "/tokens/"+id+"/revoke", "{}\n")
		wantStatus(t, r, 200)
		o := r.obj(t)
		if o["id"] != id || o["type"] != "token" || o["revoked_at"] != at || o["role"] != tok["role"] || o["name"] != tok["name"] {
			t.Errorf("revoke: %s (want revoked_at %s)", r.Body, at)
		}
		if _, ok := o["secret"]; ok {
			t.Errorf("revoke answer shows the secret")
		}
		for _, p := range []string{"/environments/" + env, "/environments/" + env + "/work"} {
			tcWantErr(t, "revoked token", h.do("GET", p, "", as(secret)), 401, "authentication_error", "")
		}
		h.clock.Advance(time.Hour)
		r2 := h.do("POST", "/tokens/"+id+"/revoke", "")
		wantStatus(t, r2, 200)
		if r2.obj(t)["revoked_at"] != at || !bytes.Equal(r.Body, r2.Body) {
			t.Errorf("second revoke: %s, want %s", r2.Body, r.Body)
		}
		listed := false
		for _, d := range tcList(t, h, "/tokens").Data {
			if d["id"] == id {
				listed = true
				if d["revoked_at"] != at {
					t.Errorf("listed revoked_at %v, want %s", d["revoked_at"], at)
				}
			}
		}
		if !listed {
			t.Errorf("revoked token %s not listed", id)
		}
	}
	// An admin revoking itself is locked out from the next request on.
	self := tcCreateToken(t, h, `{"name":"self","role":"admin"}`)
	wantStatus(t, h.do("POST", "/tokens/"+self["id"].(string)+"/revoke", "", as(self["secret"].(string))), 200)
	tcWantErr(t, "self-revoked", h.do("GET", "/tokens", "", as(self["secret"].(string))), 401, "authentication_error", "")
	// The harness admin is untouched.
	wantStatus(t, h.do("GET", "/tokens", ""), 200)

	for _, id := range []string{"tok_00000000000000000000000000000000", "tok_bad", "env_00000000000000000000000000000000"} {
		tcWantErr(t, "revoke "+id, h.do("POST", "/tokens/"+id+"/revoke", ""), 404, "not_found_error")
	}
}
