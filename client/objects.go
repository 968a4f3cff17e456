package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// The JSON objects of API.md, field for field.
//
// Timestamps are decoded to time.Time, and nullable ones to *time.Time (nil for null). A
// berth timestamp is RFC 3339 UTC with microseconds and trailing zeros dropped, which is
// exactly how time.Time encodes such a value back: json.Marshal of an Environment, a
// Session or a Work gives the bytes berth served (keys in the spec's order, metadata keys
// sorted), so a worker can pass an item on unchanged. The timestamps a worker must echo byte for byte are also kept as the
// server's strings (Heartbeat.LastHeartbeat, Work.LatestHeartbeatAtRaw,
// HeartbeatState.LastHeartbeat), since another compatible service may write them in a
// form that does not survive parsing and re-formatting (an offset, nanoseconds).
//
// Nullable strings that are IDs (Page cursors, Token.EnvironmentID) are plain strings, ""
// for null: an ID is never empty.

// State is a work item's lifecycle state (API.md §4). States never move backwards.
type State string

// The work states, in lifecycle order.
const (
	StateQueued   State = "queued"   // pollable, or delivered but not yet acknowledged
	StateStarting State = "starting" // acknowledged by a worker
	StateActive   State = "active"   // the worker has sent its first heartbeat
	StateStopping State = "stopping" // a graceful stop was requested: drain, then stop
	StateStopped  State = "stopped"  // terminal
)

// Environment config types.
const (
	ConfigCloud      = "cloud"
	ConfigSelfHosted = "self_hosted"
)

// Environment is an environment object (API.md §2).
type Environment struct {
	ID          string            `json:"id"`
	Type        string            `json:"type"` // "environment"
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Config      EnvironmentConfig `json:"config"`
	Metadata    map[string]string `json:"metadata"`
	ArchivedAt  *time.Time        `json:"archived_at"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

// EnvironmentConfig is an environment's config: its Type ("cloud" or "self_hosted") and
// the whole object as JSON, since its other keys depend on the type (setup_script,
// packages, networking) and berth keeps them as given.
//
// When encoded (in CreateEnvironmentParams and UpdateEnvironmentParams), Raw is sent when
// set and {"type":Type} otherwise.
type EnvironmentConfig struct {
	Type string
	Raw  json.RawMessage
}

// SelfHostedConfig returns a self_hosted config, with a setup_script unless it is empty.
func SelfHostedConfig(setupScript string) *EnvironmentConfig {
	raw, _ := json.Marshal(struct {
		Type        string `json:"type"`
		SetupScript string `json:"setup_script,omitempty"`
	}{ConfigSelfHosted, setupScript})
	return &EnvironmentConfig{Type: ConfigSelfHosted, Raw: raw}
}

// MarshalJSON encodes Raw, or {"type":Type} when Raw is empty.
func (c EnvironmentConfig) MarshalJSON() ([]byte, error) {
	if len(c.Raw) > 0 {
		return c.Raw, nil
	}
	return json.Marshal(struct {
		Type string `json:"type"`
	}{c.Type})
}

// UnmarshalJSON keeps the object in Raw and its type in Type.
func (c *EnvironmentConfig) UnmarshalJSON(b []byte) error {
	var t struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	c.Type, c.Raw = t.Type, bytes.Clone(b)
	return nil
}

// Session is a session object (API.md §3, berth's subset).
type Session struct {
	ID            string `json:"id"`
	Type          string `json:"type"` // "session"
	EnvironmentID string `json:"environment_id"`
	// Agent is stored as given by its creator; berth turns an agent ID string into
	// {"id":…,"type":"agent","version":null}.
	Agent      json.RawMessage   `json:"agent"`
	Title      string            `json:"title"`
	Status     string            `json:"status"` // "running" while it has started work, else "idle"
	Metadata   map[string]string `json:"metadata"`
	ArchivedAt *time.Time        `json:"archived_at"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
}

// SessionCancel is the answer of CancelSession.
type SessionCancel struct {
	ID     string `json:"id"`
	Type   string `json:"type"`   // "session"
	Status string `json:"status"` // "canceling"
	// Accepted is not in the body: it is true when the server answered 202 (a stop was
	// requested on live work) and false on 200 (the session had no live work).
	Accepted bool `json:"-"`
}

// Event is a stored session event: its id, type and created_at decoded, and the whole
// object, whose other fields depend on the type, in Raw. It encodes back to Raw.
type Event struct {
	ID        string
	Type      string
	CreatedAt time.Time
	Raw       json.RawMessage
}

// MarshalJSON encodes the event as the server sent it.
func (e Event) MarshalJSON() ([]byte, error) {
	if len(e.Raw) == 0 {
		return []byte("null"), nil
	}
	return e.Raw, nil
}

// UnmarshalJSON decodes id, type and created_at and keeps the whole object in Raw.
func (e *Event) UnmarshalJSON(b []byte) error {
	var head struct {
		ID        string    `json:"id"`
		Type      string    `json:"type"`
		CreatedAt time.Time `json:"created_at"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	e.ID, e.Type, e.CreatedAt, e.Raw = head.ID, head.Type, head.CreatedAt, bytes.Clone(b)
	return nil
}

// Work is a work item (API.md §4).
type Work struct {
	ID                string     `json:"id"`
	Type              string     `json:"type"` // "work"
	EnvironmentID     string     `json:"environment_id"`
	Data              WorkData   `json:"data"`
	State             State      `json:"state"`
	CreatedAt         time.Time  `json:"created_at"`
	AcknowledgedAt    *time.Time `json:"acknowledged_at"`
	StartedAt         *time.Time `json:"started_at"`
	LatestHeartbeatAt *time.Time `json:"latest_heartbeat_at"`
	// LatestHeartbeatAtRaw is latest_heartbeat_at exactly as the server wrote it, "" for
	// null: what a worker that lost its last heartbeat answer echoes as
	// HeartbeatParams.ExpectedLastHeartbeat.
	LatestHeartbeatAtRaw string            `json:"-"`
	StopRequestedAt      *time.Time        `json:"stop_requested_at"`
	StoppedAt            *time.Time        `json:"stopped_at"`
	Metadata             map[string]string `json:"metadata"`
	// Secret is a credential payload that the hosted platform may put on a polled item;
	// berth never sends it. Left out of the encoding when absent.
	Secret json.RawMessage `json:"secret,omitempty"`
}

// UnmarshalJSON decodes a work item and keeps latest_heartbeat_at's text.
func (w *Work) UnmarshalJSON(b []byte) error {
	type plain Work
	var aux struct {
		*plain
		// Shallower than plain's field of the same name, so it takes the value instead.
		LatestHeartbeatAt *string `json:"latest_heartbeat_at"`
	}
	aux.plain = (*plain)(w)
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	w.LatestHeartbeatAt, w.LatestHeartbeatAtRaw = nil, ""
	if aux.LatestHeartbeatAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *aux.LatestHeartbeatAt)
		if err != nil {
			return fmt.Errorf("latest_heartbeat_at: %w", err)
		}
		w.LatestHeartbeatAt, w.LatestHeartbeatAtRaw = &t, *aux.LatestHeartbeatAt
	}
	return nil
}

// WorkData says what a work item is for: {"type":"session","id":"sess_…"}.
type WorkData struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// Heartbeat is the answer of HeartbeatWork (a work_heartbeat object).
type Heartbeat struct {
	Type string `json:"type"` // "work_heartbeat"
	// LastHeartbeat is the item's new latest_heartbeat_at, kept as the server's exact
	// string: send it unchanged as the next heartbeat's ExpectedLastHeartbeat.
	LastHeartbeat string `json:"last_heartbeat"`
	LeaseExtended bool   `json:"lease_extended"`
	// State is active, or stopping: then drain and confirm with StopWork.
	State      State `json:"state"`
	TTLSeconds int   `json:"ttl_seconds"`
}

// QueueStats is the answer of GetWorkStats (a work_queue_stats object).
type QueueStats struct {
	Type string `json:"type"` // "work_queue_stats"
	// Depth is the number of queued items deliverable now.
	Depth int `json:"depth"`
	// Pending is the number of queued items delivered recently and not acknowledged.
	Pending int `json:"pending"`
	// OldestQueuedAt is the oldest created_at among queued items; nil when none is.
	OldestQueuedAt *time.Time `json:"oldest_queued_at"`
	// WorkersPolling is the number of distinct Worker-IDs that polled in the last 30 s.
	WorkersPolling int `json:"workers_polling"`
}

// Token roles (API.md §1).
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleWorker = "worker"
)

// Token is an API token (API.md §5).
type Token struct {
	ID   string `json:"id"`
	Type string `json:"type"` // "token"
	Name string `json:"name"`
	Role string `json:"role"`
	// EnvironmentID is the environment a worker token is bound to; "" for null.
	EnvironmentID string     `json:"environment_id"`
	CreatedAt     time.Time  `json:"created_at"`
	LastUsedAt    *time.Time `json:"last_used_at"`
	RevokedAt     *time.Time `json:"revoked_at"`
	// Secret is the "pt-…" secret, present only in CreateToken's answer: the server
	// keeps only a hash, so this is the one chance to read it.
	Secret string `json:"secret,omitempty"`
}

// Deleted is the answer of a delete: {"id":…,"type":"environment_deleted"} or
// {"id":…,"type":"session_deleted"}.
type Deleted struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}
