package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The error types of API.md §1, the only values error.type takes.
const (
	typeInvalidRequest     = "invalid_request_error"
	typeAuthentication     = "authentication_error"
	typePermission         = "permission_error"
	typeNotFound           = "not_found_error"
	typeConflict           = "conflict_error"
	typePreconditionFailed = "precondition_failed_error"
	typeAPI                = "api_error"
)

// apiError is an error answer. Every non-2xx response is made from one, in writeError.
type apiError struct {
	Status  int
	Type    string
	Message string
	Param   string
	Details any
	// cause is the unexpected error behind a 500 (asAPIError): never sent, but logged
	// (Error) and matched (Unwrap), e.g. to tell a request cut off by its client's
	// hang-up from a real failure.
	cause error
}

// Error is the message sent, or for a 500 made from an unexpected error, that error.
func (e *apiError) Error() string {
	if e.cause != nil {
		return e.cause.Error()
	}
	return e.Message
}

func (e *apiError) Unwrap() error { return e.cause }

func errInvalid(param, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Param: param, Message: fmt.Sprintf(format, args...)}
}

func errUnauthenticated(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Type: typeAuthentication, Message: msg}
}

func errForbidden(msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Type: typePermission, Message: msg}
}

func errNotFound(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeNotFound, Message: fmt.Sprintf(format, args...)}
}

func errConflict(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusConflict, Type: typeConflict, Message: fmt.Sprintf(format, args...)}
}

// Errors that are always the same.
var (
	errMalformedJSON   = errInvalid("", "Request body must be valid JSON.")
	errBodyNotObject   = errInvalid("", "Request body must be a JSON object.")
	errBodyTooLarge    = errInvalid("", "Request body must not exceed 32 MiB.")
	errNoRoute         = errNotFound("No such route.")
	errUncleanPath     = errNotFound("No such route: a path with an empty, \".\" or \"..\" segment names nothing.")
	errInternal        = &apiError{Status: http.StatusInternalServerError, Type: typeAPI, Message: "Internal server error."}
	errUnavailable     = &apiError{Status: http.StatusServiceUnavailable, Type: typeAPI, Message: "Storage is unavailable."}
	errIdempotencyBusy = errConflict("A request with this Idempotency-Key is still being processed.")
	errIdempotencyBody = errConflict("Idempotency key reused with a different request body.")
	// A request whose server died before answering: berth cannot tell whether it had its
	// effect, and will not risk a second one.
	errIdempotencyInterrupted = errConflict("The request first sent with this Idempotency-Key was interrupted before it was answered; whether it took effect is unknown. Check, then send it again with a new key.")
)

// asAPIError maps any error to its answer: the one place where store and rule errors
// become HTTP statuses. notFound names what a store.ErrNotFound stands for. Anything
// unknown is a 500 that says nothing of its cause.
func asAPIError(err error, notFound *apiError) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var we *work.Error
	if errors.As(err, &we) {
		switch we.Kind {
		case work.Invalid:
			return errInvalid(we.Param, "%s", we.Message)
		case work.Conflict:
			// 409 with invalid_request_error, as the public docs give for ack and
			// heartbeat state conflicts.
			return &apiError{Status: http.StatusConflict, Type: typeInvalidRequest, Message: we.Message}
		case work.Precondition:
			e := &apiError{Status: http.StatusPreconditionFailed, Type: typePreconditionFailed, Message: we.Message, Param: we.Param}
			if we.Current != nil {
				e.Details = map[string]any{"current_state": currentState{
					State:         string(we.Current.State),
					TTLSeconds:    we.Current.TTLSeconds,
					LastHeartbeat: timestamp(we.Current.LatestHeartbeatAt),
				}}
			}
			return e
		}
	}
	if errors.Is(err, store.ErrNotFound) && notFound != nil {
		return notFound
	}
	internal := *errInternal
	internal.cause = err
	return &internal
}

// withErrorCode is e with error.details.error_code set to code, besides the details e
// already has (API.md §8).
func withErrorCode(e *apiError, code string) *apiError {
	out := *e
	details := map[string]any{"error_code": code}
	if m, ok := e.Details.(map[string]any); ok {
		for k, v := range m {
			details[k] = v
		}
	}
	out.Details = details
	return &out
}

// currentState is error.details.current_state of a 412 [ext].
type currentState struct {
	State         string    `json:"state"`
	TTLSeconds    int       `json:"ttl_seconds"`
	LastHeartbeat timestamp `json:"last_heartbeat"`
}

type errorBody struct {
	Type      string       `json:"type"`
	RequestID string       `json:"request_id"`
	Error     errorPayload `json:"error"`
}

type errorPayload struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Param   string `json:"param,omitempty"`
	Details any    `json:"details,omitempty"`
}
