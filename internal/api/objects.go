package api

import (
	"encoding/json"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The JSON objects of API.md, their keys in the order the spec gives. encoding/json writes
// struct fields in declaration order and map keys sorted, so the order is fixed here.

type environmentJSON struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Config      json.RawMessage `json:"config"`
	Metadata    work.Metadata   `json:"metadata"`
	ArchivedAt  timestamp       `json:"archived_at"`
	CreatedAt   timestamp       `json:"created_at"`
	UpdatedAt   timestamp       `json:"updated_at"`
}

func environmentObject(e store.Environment) environmentJSON {
	return environmentJSON{
		ID: e.ID, Type: "environment", Name: e.Name, Description: e.Description, Config: e.Config,
		Metadata: nonNil(e.Metadata), ArchivedAt: timestamp(e.ArchivedAt), CreatedAt: timestamp(e.CreatedAt),
		UpdatedAt: timestamp(e.UpdatedAt),
	}
}

type sessionJSON struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	EnvironmentID string          `json:"environment_id"`
	Agent         json.RawMessage `json:"agent"`
	Title         string          `json:"title"`
	Status        string          `json:"status"`
	Metadata      work.Metadata   `json:"metadata"`
	ArchivedAt    timestamp       `json:"archived_at"`
	CreatedAt     timestamp       `json:"created_at"`
	UpdatedAt     timestamp       `json:"updated_at"`
}

func sessionObject(s store.Session) sessionJSON {
	status := "idle"
	if s.Running {
		status = "running"
	}
	return sessionJSON{
		ID: s.ID, Type: "session", EnvironmentID: s.EnvironmentID, Agent: s.Agent, Title: s.Title,
		Status: status, Metadata: nonNil(s.Metadata), ArchivedAt: timestamp(s.ArchivedAt),
		CreatedAt: timestamp(s.CreatedAt), UpdatedAt: timestamp(s.UpdatedAt),
	}
}

type workData struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type workJSON struct {
	ID                string        `json:"id"`
	Type              string        `json:"type"`
	EnvironmentID     string        `json:"environment_id"`
	Data              workData      `json:"data"`
	State             work.State    `json:"state"`
	CreatedAt         timestamp     `json:"created_at"`
	AcknowledgedAt    timestamp     `json:"acknowledged_at"`
	StartedAt         timestamp     `json:"started_at"`
	LatestHeartbeatAt timestamp     `json:"latest_heartbeat_at"`
	StopRequestedAt   timestamp     `json:"stop_requested_at"`
	StoppedAt         timestamp     `json:"stopped_at"`
	Metadata          work.Metadata `json:"metadata"`
	// Secret is the Anthropic dialect's "secret": null (API.md §8), absent in the other.
	Secret json.RawMessage `json:"secret,omitempty"`
}

// jsonNull is the JSON literal null, as a value to write.
var jsonNull = json.RawMessage("null")

func workObject(it work.Item) workJSON {
	return workJSON{
		ID: it.ID, Type: "work", EnvironmentID: it.EnvironmentID,
		Data:  workData{Type: "session", ID: it.SessionID},
		State: it.State, CreatedAt: timestamp(it.CreatedAt), AcknowledgedAt: timestamp(it.AcknowledgedAt),
		StartedAt: timestamp(it.StartedAt), LatestHeartbeatAt: timestamp(it.LatestHeartbeatAt),
		StopRequestedAt: timestamp(it.StopRequestedAt), StoppedAt: timestamp(it.StoppedAt),
		Metadata: nonNil(it.Metadata),
	}
}

type heartbeatJSON struct {
	Type          string     `json:"type"`
	LastHeartbeat timestamp  `json:"last_heartbeat"`
	LeaseExtended bool       `json:"lease_extended"`
	State         work.State `json:"state"`
	TTLSeconds    int        `json:"ttl_seconds"`
}

type statsJSON struct {
	Type           string    `json:"type"`
	Depth          int       `json:"depth"`
	Pending        int       `json:"pending"`
	OldestQueuedAt timestamp `json:"oldest_queued_at"`
	WorkersPolling int       `json:"workers_polling"`
}

type tokenJSON struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	Name          string    `json:"name"`
	Role          string    `json:"role"`
	EnvironmentID *string   `json:"environment_id"`
	CreatedAt     timestamp `json:"created_at"`
	LastUsedAt    timestamp `json:"last_used_at"`
	RevokedAt     timestamp `json:"revoked_at"`
	Secret        string    `json:"secret,omitempty"`
}

func tokenObject(t store.Token) tokenJSON {
	out := tokenJSON{ID: t.ID, Type: "token", Name: t.Name, Role: t.Role, CreatedAt: timestamp(t.CreatedAt),
		LastUsedAt: timestamp(t.LastUsedAt), RevokedAt: timestamp(t.RevokedAt)}
	if t.EnvironmentID != "" {
		env := t.EnvironmentID
		out.EnvironmentID = &env
	}
	return out
}

type deletedJSON struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

type cancelJSON struct {
	ID     string `json:"id"`
	Type   string `json:"type"`
	Status string `json:"status"`
}

type eventListJSON struct {
	Data []json.RawMessage `json:"data"`
}

func nonNil(m work.Metadata) work.Metadata {
	if m == nil {
		return work.Metadata{}
	}
	return m
}

func environmentID(e store.Environment) string { return e.ID }
func sessionID(s store.Session) string         { return s.ID }
func workID(it work.Item) string               { return it.ID }
func tokenID(t store.Token) string             { return t.ID }
func eventID(e store.Event) string             { return e.ID }
func eventBody(e store.Event) json.RawMessage  { return e.Body }
