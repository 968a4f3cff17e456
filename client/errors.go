package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a non-2xx answer of the API, decoded from the error envelope of API.md §1:
//
//	{"type":"error","request_id":"…","error":{"type":"…","message":"…","param":"…","details":{…}}}
//
// Methods return it unwrapped, so both errors.As and a type assertion find it.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Type is error.type: invalid_request_error, authentication_error, permission_error,
	// not_found_error, conflict_error, precondition_failed_error or api_error. It is empty
	// when the body was not the envelope.
	Type string
	// Message is error.message, or the body's text when the body was not the envelope (a
	// proxy's HTML page, say), or the status text when there was no body.
	Message string
	// Param names the parameter at fault, when one is.
	Param string
	// RequestID is the body's request_id, else the x-request-id header: what to quote when
	// asking the server's operator about this answer.
	RequestID string
	// Details is error.details as sent (nil when absent).
	Details json.RawMessage
	// CurrentState is error.details.current_state of a 412 on heartbeat: who holds the
	// lease now. nil when absent.
	CurrentState *HeartbeatState

	// header is the answer's headers when the error is an HTTP answer to a stream's
	// connection (Retry-After, x-should-retry); nil otherwise.
	header http.Header
}

// HeartbeatState is the lease as the server sees it, sent with a heartbeat's 412.
type HeartbeatState struct {
	State      State `json:"state"`
	TTLSeconds int   `json:"ttl_seconds"`
	// LastHeartbeat is the item's latest_heartbeat_at exactly as the server wrote it, ""
	// when it never had a heartbeat: echo it as HeartbeatParams.ExpectedLastHeartbeat (or
	// NoHeartbeat when empty) to take the lease over deliberately.
	LastHeartbeat string `json:"last_heartbeat"`
}

// Error returns "berth: HTTP <status> <type>: <message> (request_id=<id>)", leaving out
// the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("berth: HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Type != "" {
		b.WriteString(" ")
		b.WriteString(e.Type)
	}
	b.WriteString(": ")
	b.WriteString(e.Message)
	if e.RequestID != "" {
		b.WriteString(" (request_id=")
		b.WriteString(e.RequestID)
		b.WriteString(")")
	}
	return b.String()
}

// maxErrorText bounds how much of a body that is not the envelope becomes Message.
const maxErrorText = 4 << 10

// newError decodes a non-2xx answer.
func newError(resp *response) *Error {
	e := &Error{StatusCode: resp.status, RequestID: resp.header.Get("x-request-id")}
	var env struct {
		RequestID string `json:"request_id"`
		Error     *struct {
			Type    string          `json:"type"`
			Message string          `json:"message"`
			Param   string          `json:"param"`
			Details json.RawMessage `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.body, &env) == nil && env.Error != nil {
		e.Type, e.Message, e.Param = env.Error.Type, env.Error.Message, env.Error.Param
		if env.RequestID != "" {
			e.RequestID = env.RequestID
		}
		if d := bytes.TrimSpace(env.Error.Details); len(d) > 0 && !bytes.Equal(d, []byte("null")) {
			e.Details = d
			var details struct {
				CurrentState *HeartbeatState `json:"current_state"`
			}
			if json.Unmarshal(d, &details) == nil {
				e.CurrentState = details.CurrentState
			}
		}
		return e
	}
	text := bytes.TrimSpace(resp.body)
	if len(text) > maxErrorText {
		text = text[:maxErrorText]
		for len(text) > 0 && !utf8.Valid(text) {
			text = text[:len(text)-1]
		}
	}
	e.Message = string(text)
	if e.Message == "" {
		e.Message = http.StatusText(resp.status)
	}
	return e
}

// statusIs reports whether err is, or wraps, an *Error with the given status.
func statusIs(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == status
}

// IsNotFound reports whether err is a 404: the resource does not exist (or, for a work
// item, belongs to another environment).
func IsNotFound(err error) bool { return statusIs(err, http.StatusNotFound) }

// IsNoRoute reports whether err is a 404 that says the URL is wrong rather than that a
// resource is missing: berth's answer to a path it does not serve (error.message "No such
// route."), or a 404 that is not the API's error envelope at all (another server, or a
// proxy's page). A base URL without /api/v1/cloud gets this on every call.
func IsNoRoute(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusNotFound {
		return false
	}
	return e.Type == "" || e.Message == "No such route."
}

// IsConflict reports whether err is a 409: a work state conflict (ack or heartbeat of an
// item in the wrong state, ack by another worker), an environment still referenced, or
// an Idempotency-Key reused with another request.
func IsConflict(err error) bool { return statusIs(err, http.StatusConflict) }

// IsPreconditionFailed reports whether err is a 412: a heartbeat's
// expected_last_heartbeat did not match; see Error.CurrentState.
func IsPreconditionFailed(err error) bool { return statusIs(err, http.StatusPreconditionFailed) }

// IsUnauthorized reports whether err is a 401: no, malformed, unknown or revoked token.
func IsUnauthorized(err error) bool { return statusIs(err, http.StatusUnauthorized) }

// IsForbidden reports whether err is a 403: the token's role or environment binding
// forbids the call.
func IsForbidden(err error) bool { return statusIs(err, http.StatusForbidden) }
