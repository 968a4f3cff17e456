package work_test

// Fuzz targets for the validators and decoders of the work endpoints' parameters
// (expected_last_heartbeat, desired_ttl_seconds, block_ms, reclaim_older_than_ms, the
// state filter) and for metadata patches and their merge. Every target asserts: no panic;
// a refusal is a *work.Error of Kind Invalid naming the parameter; an accepted value
// satisfies what API.md documents for it; and it survives a round trip where one exists.
// Plain `go test` runs the seed corpora (testdata/fuzz/<target>/ and the f.Add seeds);
// `go test -run XXX -fuzz FuzzX` explores.

import (
	"encoding/json"
	"errors"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/work"
)

// fzInvalid asserts that err is a *work.Error of Kind Invalid whose Param is param (or,
// when param ends with ".", starts with it).
func fzInvalid(t *testing.T, what string, err error, param string) *work.Error {
	t.Helper()
	var e *work.Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: error %v (%T) is not a *work.Error", what, err, err)
	}
	if e.Kind != work.Invalid {
		t.Errorf("%s: Kind = %d, want Invalid", what, e.Kind)
	}
	ok := e.Param == param
	if strings.HasSuffix(param, ".") {
		ok = strings.HasPrefix(e.Param, param) || e.Param == strings.TrimSuffix(param, ".")
	}
	if !ok {
		t.Errorf("%s: Param = %q, want %q", what, e.Param, param)
	}
	if e.Message == "" || e.Error() == "" {
		t.Errorf("%s: empty message", what)
	}
	if e.Current != nil {
		t.Errorf("%s: an Invalid error carries a current item", what)
	}
	return e
}

// rfc3339 is the grammar of an RFC 3339 date-time as berth documents it (T and Z upper
// case, any number of fractional digits, offset Z or ±hh:mm); fzStrictRFC3339 adds the
// ranges the grammar leaves to prose.
var rfc3339 = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-](\d{2}):(\d{2}))$`)

// fzStrictRFC3339 reports whether s is a valid RFC 3339 timestamp: the grammar, a real
// calendar day, hour 00–23, minute and second 00–59 (leap seconds aside: berth never
// writes one), offset hours 00–23 and minutes 00–59.
func fzStrictRFC3339(s string) bool {
	m := rfc3339.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	y, mo, d := n(1), n(2), n(3)
	if mo < 1 || mo > 12 || d < 1 || d > time.Date(y, time.Month(mo)+1, 0, 0, 0, 0, 0, time.UTC).Day() {
		return false
	}
	if n(4) > 23 || n(5) > 59 || n(6) > 59 {
		return false
	}
	if m[9] != "" && (n(9) > 23 || n(10) > 59) {
		return false
	}
	return true
}

func FuzzParseExpectation(f *testing.F) {
	for _, s := range []string{
		"", "NO_HEARTBEAT", "no_heartbeat", "NO_HEARTBEAT ", " NO_HEARTBEAT",
		"2026-07-01T08:15:06.120394Z", "2026-07-01T08:15:06.120394+00:00", "2026-07-01T08:15:06.120394-00:00",
		"2026-07-01T10:15:06.120394+02:00", "2026-07-01T08:15:06.120394789Z", "2026-07-01T08:15:06Z",
		"2026-07-01T08:15:06.1234567891Z", "2026-07-01T08:15:06,120394Z", "2026-07-01t08:15:06z",
		"2026-07-01T08:15:06+24:00", "2026-07-01T08:15:60Z", "2026-02-30T08:15:06Z", "2026-07-01T8:15:06Z",
		"2026-07-01 08:15:06Z", "2026-07-01T08:15:06", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2026-07-01T08:15:06.120394Z\x00", "\xff", "null",
	} {
		f.Add(s, true)
	}
	f.Add("garbage", false)
	f.Fuzz(func(t *testing.T, s string, present bool) {
		exp, err := work.ParseExpectation(s, present)
		if !present {
			if err != nil || exp != work.AnyHeartbeat {
				t.Fatalf("absent: %v, %v; want the unconditional expectation", exp, err)
			}
			return
		}
		if err != nil {
			fzInvalid(t, "ParseExpectation("+strconv.Quote(s)+")", err, "expected_last_heartbeat")
			if s == work.NoHeartbeat || fzStrictRFC3339(s) {
				t.Errorf("ParseExpectation(%q) refused a valid value: %v", s, err)
			}
			return
		}
		if s == work.NoHeartbeat {
			if exp != work.ExpectNoHeartbeat || !exp.Matches(time.Time{}) || exp.Matches(time.Unix(0, 0)) {
				t.Errorf("NO_HEARTBEAT: %v", exp)
			}
			return
		}
		// Accepted as a timestamp: it denotes the instant time.Parse reads, compared to the
		// microsecond, and it never matches an item without heartbeat.
		at, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			t.Fatalf("ParseExpectation(%q) accepted what time.Parse refuses: %v", s, perr)
		}
		beat := work.Timestamp(at)
		if beat.IsZero() {
			// The zero instant (0001-01-01T00:00:00Z) stands for "no heartbeat" inside berth;
			// as an expectation it must match nothing, not even an item without heartbeat.
			if exp.Matches(time.Time{}) || exp.Matches(beat) {
				t.Errorf("ParseExpectation(%q) matches an item without heartbeat", s)
			}
			return
		}
		if !exp.Matches(beat) || !exp.Matches(beat.In(time.FixedZone("X", -7*3600))) {
			t.Errorf("ParseExpectation(%q) does not match its own instant %s", s, beat.Format(time.RFC3339Nano))
		}
		if exp.Matches(time.Time{}) || exp.Matches(beat.Add(time.Microsecond)) || exp.Matches(beat.Add(-time.Microsecond)) {
			t.Errorf("ParseExpectation(%q) matches another instant", s)
		}
		// Round trip: the instant written as berth writes timestamps (how a worker echoes
		// last_heartbeat) is accepted and matches the same heartbeats.
		if beat.Year() >= 0 && beat.Year() <= 9999 {
			echo := beat.Format(work.TimeLayout)
			exp2, err := work.ParseExpectation(echo, true)
			if err != nil || !exp2.Matches(beat) || exp2.Matches(beat.Add(time.Microsecond)) {
				t.Errorf("round trip %q → %q: %v", s, echo, err)
			}
		}
	})
}

// digits matches what a positive or zero integer without sign looks like.
var digits = regexp.MustCompile(`^[0-9]+$`)

func FuzzParseTTL(f *testing.F) {
	for _, s := range []string{"", "0", "1", "9", "10", "11", "60", "599", "600", "601", "86400", "-1", "+30",
		"1.5", "1e2", "0x10", " 30", "30 ", "٣٠", "00000000000000000000000000030", "18446744073709551615",
		"18446744073709551616", "99999999999999999999999999999", "-9223372036854775808", "1_000", "\x00"} {
		f.Add(s, true)
	}
	f.Add("abc", false)
	f.Fuzz(func(t *testing.T, s string, present bool) {
		ttl, err := work.ParseTTL(s, present)
		if !present {
			if err != nil || ttl != work.DefaultTTL {
				t.Fatalf("absent: %d, %v; want %d", ttl, err, work.DefaultTTL)
			}
			return
		}
		positive := digits.MatchString(strings.TrimLeft(s, "0")) // a positive integer
		if err != nil {
			fzInvalid(t, "ParseTTL("+strconv.Quote(s)+")", err, "desired_ttl_seconds")
			if positive {
				t.Errorf("ParseTTL(%q) refused a positive integer", s)
			}
			return
		}
		if !positive {
			t.Errorf("ParseTTL(%q) = %d, accepted what is not a positive integer", s, ttl)
		}
		if ttl < work.MinTTL || ttl > work.MaxTTL {
			t.Errorf("ParseTTL(%q) = %d, outside [%d, %d]", s, ttl, work.MinTTL, work.MaxTTL)
		}
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= work.MinTTL && n <= work.MaxTTL && uint64(ttl) != n {
			t.Errorf("ParseTTL(%q) = %d, want it unclamped", s, ttl)
		}
		// Round trip: the clamped value is accepted as it is.
		if again, err := work.ParseTTL(strconv.Itoa(ttl), true); err != nil || again != ttl {
			t.Errorf("ParseTTL(%d) = %d, %v", ttl, again, err)
		}
	})
}

func FuzzParseBlock(f *testing.F) {
	for _, s := range []string{"", "0", "1", "500", "999", "1000", "-1", "+5", "005", "1.0", "1e2", " 1", "0x1",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "\xff"} {
		f.Add(s, true)
	}
	f.Add("x", false)
	f.Fuzz(func(t *testing.T, s string, present bool) {
		d, err := work.ParseBlock(s, present)
		if !present {
			if err != nil || d != 0 {
				t.Fatalf("absent: %v, %v; want no wait", d, err)
			}
			return
		}
		n, aerr := strconv.Atoi(s)
		inRange := digits.MatchString(s) && aerr == nil && n >= 1 && n <= 999
		if err != nil {
			fzInvalid(t, "ParseBlock("+strconv.Quote(s)+")", err, "block_ms")
			if digits.MatchString(s) && inRange {
				t.Errorf("ParseBlock(%q) refused an integer from 1 to 999", s)
			}
			return
		}
		if !inRange || d != time.Duration(n)*time.Millisecond {
			t.Errorf("ParseBlock(%q) = %v, want an integer from 1 to 999 ms", s, d)
		}
		if d%time.Millisecond != 0 || d < time.Millisecond || d > 999*time.Millisecond {
			t.Errorf("ParseBlock(%q) = %v", s, d)
		}
		if again, err := work.ParseBlock(strconv.Itoa(int(d/time.Millisecond)), true); err != nil || again != d {
			t.Errorf("round trip of %v: %v, %v", d, again, err)
		}
	})
}

func FuzzParseReclaim(f *testing.F) {
	for _, s := range []string{"", "0", "1", "5000", "-1", "+1", "1.5", "1e3", " 0", "00", "1125899906842624",
		"1125899906842625", "18446744073709551615", "18446744073709551616", "999999999999999999999999999999", "\x00"} {
		f.Add(s, true)
	}
	f.Add("x", false)
	f.Fuzz(func(t *testing.T, s string, present bool) {
		d, err := work.ParseReclaim(s, present)
		if !present {
			if err != nil || d != work.DefaultReclaim {
				t.Fatalf("absent: %v, %v; want %v", d, err, work.DefaultReclaim)
			}
			return
		}
		if err != nil {
			fzInvalid(t, "ParseReclaim("+strconv.Quote(s)+")", err, "reclaim_older_than_ms")
			if digits.MatchString(s) {
				t.Errorf("ParseReclaim(%q) refused a non-negative integer", s)
			}
			return
		}
		if !digits.MatchString(s) {
			t.Errorf("ParseReclaim(%q) = %v, accepted what is not a non-negative integer", s, d)
		}
		if d < 0 {
			t.Fatalf("ParseReclaim(%q) = %v: negative (overflow)", s, d)
		}
		// A window that a Duration holds is exact; a longer one (beyond about 292 years)
		// must still mean "never reclaim": at least ten years, never a short or negative
		// window made by an overflow.
		const maxMillis = uint64(math.MaxInt64 / int64(time.Millisecond))
		n, perr := strconv.ParseUint(s, 10, 64)
		switch {
		case perr == nil && n <= maxMillis:
			if d != time.Duration(n)*time.Millisecond {
				t.Errorf("ParseReclaim(%q) = %v, want %d ms", s, d, n)
			}
			again, err := work.ParseReclaim(strconv.FormatInt(int64(d/time.Millisecond), 10), true)
			if err != nil || again != d {
				t.Errorf("round trip of %v: %v, %v", d, again, err)
			}
		case d < 10*365*24*time.Hour:
			t.Errorf("ParseReclaim(%q) = %v: a window beyond a Duration's range must not become a short one", s, d)
		}
	})
}

func FuzzParseStates(f *testing.F) {
	for _, s := range []string{"", "queued", "queued,stopped", " queued , active ", "queued,queued", "QUEUED",
		",", "queued,", "queued,,active", "queued,starting,active,stopping,stopped", "stopped,queued", "nope", "\x00",
		"queued\u00a0", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		states, err := work.ParseStates(s)
		if err != nil {
			fzInvalid(t, "ParseStates("+strconv.Quote(s)+")", err, "state")
			valid := s != ""
			for _, part := range strings.Split(s, ",") {
				valid = valid && work.State(strings.TrimSpace(part)).Valid()
			}
			if valid {
				t.Errorf("ParseStates(%q) refused a list of states", s)
			}
			return
		}
		if s == "" {
			if states != nil {
				t.Errorf("ParseStates(\"\") = %v, want every state (nil)", states)
			}
			return
		}
		if len(states) == 0 || len(states) > len(work.States) {
			t.Fatalf("ParseStates(%q) = %v", s, states)
		}
		seen := map[work.State]bool{}
		for _, st := range states {
			if !st.Valid() || seen[st] {
				t.Errorf("ParseStates(%q) = %v: invalid or repeated %q", s, states, st)
			}
			seen[st] = true
		}
		// Every part names one of the states, and every state named is in the answer.
		for _, part := range strings.Split(s, ",") {
			if st := work.State(strings.TrimSpace(part)); !seen[st] {
				t.Errorf("ParseStates(%q) = %v lacks %q", s, states, part)
			}
		}
		joined := make([]string, len(states))
		for i, st := range states {
			joined[i] = string(st)
		}
		again, err := work.ParseStates(strings.Join(joined, ","))
		if err != nil || !slices.Equal(again, states) {
			t.Errorf("round trip of %v: %v, %v", states, again, err)
		}
	})
}

func FuzzParsePatchAndMerge(f *testing.F) {
	seeds := [][2]string{
		{`{}`, `{}`},
		{`{"a":"1"}`, `{"a":null,"b":"2"}`},
		{``, ``},
		{`null`, `null`},
		{`{"a":"1","a":"2"}`, `{"b":"x","b":null}`},
		{`{"a":1}`, `{"a":true}`},
		{`{"":"x"}`, `{"k":["x"]}`},
		{`{"a":{"b":"c"}}`, `[]`},
		{`{"k1":"v","k2":"v","k3":"v","k4":"v","k5":"v","k6":"v","k7":"v","k8":"v","k9":"v","k10":"v","k11":"v","k12":"v","k13":"v","k14":"v","k15":"v","k16":"v"}`, `{"k17":"v"}`},
		{`{"k1":"v","k2":"v","k3":"v","k4":"v","k5":"v","k6":"v","k7":"v","k8":"v","k9":"v","k10":"v","k11":"v","k12":"v","k13":"v","k14":"v","k15":"v","k16":"v"}`, `{"k17":"v","k1":null}`},
		{`{"a":"\u0000"}`, `{"\u0000":"x"}`},
		{`{"a":"` + strings.Repeat("é", 512) + `"}`, `{"a":"` + strings.Repeat("é", 513) + `"}`},
		{`{"` + strings.Repeat("ķ", 64) + `":"v"}`, `{"` + strings.Repeat("k", 65) + `":"v"}`},
		{"{\"a\":\"\xff\"}", "{\"\xff\":\"x\"}"},
		{`{"a":"1"} `, ` {"a":"1"}garbage`},
		{`{"a":"1"}{}`, `"{}"`},
		{`{"a":1e999}`, `{"a":123456789012345678901234567890}`},
		{`{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`, `{"a":{"b":{"c":{"d":{}}}}}`},
		{`{"a":"\ud800"}`, `{"\ud83d\ude00":"\ud83d\ude00"}`},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, rawBase, rawPatch []byte) {
		// The base is what an object holds: a valid patch merged into nothing.
		bp, err := work.ParsePatch(rawBase, "metadata")
		if err != nil {
			fzInvalid(t, "ParsePatch(base)", err, "metadata.")
		}
		fzCheckPatch(t, rawBase, bp, err)
		base, err := work.Merge(nil, bp, "metadata")
		if err != nil {
			fzInvalid(t, "Merge(base)", err, "metadata")
			base = work.Metadata{}
		}
		fzCheckMetadata(t, base)

		p, err := work.ParsePatch(rawPatch, "metadata")
		fzCheckPatch(t, rawPatch, p, err)
		if err != nil {
			fzInvalid(t, "ParsePatch(patch)", err, "metadata.")
			return
		}
		before := base.Clone()
		merged, err := work.Merge(base, p, "metadata")
		if !maps.Equal(base, before) {
			t.Fatalf("Merge modified its input: %v, was %v", base, before)
		}
		// What the merge must give: upserts, deletions, the rest untouched.
		want := base.Clone()
		for k, v := range p {
			if v == nil {
				delete(want, k)
			} else {
				want[k] = *v
			}
		}
		// A work item's merge differs only in its limit.
		if mw, werr := work.MergeWork(base, p, "metadata"); werr != nil {
			fzInvalid(t, "MergeWork", werr, "metadata")
			if len(want) <= work.MaxWorkMetadataKeys {
				t.Errorf("MergeWork refused a result of %d keys: %v", len(want), werr)
			}
		} else if len(want) > work.MaxWorkMetadataKeys || !maps.Equal(mw, want) {
			t.Errorf("MergeWork(%v, %s) = %v, want %v", base, rawPatch, mw, want)
		}
		if err != nil {
			fzInvalid(t, "Merge", err, "metadata")
			if len(want) <= work.MaxMetadataKeys {
				t.Errorf("Merge refused a result of %d keys: %v", len(want), err)
			}
			return
		}
		if !maps.Equal(merged, want) {
			t.Errorf("Merge(%v, %s) = %v, want %v", base, rawPatch, merged, want)
		}
		fzCheckMetadata(t, merged)
		// Merging the same patch again changes nothing.
		if again, err := work.Merge(merged, p, "metadata"); err != nil || !maps.Equal(again, merged) {
			t.Errorf("Merge is not idempotent: %v, %v", again, err)
		}
	})
}

// fzCheckPatch checks a ParsePatch result: an accepted patch has valid keys and values,
// and survives a round trip through JSON; a body that is an object of strings and nulls
// within the limits is accepted.
func fzCheckPatch(t *testing.T, raw []byte, p work.Patch, err error) {
	t.Helper()
	if err != nil {
		// Refused: then the body is not a valid patch by API.md's rules.
		var obj map[string]*string
		trimmed := strings.TrimSpace(string(raw))
		if trimmed == "" || trimmed == "null" {
			t.Errorf("ParsePatch(%q) refused an empty patch: %v", raw, err)
			return
		}
		if strings.HasPrefix(trimmed, "{") && json.Unmarshal(raw, &obj) == nil {
			ok := true
			for k, v := range obj {
				n := utf8.RuneCountInString(k)
				ok = ok && n >= 1 && n <= work.MaxMetadataKeyLen &&
					(v == nil || utf8.RuneCountInString(*v) <= work.MaxMetadataValueLen)
			}
			if ok {
				t.Errorf("ParsePatch(%q) refused a valid patch: %v", raw, err)
			}
		}
		return
	}
	for k, v := range p {
		if n := utf8.RuneCountInString(k); n < 1 || n > work.MaxMetadataKeyLen {
			t.Errorf("ParsePatch(%q) accepted key %q of %d characters", raw, k, n)
		}
		if v != nil && utf8.RuneCountInString(*v) > work.MaxMetadataValueLen {
			t.Errorf("ParsePatch(%q) accepted a value of %d characters", raw, utf8.RuneCountInString(*v))
		}
	}
	if len(p) > 0 {
		b, err := json.Marshal(map[string]*string(p))
		if err != nil {
			t.Fatalf("marshal patch: %v", err)
		}
		again, err := work.ParsePatch(b, "metadata")
		if err != nil || len(again) != len(p) {
			t.Fatalf("round trip of %s: %v, %v", b, again, err)
		}
		for k, v := range p {
			w, ok := again[k]
			if !ok || (v == nil) != (w == nil) || (v != nil && *v != *w) {
				t.Errorf("round trip of %s: key %q differs", b, k)
			}
		}
	}
}

// fzCheckMetadata asserts API.md §1's metadata limits.
func fzCheckMetadata(t *testing.T, m work.Metadata) {
	t.Helper()
	if len(m) > work.MaxMetadataKeys {
		t.Errorf("metadata of %d keys", len(m))
	}
	for k, v := range m {
		if n := utf8.RuneCountInString(k); n < 1 || n > work.MaxMetadataKeyLen {
			t.Errorf("metadata key %q of %d characters", k, n)
		}
		if n := utf8.RuneCountInString(v); n > work.MaxMetadataValueLen {
			t.Errorf("metadata value of %d characters", n)
		}
	}
}
