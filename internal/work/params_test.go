package work_test

import (
	"slices"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// TestParseTTL checks desired_ttl_seconds (API.md §4.7): a positive integer (else 400),
// clamped to [10, 600], default 60.
func TestParseTTL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		present bool
		want    int
		wantErr bool
	}{
		{"absent", "", false, 60, false},
		{"absent ignores the value", "abc", false, 60, false},
		{"30", "30", true, 30, false},
		{"60", "60", true, 60, false},
		{"10", "10", true, 10, false},
		{"600", "600", true, 600, false},
		{"1 clamps to 10", "1", true, 10, false},
		{"5 clamps to 10", "5", true, 10, false},
		{"9 clamps to 10", "9", true, 10, false},
		{"11", "11", true, 11, false},
		{"599", "599", true, 599, false},
		{"601 clamps to 600", "601", true, 600, false},
		{"86400 clamps to 600", "86400", true, 600, false},
		{"0", "0", true, 0, true},
		{"-1", "-1", true, 0, true},
		{"-600", "-600", true, 0, true},
		{"abc", "abc", true, 0, true},
		{"1.5", "1.5", true, 0, true},
		{"30.0", "30.0", true, 0, true},
		{"1e2", "1e2", true, 0, true},
		{"empty", "", true, 0, true},
		{"0x10", "0x10", true, 0, true},
		{"int64 min", "-9223372036854775808", true, 0, true},
		{"beyond int64 negative", "-99999999999999999999999", true, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseTTL(tc.in, tc.present)
			if tc.wantErr {
				checkInvalid(t, err, "desired_ttl_seconds")
				return
			}
			if err != nil {
				t.Fatalf("ParseTTL(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseTTL(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}

	// Huge positive integers clamp to 600 or are rejected with the param; never a panic
	// nor a value outside [10, 600].
	for _, in := range []string{"2147483648", "4294967297", "9223372036854775807", "9223372036854775808",
		"99999999999999999999999999999999999999"} {
		t.Run("huge "+in, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseTTL(in, true)
			if err != nil {
				checkInvalid(t, err, "desired_ttl_seconds")
				return
			}
			if got != 600 {
				t.Errorf("ParseTTL(%q) = %d, want 600 or an error", in, got)
			}
		})
	}
}

// TestParseBlock checks block_ms (API.md §4.2): integer 1–999; absent = answer at once.
func TestParseBlock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		present bool
		want    time.Duration
		wantErr bool
	}{
		{"absent", "", false, 0, false},
		{"1", "1", true, time.Millisecond, false},
		{"500", "500", true, 500 * time.Millisecond, false},
		{"999", "999", true, 999 * time.Millisecond, false},
		{"0", "0", true, 0, true},
		{"1000", "1000", true, 0, true},
		{"-1", "-1", true, 0, true},
		{"x", "x", true, 0, true},
		{"empty", "", true, 0, true},
		{"1.5", "1.5", true, 0, true},
		{"huge", "99999999999999999999999", true, 0, true},
		{"huge negative", "-99999999999999999999999", true, 0, true},
		{"leading zeros", "005", true, 5 * time.Millisecond, false},
		{"plus sign", "+5", true, 0, true},
		{"plus sign 999", "+999", true, 0, true},
		{"minus zero", "-0", true, 0, true},
		{"leading space", " 5", true, 0, true},
		{"trailing space", "5 ", true, 0, true},
		{"underscore", "1_0", true, 0, true},
		{"hex", "0x1", true, 0, true},
		{"exponent", "1e2", true, 0, true},
		{"full-width digit", "５", true, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseBlock(tc.in, tc.present)
			if tc.wantErr {
				checkInvalid(t, err, "block_ms")
				return
			}
			if err != nil {
				t.Fatalf("ParseBlock(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseBlock(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestParseReclaim checks reclaim_older_than_ms (API.md §4.2): integer ≥ 0, default 5000.
func TestParseReclaim(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		present bool
		want    time.Duration
		wantErr bool
	}{
		{"absent", "", false, 5 * time.Second, false},
		{"0", "0", true, 0, false},
		{"1", "1", true, time.Millisecond, false},
		{"5000", "5000", true, 5 * time.Second, false},
		{"60000", "60000", true, time.Minute, false},
		{"one day", "86400000", true, 24 * time.Hour, false},
		{"-1", "-1", true, 0, true},
		{"-5000", "-5000", true, 0, true},
		{"1.5", "1.5", true, 0, true},
		{"abc", "abc", true, 0, true},
		{"empty", "", true, 0, true},
		{"huge negative", "-99999999999999999999999", true, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseReclaim(tc.in, tc.present)
			if tc.wantErr {
				checkInvalid(t, err, "reclaim_older_than_ms")
				return
			}
			if err != nil {
				t.Fatalf("ParseReclaim(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseReclaim(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}

	// Integers too large for a Duration must not panic nor wrap around to a short or
	// negative window.
	for _, in := range []string{"9223372036854775807", "99999999999999999999999"} {
		t.Run("huge "+in, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseReclaim(in, true)
			if err != nil {
				checkInvalid(t, err, "reclaim_older_than_ms")
				return
			}
			if got < 24*time.Hour {
				t.Errorf("ParseReclaim(%q) = %s, want an error or a window of at least a day", in, got)
			}
		})
	}
}

// TestParseReclaimLargeWindow: API.md §4.2 allows any integer ≥ 0; 3 000 000 000 ms (about
// 35 days) fits a Duration easily.
func TestParseReclaimLargeWindow(t *testing.T) {
	t.Parallel()
	got, err := work.ParseReclaim("3000000000", true)
	if err != nil {
		t.Fatalf("ParseReclaim(3000000000): %v", err)
	}
	if want := 3000000000 * time.Millisecond; got != want {
		t.Errorf("ParseReclaim(3000000000) = %s, want %s", got, want)
	}
}

// TestParseExpectation checks expected_last_heartbeat (API.md §4.7): NO_HEARTBEAT, an RFC
// 3339 timestamp with any offset matched to the microsecond, or absent (unconditional);
// anything else → 400.
func TestParseExpectation(t *testing.T) {
	t.Parallel()
	l := lastBeat // 2026-07-01T08:15:06.120394Z
	var none time.Time
	tests := []struct {
		name    string
		in      string
		present bool
		match   []time.Time // latest heartbeats it must match
		nomatch []time.Time // and must not
	}{
		{"absent", "", false, []time.Time{none, l, l.Add(us)}, nil},
		{"NO_HEARTBEAT", "NO_HEARTBEAT", true, []time.Time{none}, []time.Time{l, createdAt}},
		{"Z", "2026-07-01T08:15:06.120394Z", true, []time.Time{l}, []time.Time{none, l.Add(us), l.Add(-us)}},
		{"+00:00", "2026-07-01T08:15:06.120394+00:00", true, []time.Time{l}, []time.Time{none, l.Add(us), l.Add(-us)}},
		{"-00:00", "2026-07-01T08:15:06.120394-00:00", true, []time.Time{l}, []time.Time{none, l.Add(us)}},
		{"+02:00", "2026-07-01T10:15:06.120394+02:00", true, []time.Time{l}, []time.Time{none, l.Add(us), l.Add(2 * time.Hour)}},
		{"-07:00 across midnight", "2026-07-01T01:15:06.120394-07:00", true, []time.Time{l}, []time.Time{none, l.Add(-us)}},
		{"+14:00 next day", "2026-07-01T22:15:06.120394+14:00", true, []time.Time{l}, []time.Time{none}},
		{"trailing zeros", "2026-07-01T08:15:06.120394000Z", true, []time.Time{l}, []time.Time{l.Add(us)}},
		{"millisecond", "2026-07-01T08:15:06.12Z", true, []time.Time{time.Date(2026, 7, 1, 8, 15, 6, 120000000, time.UTC)}, []time.Time{l}},
		{"whole second", "2026-07-01T08:15:06Z", true, []time.Time{time.Date(2026, 7, 1, 8, 15, 6, 0, time.UTC)}, []time.Time{l, none}},
		{"matches a non-UTC latest of the same instant", "2026-07-01T08:15:06.120394Z", true,
			[]time.Time{l.In(time.FixedZone("X", 5*3600))}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exp, err := work.ParseExpectation(tc.in, tc.present)
			if err != nil {
				t.Fatalf("ParseExpectation(%q): %v", tc.in, err)
			}
			for _, m := range tc.match {
				if !exp.Matches(m) {
					t.Errorf("%q does not match latest heartbeat %s", tc.in, fmtTime(m))
				}
			}
			for _, m := range tc.nomatch {
				if exp.Matches(m) {
					t.Errorf("%q matches latest heartbeat %s", tc.in, fmtTime(m))
				}
			}
		})
	}

	for _, in := range []string{
		"", "no_heartbeat", "NO_HEARTBEAT ", " NO_HEARTBEAT", "NONE", "null", "garbage",
		"2026-07-01", "2026-07-01T08:15:06", "2026-07-01T08:15:06.120394",
		"2026-07-01 08:15:06.120394Z", "2026-13-01T08:15:06Z", "2026-07-01T25:15:06Z",
		"2026-07-01T08:15:06.120394+0000", "1751357706", "Wed, 01 Jul 2026 08:15:06 GMT",
	} {
		t.Run("invalid "+in, func(t *testing.T) {
			t.Parallel()
			_, err := work.ParseExpectation(in, true)
			checkInvalid(t, err, "expected_last_heartbeat")
		})
	}
}

// TestParseStates checks the [ext] state filter of the work list (API.md §4.1).
func TestParseStates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []work.State // nil: every state
	}{
		{"", nil},
		{"queued", []work.State{work.Queued}},
		{"starting", []work.State{work.Starting}},
		{"active", []work.State{work.Active}},
		{"stopping", []work.State{work.Stopping}},
		{"stopped", []work.State{work.Stopped}},
		{"queued,active", []work.State{work.Queued, work.Active}},
		{"stopped,queued", []work.State{work.Stopped, work.Queued}},
		{"queued,starting,active,stopping,stopped", []work.State{work.Queued, work.Starting, work.Active, work.Stopping, work.Stopped}},
		{"queued,queued", []work.State{work.Queued}},
	}
	for _, tc := range tests {
		t.Run("valid "+tc.in, func(t *testing.T) {
			t.Parallel()
			got, err := work.ParseStates(tc.in)
			if err != nil {
				t.Fatalf("ParseStates(%q): %v", tc.in, err)
			}
			if tc.want == nil {
				if len(got) != 0 {
					t.Errorf("ParseStates(%q) = %v, want no filter", tc.in, got)
				}
				return
			}
			a, b := slices.Clone(got), slices.Clone(tc.want)
			slices.Sort(a)
			slices.Sort(b)
			if !slices.Equal(a, b) {
				t.Errorf("ParseStates(%q) = %v, want the states %v, each once", tc.in, got, tc.want)
			}
		})
	}
	for _, in := range []string{"bogus", "running", "QUEUED", "queued,bogus", "queued,", ",queued", "queued,,active", ","} {
		t.Run("invalid "+in, func(t *testing.T) {
			t.Parallel()
			_, err := work.ParseStates(in)
			checkInvalid(t, err, "state")
		})
	}
}
