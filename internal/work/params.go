package work

import (
	"errors"
	"math"
	"regexp"
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
	t, ok := parseRFC3339(s)
	if !ok {
		return Expectation{}, invalid("expected_last_heartbeat",
			"expected_last_heartbeat must be %s or an RFC 3339 timestamp.", NoHeartbeat)
	}
	return ExpectHeartbeatAt(t), nil
}

// rfc3339 is the grammar of RFC 3339's date-time, with the upper-case T and Z that berth
// writes (RFC 3339 also allows lower case; Go's parser does not, and no client echoes
// one). Go's time.Parse alone is more lenient elsewhere: a comma for the decimal point, a
// one-digit hour, offsets like +24:00.
var rfc3339 = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$`)

func parseRFC3339(s string) (time.Time, bool) {
	if !rfc3339.MatchString(s) {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// digits reports whether s is a non-empty run of ASCII digits: the one form of a
// non-negative integer a query parameter may take (no sign, no space, nothing after).
func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseTTL parses desired_ttl_seconds; present is false when the query did not carry it.
// It must be a positive integer and is clamped to [MinTTL, MaxTTL]; absent means
// DefaultTTL.
func ParseTTL(s string, present bool) (int, error) {
	if !present {
		return DefaultTTL, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if !digits(s) || (err != nil && !errors.Is(err, strconv.ErrRange)) || n == 0 && err == nil {
		return 0, invalid("desired_ttl_seconds", "desired_ttl_seconds must be a positive integer.")
	}
	if err != nil {
		return MaxTTL, nil // a positive integer too large for 64 bits is still clamped
	}
	return int(min(max(n, MinTTL), MaxTTL)), nil
}

// ParseBlock parses a poll's block_ms: absent means no wait; otherwise an integer from 1
// to 999, written in plain digits like every integer parameter (no sign, no space).
func ParseBlock(s string, present bool) (time.Duration, error) {
	if !present {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if !digits(s) || err != nil || n < 1 || n > 999 {
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
	if !digits(s) || (err != nil && !errors.Is(err, strconv.ErrRange)) {
		return 0, invalid("reclaim_older_than_ms", "reclaim_older_than_ms must be a non-negative integer.")
	}
	// Windows beyond what a Duration holds (about 292 years) all mean "never reclaim";
	// the cap keeps the multiplication from overflowing into a short or negative window.
	const maxMillis = uint64(math.MaxInt64 / int64(time.Millisecond))
	if err != nil || n > maxMillis {
		n = maxMillis
	}
	return time.Duration(n) * time.Millisecond, nil
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
