package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/wait"
	"github.com/berth-sh/berth/internal/work"
)

const (
	maxTitleLen = 255 // API.md sets none; the same bound as names
	// maxEvents bounds events per request: API.md allows 50 initial_events, and a send is
	// held to the same.
	maxEvents = 50
)

var errSessionNotFound = errNotFound("Session not found.")

// eventTypes are the event types a client may post (API.md §3), each with whether a
// worker token may post it: a worker answers tool uses and may say something, while the
// agent's side (agent.*), interrupts and definitions are for whoever drives the session.
// session.* events are berth's own.
var eventTypes = map[string]bool{
	"user.message": true, "user.interrupt": false, "user.tool_confirmation": false,
	"user.tool_result": true, "user.custom_tool_result": true, "user.define_outcome": false,
	"system.message": false,
	"agent.message":  false, "agent.tool_use": false, "agent.custom_tool_use": false,
}

const eventTypeList = "user.message, user.interrupt, user.tool_confirmation, user.tool_result, user.custom_tool_result, user.define_outcome, system.message, agent.message, agent.tool_use, agent.custom_tool_use"

var errWorkerEventType = errForbidden("A worker token may post only user.tool_result, user.custom_tool_result and user.message events.")

func (c *call) sessionParam() (string, error) {
	v := c.r.PathValue("session_id")
	if !id.Valid(id.Session, v) {
		return "", errSessionNotFound
	}
	return v, nil
}

// loadSession reads the path's session and, for a worker token, checks that the session
// is in the token's environment (403 otherwise; a session that does not exist is 404).
func (c *call) loadSession() (store.Session, error) {
	sid, err := c.sessionParam()
	if err != nil {
		return store.Session{}, err
	}
	sess, err := c.s.store.GetSession(c.r.Context(), sid)
	if err != nil {
		return sess, asAPIError(err, errSessionNotFound)
	}
	if c.isWorker() && sess.EnvironmentID != c.token.EnvironmentID {
		return sess, errForbidden("This worker token is bound to another environment.")
	}
	return sess, nil
}

// parseAgent accepts an agent ID string, stored as {"id":…,"type":"agent","version":null},
// or an agent object with a non-empty string id, stored as given, compacted, with two
// normalisations so that the stored object is well-formed JSON with exactly one "type":
//
//   - "type" is optional; absent or an explicit null, the stored object gets
//     "type":"agent" right after "id" (null is treated as absent, since an object holding
//     both "type":null and the added "type":"agent" would have the key twice). A string
//     type is kept as given, in its place; any other type is 400.
//   - A key repeated in the input, at the top or in any nested object, is stored once, at
//     its first place with its last value: what encoding/json and most parsers read from
//     such input, written so that no reader can take it differently.
//
// Keys are matched exactly: "ID" or "Type" are other keys, stored as given, and an object
// without the key "id" is 400.
func parseAgent(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || isNull(raw) {
		return nil, errInvalid("agent", "agent is required.")
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil || s == "" || len(s) > maxNameLen {
			return nil, errInvalid("agent", "agent must be a non-empty agent ID or an agent object.")
		}
		return json.Marshal(struct {
			ID      string `json:"id"`
			Type    string `json:"type"`
			Version any    `json:"version"`
		}{s, "agent", nil})
	case '{':
		n, err := decodeJSONTree(raw)
		if err != nil || n.object == nil {
			return nil, errInvalid("agent", "agent must be an agent object.")
		}
		obj := n.object
		if v, ok := obj.get("id"); !ok || !v.isString() || v.scalar == `""` {
			return nil, errInvalid("agent.id", "agent.id must be a non-empty string.")
		}
		typ, hasType := obj.get("type")
		if hasType && !typ.isString() && !typ.isNull() {
			return nil, errInvalid("agent.type", "agent.type must be a string.")
		}
		typed := hasType && typ.isString()
		out := &jsonObject{}
		for i, k := range obj.keys {
			if k == "type" && !typed {
				continue // null: treated as absent
			}
			out.set(k, obj.vals[i])
			if k == "id" && !typed {
				out.set("type", &jsonTree{scalar: `"agent"`})
			}
		}
		return (&jsonTree{object: out}).marshal()
	}
	return nil, errInvalid("agent", "agent must be an agent ID or an agent object.")
}

// parseEvents validates client events and builds their stored form: id, type, the
// client's other fields in the order given, created_at. Client-sent id and created_at are
// the server's to set and are replaced; the id is left empty ("id":""), for the store to
// make in commit order (store.Event). A worker token (worker) may post only some types
// (eventTypes): another type is 403.
func parseEvents(raw json.RawMessage, param string, now time.Time, worker bool) ([]store.Event, error) {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, errInvalid(param, "%s must be an array of events.", param)
	}
	if len(list) > maxEvents {
		return nil, errInvalid(param, "%s may hold at most %d events.", param, maxEvents)
	}
	out := make([]store.Event, 0, len(list))
	for i, ev := range list {
		p := fmt.Sprintf("%s[%d]", param, i)
		keys, vals, err := orderedFields(ev)
		if err != nil {
			return nil, errInvalid(p, "%s must be an object.", p)
		}
		typ := ""
		fields := map[string]json.RawMessage{}
		obj := &orderedObject{}
		obj.add("id", "")
		obj.add("type", "")
		for j, k := range keys {
			switch k {
			case "type":
				json.Unmarshal(vals[j], &typ)
				if strings.HasPrefix(typ, "session.") {
					return nil, errInvalid(p+".type", "%s.type: session.* events are written by berth only.", p)
				}
				if _, ok := eventTypes[typ]; !ok {
					return nil, errInvalid(p+".type", "%s.type must be one of %s.", p, eventTypeList)
				}
			case "id", "created_at":
			default:
				obj.add(k, vals[j])
				fields[k] = vals[j]
			}
		}
		if typ == "" {
			return nil, errInvalid(p+".type", "%s.type is required.", p)
		}
		if worker && !eventTypes[typ] {
			return nil, errWorkerEventType
		}
		if err := checkAgentEvent(typ, fields, p); err != nil {
			return nil, err
		}
		obj.vals[1] = typ
		obj.add("created_at", timestamp(now))
		body, err := obj.marshal()
		if err != nil {
			return nil, errInvalid(p, "%s could not be stored.", p)
		}
		out = append(out, store.Event{Type: typ, Body: body, CreatedAt: now})
	}
	return out, nil
}

// checkAgentEvent checks the fields that an agent-side event must have (API.md §3): the
// content array of an agent.message, the name (a non-empty string) and input (an object)
// of a tool use.
func checkAgentEvent(typ string, fields map[string]json.RawMessage, p string) error {
	switch typ {
	case "agent.message":
		var content []json.RawMessage
		if raw, ok := fields["content"]; !ok || json.Unmarshal(raw, &content) != nil || content == nil {
			return errInvalid(p+".content", "%s.content must be an array.", p)
		}
	case "agent.tool_use", "agent.custom_tool_use":
		var name string
		if raw, ok := fields["name"]; !ok || json.Unmarshal(raw, &name) != nil || name == "" {
			return errInvalid(p+".name", "%s.name must be a non-empty string.", p)
		}
		var input map[string]json.RawMessage
		if raw, ok := fields["input"]; !ok || json.Unmarshal(raw, &input) != nil || input == nil {
			return errInvalid(p+".input", "%s.input must be a JSON object.", p)
		}
	}
	return nil
}

// orderedFields splits a JSON object into its keys and raw values, in order; a repeated
// key keeps its first place and its last value, as encoding/json would decode it.
func orderedFields(raw json.RawMessage) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("not an object")
	}
	var keys []string
	var vals []json.RawMessage
	index := map[string]int{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if i, ok := index[k]; ok {
			vals[i] = v
			continue
		}
		index[k] = len(keys)
		keys, vals = append(keys, k), append(vals, v)
	}
	return keys, vals, nil
}

func (s *Server) createSession(c *call) error {
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	agent, err := parseAgent(f["agent"])
	if err != nil {
		return err
	}
	envID, ok, err := f.str("environment_id", 64)
	if err != nil {
		return err
	}
	if !ok {
		return errInvalid("environment_id", "environment_id is required.")
	}
	title, _, err := f.str("title", maxTitleLen)
	if err != nil {
		return err
	}
	patch, err := f.metadata()
	if err != nil {
		return err
	}
	meta, err := work.Merge(nil, patch, "metadata")
	if err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	sess := store.Session{EnvironmentID: envID, Agent: agent, Title: title,
		Metadata: meta, CreatedAt: now, UpdatedAt: now}
	var events []store.Event
	if f.has("initial_events") {
		if events, err = parseEvents(f["initial_events"], "initial_events", now, c.isWorker()); err != nil {
			return err
		}
	}
	envNotFound := &apiError{Status: 404, Type: typeNotFound, Param: "environment_id", Message: "Environment not found."}
	if !id.Valid(id.Environment, envID) {
		return envNotFound
	}
	env, err := s.store.GetEnvironment(c.r.Context(), envID)
	if err != nil {
		return asAPIError(err, envNotFound)
	}
	archived := errInvalid("environment_id", "Environment %s is archived; it takes no new sessions.", envID)
	if !env.ArchivedAt.IsZero() {
		return archived
	}
	var item *work.Item
	if env.SelfHosted() {
		it := work.New("", envID, "", meta, now)
		item = &it
	}
	created, err := s.enqueue(c.r.Context(), sess, events, item)
	switch {
	case errors.Is(err, store.ErrArchived):
		return archived // archived since it was read above
	case err != nil:
		return asAPIError(err, envNotFound)
	}
	return c.json(201, sessionObject(created.Session))
}

// enqueue stores a new session with its first work item (nil: none) and gets the item to
// a poller (wait.Enqueue): when one is parked in the environment, the item is claimed for
// it in the same transaction (store.CreateSession with a claim), one commit instead of
// the create's and then the poller's own claim.
func (s *Server) enqueue(ctx context.Context, sess store.Session, events []store.Event, item *work.Item) (store.Created, error) {
	if item == nil {
		return s.store.CreateSession(ctx, sess, events, nil, nil)
	}
	var created store.Created
	err := s.waiters.Enqueue(sess.EnvironmentID, func(p *wait.Poll) (*work.Item, *work.Item, error) {
		var claim *work.Claim
		if p != nil {
			claim = &work.Claim{WorkerID: p.WorkerID, Reclaim: p.Reclaim, At: s.now()}
		}
		var err error
		if created, err = s.store.CreateSession(ctx, sess, events, item, claim); err != nil {
			return nil, nil, err
		}
		if created.Delivered != nil {
			s.observeClaim(*created.Delivered)
		}
		return created.Item, created.Delivered, nil
	})
	if err != nil {
		return store.Created{}, err
	}
	s.metrics.transition("queued")
	s.queuedDeliveries(created.Deliveries)
	return created, nil
}

func (s *Server) listSessions(c *call) error {
	q := c.r.URL.Query()
	p, err := pageParams(q, id.Session)
	if err != nil {
		return err
	}
	archived, err := boolParam(q, "include_archived")
	if err != nil {
		return err
	}
	envID := q.Get("environment_id")
	if q.Has("environment_id") && !id.Valid(id.Environment, envID) {
		return errInvalid("environment_id", "environment_id must be an environment ID (env_…).")
	}
	sessions, more, err := s.store.ListSessions(c.r.Context(), p, envID, archived)
	if err != nil {
		return err
	}
	return c.json(200, newPage(sessions, more, p, sessionID, sessionObject))
}

func (s *Server) getSession(c *call) error {
	sess, err := c.loadSession()
	if err != nil {
		return err
	}
	return c.json(200, sessionObject(sess))
}

func (s *Server) updateSession(c *call) error {
	sid, err := c.sessionParam()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	title, hasTitle, err := f.str("title", maxTitleLen)
	if err != nil {
		return err
	}
	patch, err := f.metadata()
	if err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	sess, err := s.store.UpdateSession(c.r.Context(), sid, func(sess *store.Session) error {
		if hasTitle {
			sess.Title = title
		}
		m, err := work.Merge(sess.Metadata, patch, "metadata")
		if err != nil {
			return err
		}
		sess.Metadata, sess.UpdatedAt = m, now
		return nil
	})
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	return c.json(200, sessionObject(sess))
}

func (s *Server) archiveSession(c *call) error {
	sid, err := c.sessionParam()
	if err != nil {
		return err
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	now := work.Timestamp(s.now())
	sess, err := s.store.UpdateSession(c.r.Context(), sid, func(sess *store.Session) error {
		if sess.ArchivedAt.IsZero() {
			sess.ArchivedAt, sess.UpdatedAt = now, now
		}
		return nil
	})
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	return c.json(200, sessionObject(sess))
}

// cancelSession requests a graceful stop of the session's live work (work.Cancel): 202
// when it had live work, 200 when it had none; the body says canceling either way, as
// the official SDK's test expects.
func (s *Server) cancelSession(c *call) error {
	sid, err := c.sessionParam()
	if err != nil {
		return err
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	live, err := s.store.UpdateSessionWork(c.r.Context(), sid, work.Cancel(s.now()))
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	for _, ch := range live {
		if ch.After.State != ch.Before.State {
			s.metrics.transition(string(ch.After.State))
		}
	}
	status := 200
	if len(live) > 0 {
		status = 202
	}
	return c.json(status, cancelJSON{ID: sid, Type: "session", Status: "canceling"})
}

func (s *Server) deleteSession(c *call) error {
	sid, err := c.sessionParam()
	if err != nil {
		return err
	}
	stopped, err := s.store.DeleteSession(c.r.Context(), sid, s.now())
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	for range stopped {
		s.metrics.transition("stopped")
	}
	return c.json(200, deletedJSON{ID: sid, Type: "session_deleted"})
}

func (s *Server) listEvents(c *call) error {
	sess, err := c.loadSession()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	p, err := pageParamsUpTo(q, id.Event, maxEventLimit)
	if err != nil {
		return err
	}
	switch q.Get("order") {
	case "asc":
	case "desc":
		p.Desc = true
	default:
		if q.Has("order") {
			return errInvalid("order", "order must be asc or desc.")
		}
	}
	events, more, err := s.store.ListEvents(c.r.Context(), sess.ID, p)
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	return c.json(200, newPage(events, more, p, eventID, eventBody))
}

// sendEvents stores events and, for a user.message to a session with no live work in a
// self_hosted environment, queues a new work item (dormant wake-up).
func (s *Server) sendEvents(c *call) error {
	sess, err := c.loadSession()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	if !f.has("events") {
		return errInvalid("events", "events is required.")
	}
	now := work.Timestamp(s.now())
	events, err := parseEvents(f["events"], "events", now, c.isWorker())
	if err != nil {
		return err
	}
	if len(events) == 0 {
		return errInvalid("events", "events must hold at least one event.")
	}
	ap, err := s.store.AppendEvents(c.r.Context(), sess.ID, events, now)
	if err != nil {
		return asAPIError(err, errSessionNotFound)
	}
	if ap.Queued != nil {
		s.metrics.transition("queued")
		s.waiters.Queued(ap.Queued.EnvironmentID)
		s.queuedDeliveries(ap.Deliveries)
	}
	out := eventListJSON{Data: make([]json.RawMessage, len(ap.Events))}
	for i, e := range ap.Events {
		out.Data[i] = e.Body
	}
	return c.json(200, out)
}
