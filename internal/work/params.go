package work

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// NoHeartbeat is the expected_last_heartbeat value of a worker claiming a lease that has
// never had a heartbeat.
const NoHeartbeat = "NO_HEARTBEAT"

// Expectation is a heartbeat's expected_last_heartbeat.
type Expectation struct {
	kind expectKind
	at   time.Time
}

type expectKind int

const (
	expectAny expectKind = iota
	expectNone
	expectAt
)

// AnyHeartbeat is the expectation of a heartbeat without expected_last_heartbeat:
// unconditional.
var AnyHeartbeat = Expectation{}

// ExpectNoHeartbeat matches only an item that never had a heartbeat.
var ExpectNoHeartbeat = Expectation{kind: expectNone}

// ExpectHeartbeatAt matches only an item whose latest heartbeat is t, to the microsecond.
func ExpectHeartbeatAt(t time.Time) Expectation {
	return Expectation{kind: expectAt, at: Timestamp(t)}
}

// Matches reports whether an item whose latest heartbeat is latest (zero: none) meets the
// expectation.
func (e Expectation) Matches(latest time.Time) bool {
	switch e.kind {
	case expectNone:
		return latest.IsZero()
	case expectAt:
		return !latest.IsZero() && latest.Equal(e.at)
	}
	return true
}

// ParseExpectation parses expected_last_heartbeat; present is false when the query did not
// carry it. Accepted: NO_HEARTBEAT, or an RFC 3339 timestamp with any offset (Z or ±hh:mm)
// and up to nine fractional digits; it is compared to the microsecond, so digits below the
// microsecond are ignored.
func ParseExpectation(s string, present bool) (Expectation, error) {
	if !present {
		return AnyHeartbeat, nil
	}
	if s == NoHeartbeat {
		return ExpectNoHeartbeat, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return Expectation{}, invalid("expected_last_heartbeat",
			"expected_last_heartbeat must be %s or an RFC 3339 timestamp.", NoHeartbeat)
	}
	return ExpectHeartbeatAt(t), nil
}

// ParseTTL parses desired_ttl_seconds; present is false when the query did not carry it.
// It must be a positive integer and is clamped to [MinTTL, MaxTTL]; absent means
// DefaultTTL.
func ParseTTL(s string, present bool) (int, error) {
	if !present {
		return DefaultTTL, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return MaxTTL, nil // a positive integer too large for 64 bits is still clamped
	}
	if err != nil || n == 0 {
		return 0, invalid("desired_ttl_seconds", "desired_ttl_seconds must be a positive integer.")
	}
	return int(min(max(n, MinTTL), MaxTTL)), nil
}

// ParseBlock parses a poll's block_ms: absent means no wait; otherwise an integer from 1
// to 999.
func ParseBlock(s string, present bool) (time.Duration, error) {
	if !present {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 999 {
		return 0, invalid("block_ms", "block_ms must be an integer from 1 to 999.")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// ParseReclaim parses a poll's reclaim_older_than_ms: absent means DefaultReclaim;
// otherwise an integer ≥ 0.
func ParseReclaim(s string, present bool) (time.Duration, error) {
	if !present {
		return DefaultReclaim, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, invalid("reclaim_older_than_ms", "reclaim_older_than_ms must be a non-negative integer.")
	}
	// Windows beyond maxReclaim (about 31 years) all mean "never reclaim"; the cap only
	// keeps the Duration from overflowing.
	const maxReclaim = 1 << 50
	return time.Duration(min(n, maxReclaim)) * time.Millisecond, nil
}

// ParseStates parses the [ext] state filter of the work list: a comma-separated list of
// states. An empty filter means every state.
func ParseStates(s string) ([]State, error) {
	if s == "" {
		return nil, nil
	}
	var out []State
	seen := map[State]bool{}
	for _, part := range strings.Split(s, ",") {
		st := State(strings.TrimSpace(part))
		if !st.Valid() {
			return nil, invalid("state", "state must be a comma-separated list of queued, starting, active, stopping, stopped.")
		}
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	return out, nil
}
