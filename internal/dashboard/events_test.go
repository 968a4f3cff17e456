package dashboard_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
)

// eventsPath is the dashboard's live event stream of a session.
func eventsPath(session string) string { return "/ui/events?session=" + session }

// say posts one user.message with text to session through the API, and returns its ID.
func (f *fixture) say(secret, session, text string) string {
	f.t.Helper()
	b, _ := json.Marshal(text)
	r := f.apiDo(secret, "POST", "/sessions/"+session+"/events",
		`{"events":[{"type":"user.message","content":[{"type":"text","text":`+string(b)+`}]}]}`, 200)
	return r["data"].([]any)[0].(map[string]any)["id"].(string)
}

// eventIDs lists the IDs of a session's whole event history, through the API.
func (f *fixture) eventIDs(session string) []string {
	f.t.Helper()
	var ids []string
	after := ""
	for {
		q := "?limit=1000"
		if after != "" {
			q += "&after_id=" + after
		}
		page := f.apiDo(f.admin, "GET", "/sessions/"+session+"/events"+q, "", 200)
		for _, e := range page["data"].([]any) {
			ids = append(ids, e.(map[string]any)["id"].(string))
		}
		if page["has_more"] != true {
			return ids
		}
		after = ids[len(ids)-1]
	}
}

// frame returns the stream's next frame, failing the test if the stream ends first.
func (s *sse) frame(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatalf("the stream ended")
		}
		return ev
	case <-s.patience.Done():
		t.Fatalf("no frame before the test's deadline")
	}
	return sseEvent{}
}

// sessionEvent reads the next frame, which must be a session event, and returns the
// stored event it carries.
func (s *sse) sessionEvent(t *testing.T) map[string]any {
	t.Helper()
	ev := s.frame(t)
	if ev.name != "event" {
		t.Fatalf("frame %q (%s), want event", ev.name, ev.data)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
		t.Fatalf("event data %q: %v", ev.data, err)
	}
	if e["id"] != ev.id {
		t.Fatalf("frame id %q carries event %v", ev.id, e["id"])
	}
	return e
}

func TestEventsStreamIsRefusedWithoutAValidToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	sess, _ := f.session(env)
	other, _ := f.session(f.environment("other"))
	otherEvent := f.say(f.admin, other, "elsewhere")
	worker := f.token(api.RoleWorker, f.environment("third"))

	for _, tc := range []struct {
		name, path, secret string
		headers            []string
		status             int
		errType            string
	}{
		{"no cookie", eventsPath(sess), "", nil, 401, "authentication_error"},
		{"unknown token", eventsPath(sess), api.NewSecret(), nil, 401, "authentication_error"},
		{"worker token of another environment", eventsPath(sess), worker, nil, 403, "permission_error"},
		{"unknown session", eventsPath(id.New(id.Session)), f.admin, nil, 404, "not_found_error"},
		{"no session", "/ui/events", f.admin, nil, 400, "invalid_request_error"},
		{"malformed session", eventsPath("sess_0000"), f.admin, nil, 400, "invalid_request_error"},
		{"another session's event as Last-Event-ID", eventsPath(sess), f.admin, []string{"Last-Event-ID", otherEvent}, 400, "invalid_request_error"},
		{"cross-site", eventsPath(sess), f.admin, []string{"Sec-Fetch-Site", "cross-site"}, 403, "permission_error"},
	} {
		hs := tc.headers
		if tc.secret != "" {
			hs = append([]string{"Cookie", cookie(tc.secret)}, hs...)
		}
		r := f.do("GET", tc.path, "", hs...)
		if ct := r.header.Get("Content-Type"); r.status != tc.status || ct != "application/json" {
			t.Errorf("%s: %d %q %s, want %d JSON", tc.name, r.status, ct, r.body, tc.status)
			continue
		}
		if e, _ := r.json(t)["error"].(map[string]any); e["type"] != tc.errType {
			t.Errorf("%s: %s, want %s", tc.name, r.body, tc.errType)
		}
	}
}

// TestEventsStreamRelaysHistoryThenLiveEventsInOrder opens the stream while writers post
// events: the history and the live events together are the session's events from the
// first one sent on, each once and in order.
func TestEventsStreamRelaysHistoryThenLiveEventsInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	env := f.environment("byoc")
	sess, _ := f.session(env)
	for i := range 60 { // more than the history holds: it says there are older ones
		f.say(f.admin, sess, fmt.Sprintf("before %d", i))
	}

	const writers, each = 4, 15
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			<-start
			for i := range each {
				f.say(f.admin, sess, fmt.Sprintf("writer %d: %d", w, i))
			}
		})
	}
	close(start)
	s := f.sse(eventsPath(sess), f.admin)
	if ct := s.res.Header.Get("Content-Type"); s.res.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events stream: %d %q", s.res.StatusCode, ct)
	}
	var got []string
	for {
		ev := s.frame(t)
		if ev.name == "history" {
			if ev.data != `{"has_more":true}` {
				t.Errorf("history frame %s, want has_more", ev.data)
			}
			break
		}
		if ev.name != "event" {
			t.Fatalf("frame %q before the history frame", ev.name)
		}
		got = append(got, ev.id)
	}
	if len(got) != 50 {
		t.Errorf("history of %d events, want 50", len(got))
	}
	wg.Wait()
	last := f.say(f.admin, sess, "the last")
	for got[len(got)-1] != last {
		e := s.sessionEvent(t)
		got = append(got, e["id"].(string))
	}

	all := f.eventIDs(sess)
	i := 0
	for i < len(all) && all[i] != got[0] {
		i++
	}
	if want := all[i:]; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the stream sent\n%v\nthe history from its first event is\n%v", got, want)
	}
}

func TestEventsStreamResumesAfterLastEventID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	sess, _ := f.session(f.environment("byoc"))
	var ids []string
	for i := range 5 {
		ids = append(ids, f.say(f.admin, sess, fmt.Sprint("message ", i)))
	}
	// A browser that reconnects sends the last ID it got: the events after it come, and
	// no history.
	s := f.sse(eventsPath(sess), f.admin, "Last-Event-ID", ids[1])
	if s.res.StatusCode != 200 {
		t.Fatalf("resume: %d", s.res.StatusCode)
	}
	for _, want := range ids[2:] {
		if e := s.sessionEvent(t); e["id"] != want {
			t.Fatalf("resumed with %v, want %s", e["id"], want)
		}
	}
	next := f.say(f.admin, sess, "live")
	if e := s.sessionEvent(t); e["id"] != next {
		t.Fatalf("live event %v, want %s", e["id"], next)
	}
}

func TestEventsStreamShowsAMessageSentThroughTheDashboard(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	sess, _ := f.session(f.environment("byoc"))
	s := f.sse(eventsPath(sess), f.member())
	if ev := s.frame(t); ev.name != "history" || ev.data != `{"has_more":false}` {
		t.Fatalf("first frame %q %s, want an empty history", ev.name, ev.data)
	}
	body := `{"events":[{"type":"user.message","content":[{"type":"text","text":"from the box"}]}]}`
	path := "/ui/api/v1/cloud/sessions/" + sess + "/events"
	// Without a valid sign-in, or from another origin, the box's request is refused.
	if r := f.do("POST", path, body, "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"); r.status != 401 {
		t.Errorf("send without a cookie: %d %s", r.status, r.body)
	}
	if r := f.do("POST", path, body, "Cookie", cookie(api.NewSecret()), "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin"); r.status != 401 {
		t.Errorf("send with an unknown token: %d %s", r.status, r.body)
	}
	if r := f.do("POST", path, body, "Cookie", cookie(f.admin), "Content-Type", "application/json", "Sec-Fetch-Site", "cross-site"); r.status != 403 {
		t.Errorf("send from another site: %d %s", r.status, r.body)
	}
	r := f.do("POST", path, body, "Cookie", cookie(f.admin), "Content-Type", "application/json", "Sec-Fetch-Site", "same-origin")
	if r.status != 200 {
		t.Fatalf("send: %d %s", r.status, r.body)
	}
	sent := r.json(t)["data"].([]any)[0].(map[string]any)["id"]
	e := s.sessionEvent(t)
	text := e["content"].([]any)[0].(map[string]any)["text"]
	if e["id"] != sent || e["type"] != "user.message" || text != "from the box" {
		t.Errorf("streamed %v, want the message %v", e, sent)
	}
	if ids := f.eventIDs(sess); len(ids) != 1 || ids[0] != sent {
		t.Errorf("history %v, want the one message", ids)
	}
}

func TestEventsStreamEndsWhenTheSessionIsDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	sess, _ := f.session(f.environment("byoc"))
	s := f.sse(eventsPath(sess), f.admin)
	if ev := s.frame(t); ev.name != "history" {
		t.Fatalf("first frame %q", ev.name)
	}
	f.apiDo(f.admin, "DELETE", "/sessions/"+sess, "", 200)
	for {
		if e := s.sessionEvent(t); e["type"] == "session.deleted" {
			break
		}
	}
	s.waitEnd(t)
	// A browser that reconnects is told the session is gone, and gives up.
	if r := f.do("GET", eventsPath(sess), "", "Cookie", cookie(f.admin)); r.status != 404 {
		t.Errorf("after the deletion: %d %s", r.status, r.body)
	}
}

func TestEventsStreamEndsWhenTheTokenIsRevoked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	sess, _ := f.session(f.environment("byoc"))
	tok := f.apiDo(f.admin, "POST", "/tokens", `{"name":"viewer","role":"member"}`, 201)
	s := f.sse(eventsPath(sess), tok["secret"].(string))
	if ev := s.frame(t); ev.name != "history" {
		t.Fatalf("first frame %q", ev.name)
	}
	f.say(f.admin, sess, "seen")
	if e := s.sessionEvent(t); e["type"] != "user.message" {
		t.Fatalf("event %v", e)
	}
	f.apiDo(f.admin, "POST", "/tokens/"+tok["id"].(string)+"/revoke", "", 200)
	for {
		ev := s.frame(t)
		if ev.name == "event" {
			continue // posted before the revocation was seen
		}
		var e map[string]any
		json.Unmarshal([]byte(ev.data), &e)
		if ev.name != "end" || e["status"] != 401.0 || e["type"] != "authentication_error" {
			t.Fatalf("frame %q %s, want the end for a revoked token", ev.name, ev.data)
		}
		break
	}
	s.waitEnd(t)
}

func TestEventsStreamEndsWhenTheDashboardStops(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpt{})
	sess, _ := f.session(f.environment("byoc"))
	s := f.sse(eventsPath(sess), f.admin)
	if ev := s.frame(t); ev.name != "history" {
		t.Fatalf("first frame %q", ev.name)
	}
	f.stop()
	s.waitEnd(t)
}

// member creates a member token and returns its secret.
func (f *fixture) member() string {
	f.t.Helper()
	return f.token(api.RoleMember, "")
}
