package work

import "fmt"

// Kind classifies a rule violation; internal/api maps each kind to one HTTP status.
type Kind int

const (
	// Invalid is bad input: 400 invalid_request_error.
	Invalid Kind = iota + 1
	// Conflict is a request the item's state does not allow (ack or heartbeat on the
	// wrong state, ack by another worker): 409 invalid_request_error, as the public docs
	// say.
	Conflict
	// Precondition is a heartbeat whose expected_last_heartbeat does not match: 412.
	Precondition
)

// Error is a rule violation. Param names the one parameter at fault, when there is one.
// Current is set on Precondition errors: the item as it is, so that a worker can see who
// holds the lease.
type Error struct {
	Kind    Kind
	Message string
	Param   string
	Current *Item
}

func (e *Error) Error() string {
	if e.Param != "" {
		return fmt.Sprintf("%s (param %s)", e.Message, e.Param)
	}
	return e.Message
}

func invalid(param, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Param: param, Message: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *Error {
	return &Error{Kind: Conflict, Message: fmt.Sprintf(format, args...)}
}
