package client

import (
	"context"
	"encoding/json"
	"iter"
	"net/http"
	"net/url"
)

// CreateSessionParams is the body of CreateSession.
type CreateSessionParams struct {
	// Agent is required: an agent ID string, or an agent object (a struct, a map or a
	// json.RawMessage) with a non-empty "id". berth stores it without resolving it.
	Agent any `json:"agent"`
	// EnvironmentID is required; the environment must exist and not be archived.
	EnvironmentID string `json:"environment_id"`
	Title         string `json:"title,omitempty"`
	// Metadata is copied to the work item a self_hosted environment queues.
	Metadata map[string]string `json:"metadata,omitempty"`
	// InitialEvents are at most 50 client events, each a JSON object with a "type"
	// (see SendEvents).
	InitialEvents []any `json:"initial_events,omitempty"`
}

// UpdateSessionParams is a partial update: nil fields are left as they are. It does not
// change the session's existing work items.
type UpdateSessionParams struct {
	Title *string `json:"title,omitempty"`
	// Metadata is merged: a value upserts its key, nil deletes it, absent keys stay.
	Metadata map[string]*string `json:"metadata,omitempty"`
}

// ListSessionsParams filters ListSessions.
type ListSessionsParams struct {
	ListParams
	// EnvironmentID lists only the sessions of this environment.
	EnvironmentID string
	// IncludeArchived lists archived sessions too.
	IncludeArchived bool
}

// CreateSession creates a session (→ 201). In a self_hosted environment it also queues
// one work item for it.
func (c *Client) CreateSession(ctx context.Context, params CreateSessionParams, opts ...RequestOption) (*Session, error) {
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Session](ctx, c, &request{method: "POST", path: "sessions", body: body, opts: opts})
}

// GetSession reads a session; a worker token may read the sessions of its environment.
func (c *Client) GetSession(ctx context.Context, sessionID string, opts ...RequestOption) (*Session, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	return call[Session](ctx, c, &request{method: "GET", path: "sessions/" + sess, opts: opts})
}

// ListSessions reads one page of sessions, oldest first.
func (c *Client) ListSessions(ctx context.Context, params ListSessionsParams, opts ...RequestOption) (*Page[Session], error) {
	q := params.values()
	if params.EnvironmentID != "" {
		q.Set("environment_id", params.EnvironmentID)
	}
	if params.IncludeArchived {
		q.Set("include_archived", "true")
	}
	return call[Page[Session]](ctx, c, &request{method: "GET", path: "sessions", query: q, opts: opts})
}

// AllSessions iterates over every session from params on, page after page.
func (c *Client) AllSessions(ctx context.Context, params ListSessionsParams, opts ...RequestOption) iter.Seq2[Session, error] {
	return pages(ctx, params.ListParams, func(ctx context.Context, lp ListParams) (*Page[Session], error) {
		p := params
		p.ListParams = lp
		return c.ListSessions(ctx, p, opts...)
	})
}

// UpdateSession changes the fields set in params.
func (c *Client) UpdateSession(ctx context.Context, sessionID string, params UpdateSessionParams, opts ...RequestOption) (*Session, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Session](ctx, c, &request{method: "POST", path: "sessions/" + sess, body: body, opts: opts})
}

// ArchiveSession sets archived_at; live work is left alone.
func (c *Client) ArchiveSession(ctx context.Context, sessionID string, opts ...RequestOption) (*Session, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	return call[Session](ctx, c, &request{method: "POST", path: "sessions/" + sess + "/archive", body: emptyBody, opts: opts})
}

// CancelSession interrupts a session: a graceful stop is requested on its live work item.
// The answer says "canceling" either way; SessionCancel.Accepted tells whether there was
// live work to stop (202) or not (200).
func (c *Client) CancelSession(ctx context.Context, sessionID string, opts ...RequestOption) (*SessionCancel, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	r := &request{method: "POST", path: "sessions/" + sess + "/cancel", body: emptyBody, opts: opts}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	out, err := decode[SessionCancel](r, resp)
	if err != nil {
		return nil, err
	}
	out.Accepted = resp.status == http.StatusAccepted
	return out, nil
}

// DeleteSession force-stops the session's live work items (they stay readable, stopped)
// and deletes the session.
func (c *Client) DeleteSession(ctx context.Context, sessionID string, opts ...RequestOption) (*Deleted, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	return call[Deleted](ctx, c, &request{method: "DELETE", path: "sessions/" + sess, opts: opts})
}

// SendEvents appends events to a session, in order, and returns them as stored (with id
// and created_at). Each event is a JSON object (a struct, a map or a json.RawMessage)
// whose "type" is user.message, user.interrupt, user.tool_confirmation, user.tool_result,
// user.custom_tool_result, user.define_outcome or system.message; at most 50 per call.
// A user.message to a session with no live work in a self_hosted environment queues a
// new work item.
func (c *Client) SendEvents(ctx context.Context, sessionID string, events []any, opts ...RequestOption) ([]Event, error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(struct {
		Events []any `json:"events"`
	}{events})
	if err != nil {
		return nil, err
	}
	out, err := call[struct {
		Data []Event `json:"data"`
	}](ctx, c, &request{method: "POST", path: "sessions/" + sess + "/events", body: body, opts: opts})
	if err != nil {
		return nil, err
	}
	return out.Data, nil
}

// Orders of ListEventsParams.Order.
const (
	OrderAsc  = "asc"  // oldest first (the default)
	OrderDesc = "desc" // newest first
)

// ListEventsParams selects a page of a session's event history. Limit goes up to 1000
// here (API.md §3).
type ListEventsParams struct {
	ListParams
	// Order is OrderAsc (the default, also when "") or OrderDesc: newest first, NextPage
	// continuing towards older events.
	Order string
}

func (p ListEventsParams) values() url.Values {
	q := p.ListParams.values()
	if p.Order != "" {
		q.Set("order", p.Order)
	}
	return q
}

// ListEvents reads one page of a session's event history, oldest first unless
// params.Order is OrderDesc.
func (c *Client) ListEvents(ctx context.Context, sessionID string, params ListEventsParams, opts ...RequestOption) (*Page[Event], error) {
	sess, err := segment("session_id", sessionID)
	if err != nil {
		return nil, err
	}
	return call[Page[Event]](ctx, c, &request{method: "GET", path: "sessions/" + sess + "/events", query: params.values(), opts: opts})
}

// AllEvents iterates over a session's events from params on, page after page, in
// params.Order.
func (c *Client) AllEvents(ctx context.Context, sessionID string, params ListEventsParams, opts ...RequestOption) iter.Seq2[Event, error] {
	return pages(ctx, params.ListParams, func(ctx context.Context, lp ListParams) (*Page[Event], error) {
		p := params
		p.ListParams = lp
		return c.ListEvents(ctx, sessionID, p, opts...)
	})
}

// UserMessage returns a user.message event with one text block, the common case of
// SendEvents and CreateSessionParams.InitialEvents.
func UserMessage(text string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{
		"type":    "user.message",
		"content": []map[string]string{{"type": "text", "text": text}},
	})
	return b
}
