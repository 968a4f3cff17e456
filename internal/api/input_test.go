package api_test

import "testing"

// Input that a database column cannot hold is refused with a 400, on every store:
// invalid UTF-8 anywhere in a body, NUL in a stored string, control characters in the
// Idempotency-Key and Worker-ID headers.
func TestUnstorableInputIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	cases := []struct {
		name, method, path, body string
		opts                     []reqOpt
		param                    string
	}{
		{"invalid UTF-8 in an event", "POST", "/sessions/" + h.session(env) + "/events", "{\"events\":[{\"type\":\"user.message\",\"text\":\"\xff\"}]}", nil, ""},
		{"NUL in a name", "POST", "/environments", `{"name":"a\u0000b"}`, nil, "name"},
		{"NUL in a title", "POST", "/sessions", `{"agent":"a","environment_id":"` + env + `","title":"\u0000"}`, nil, "title"},
		{"control character in Idempotency-Key", "POST", "/environments", `{"name":"x"}`, []reqOpt{header("Idempotency-Key", "a\tb")}, "Idempotency-Key"},
		{"invalid UTF-8 in Worker-ID", "GET", "/environments/" + env + "/work/poll", "", []reqOpt{tcRawHeader("Worker-ID", "w\xff")}, "Worker-ID"},
	}
	for _, c := range cases {
		r := h.do(c.method, c.path, c.body, c.opts...)
		if r.Status != 400 {
			t.Errorf("%s: status %d, want 400; %s", c.name, r.Status, r.Body)
			continue
		}
		wantError(t, r, 400, "invalid_request_error", c.param)
	}
	// Escaped NUL inside JSON kept as JSON (an event's fields) is stored and served as sent.
	r := h.do("POST", "/sessions/"+h.session(env)+"/events", `{"events":[{"type":"user.message","text":"a\u0000b"}]}`)
	wantStatus(t, r, 200)
}
