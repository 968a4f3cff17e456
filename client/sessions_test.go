package client_test

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/berth-sh/berth/client"
)

func TestSessionRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	env := b.selfHosted("byoc")

	sess, err := b.admin.CreateSession(ctx, client.CreateSessionParams{
		Agent:         "agent_x",
		EnvironmentID: env.ID,
		Title:         "fix the build",
		Metadata:      map[string]string{"repo": "berth"},
		InitialEvents: []any{client.UserMessage("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sess.Type != "session" || sess.EnvironmentID != env.ID || sess.Title != "fix the build" ||
		sess.Status != "idle" || sess.Metadata["repo"] != "berth" || sess.ArchivedAt != nil || sess.CreatedAt.IsZero() {
		t.Fatalf("created %+v", sess)
	}
	if string(sess.Agent) != `{"id":"agent_x","type":"agent","version":null}` {
		t.Errorf("agent %s", sess.Agent)
	}

	got, err := b.admin.GetSession(ctx, sess.ID)
	if err != nil || got.ID != sess.ID || string(got.Agent) != string(sess.Agent) {
		t.Fatalf("get %+v %v", got, err)
	}
	other := b.session(b.selfHosted("other").ID)
	page, err := b.admin.ListSessions(ctx, client.ListSessionsParams{EnvironmentID: env.ID})
	if err != nil || len(page.Data) != 1 || page.Data[0].ID != sess.ID {
		t.Fatalf("list by environment: %+v %v", page, err)
	}
	page, err = b.admin.ListSessions(ctx, client.ListSessionsParams{})
	if err != nil || len(page.Data) != 2 || page.Data[1].ID != other.ID {
		t.Fatalf("list: %+v %v", page, err)
	}

	upd, err := b.admin.UpdateSession(ctx, sess.ID, client.UpdateSessionParams{
		Title:    client.String("fix the tests"),
		Metadata: map[string]*string{"repo": nil, "branch": client.String("main")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Title != "fix the tests" || !maps.Equal(upd.Metadata, map[string]string{"branch": "main"}) {
		t.Fatalf("updated %+v", upd)
	}

	sent, err := b.admin.SendEvents(ctx, sess.ID, []any{
		client.UserMessage("and this"),
		map[string]any{"type": "system.message", "text": "note"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent[0].Type != "user.message" || sent[1].Type != "system.message" ||
		sent[0].ID == "" || sent[0].CreatedAt.IsZero() {
		t.Fatalf("sent %+v", sent)
	}
	var body struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(sent[1].Raw, &body); err != nil || body.Text != "note" {
		t.Errorf("event body %s: %v", sent[1].Raw, err)
	}
	events, err := b.admin.ListEvents(ctx, sess.ID, client.ListEventsParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Data) != 3 || events.Data[1].ID != sent[0].ID || string(events.Data[2].Raw) != string(sent[1].Raw) {
		t.Fatalf("events %+v", events)
	}
	// An event encodes back to the object the server sent.
	if enc, err := json.Marshal(events.Data[2]); err != nil || string(enc) != string(sent[1].Raw) {
		t.Errorf("encoded event %s: %v", enc, err)
	}

	// The queued item is live: cancel requests its stop (202), and then there is none (200).
	cancel, err := b.admin.CancelSession(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if *cancel != (client.SessionCancel{ID: sess.ID, Type: "session", Status: "canceling", Accepted: true}) {
		t.Fatalf("cancel %+v", cancel)
	}
	cancel, err = b.admin.CancelSession(ctx, sess.ID)
	if err != nil || cancel.Accepted || cancel.Status != "canceling" {
		t.Fatalf("cancel again %+v %v", cancel, err)
	}
	// A user.message to a session with no live work queues a new item.
	if _, err := b.admin.SendEvents(ctx, sess.ID, []any{client.UserMessage("wake up")}); err != nil {
		t.Fatal(err)
	}
	work, err := b.admin.ListWork(ctx, env.ID, client.ListWorkParams{})
	if err != nil || len(work.Data) != 2 || work.Data[0].State != client.StateStopped || work.Data[1].State != client.StateQueued {
		t.Fatalf("work %+v %v", work, err)
	}

	arch, err := b.admin.ArchiveSession(ctx, sess.ID)
	if err != nil || arch.ArchivedAt == nil {
		t.Fatalf("archive %+v %v", arch, err)
	}
	page, err = b.admin.ListSessions(ctx, client.ListSessionsParams{EnvironmentID: env.ID})
	if err != nil || len(page.Data) != 0 {
		t.Fatalf("list without archived: %+v %v", page, err)
	}
	page, err = b.admin.ListSessions(ctx, client.ListSessionsParams{EnvironmentID: env.ID, IncludeArchived: true})
	if err != nil || len(page.Data) != 1 {
		t.Fatalf("list with archived: %+v %v", page, err)
	}

	del, err := b.admin.DeleteSession(ctx, sess.ID)
	if err != nil || *del != (client.Deleted{ID: sess.ID, Type: "session_deleted"}) {
		t.Fatalf("delete %+v %v", del, err)
	}
	if _, err := b.admin.GetSession(ctx, sess.ID); !client.IsNotFound(err) {
		t.Fatalf("get deleted: %v", err)
	}
	// Its live work was force-stopped and stays readable.
	w, err := b.admin.GetWork(ctx, env.ID, work.Data[1].ID)
	if err != nil || w.State != client.StateStopped {
		t.Fatalf("work of deleted session %+v %v", w, err)
	}
}

func TestCreateSessionWithAgentObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	env := b.selfHosted("byoc")
	sess, err := b.admin.CreateSession(b.ctx, client.CreateSessionParams{
		Agent:         json.RawMessage(`{"id":"agent_y","type":"agent","version":3}`),
		EnvironmentID: env.ID,
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(sess.Agent) != `{"id":"agent_y","type":"agent","version":3}` {
		t.Errorf("agent %s", sess.Agent)
	}
	_, err = b.admin.CreateSession(b.ctx, client.CreateSessionParams{Agent: "agent_y", EnvironmentID: "env_0000000000000000000000000000000f"})
	if e := apiError(t, err, 404, "not_found_error"); e.Param != "environment_id" {
		t.Errorf("param %q", e.Param)
	}
}

func TestListEventsOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sess := b.session(b.selfHosted("byoc").ID)
	var sent []string
	for i := range 5 {
		evs, err := b.admin.SendEvents(b.ctx, sess.ID, []any{client.UserMessage(string(rune('a' + i)))})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, evs[0].ID)
	}
	var desc []string
	for e, err := range b.admin.AllEvents(b.ctx, sess.ID, client.ListEventsParams{ListParams: client.ListParams{Limit: 2}, Order: client.OrderDesc}) {
		if err != nil {
			t.Fatal(err)
		}
		desc = append(desc, e.ID)
	}
	want := slices.Clone(sent)
	slices.Reverse(want)
	if !slices.Equal(desc, want) {
		t.Fatalf("order desc %v, want %v", desc, want)
	}
	page, err := b.admin.ListEvents(b.ctx, sess.ID, client.ListEventsParams{ListParams: client.ListParams{Limit: 1000}, Order: client.OrderAsc})
	if err != nil || len(page.Data) != 5 || page.Data[0].ID != sent[0] || page.HasMore {
		t.Fatalf("order asc, limit 1000: %+v %v", page, err)
	}
	_, err = b.admin.ListEvents(b.ctx, sess.ID, client.ListEventsParams{Order: "sideways"})
	if e := apiError(t, err, 400, "invalid_request_error"); e.Param != "order" {
		t.Errorf("param %q", e.Param)
	}
}
