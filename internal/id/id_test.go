package id

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNewIsValidAndStrictlyIncreasing(t *testing.T) {
	t.Parallel()
	prev := ""
	for i := 0; i < 20000; i++ {
		s := New(Work)
		if !Valid(Work, s) {
			t.Fatalf("New made an invalid ID %q", s)
		}
		if s <= prev {
			t.Fatalf("ID %q is not greater than the one before it, %q", s, prev)
		}
		prev = s
	}
}

func TestValid(t *testing.T) {
	t.Parallel()
	good := "work_019f3be4fd2475d9a784bf2c739e1194"
	cases := []struct {
		prefix, s string
		want      bool
	}{
		{Work, good, true},
		{Environment, good, false},
		{Work, strings.ToUpper(good[:5]) + good[5:], false},
		{Work, "work_019F3BE4FD2475D9A784BF2C739E1194", false},
		{Work, good + "0", false},
		{Work, good[:len(good)-1], false},
		{Work, "work_019f3be4fd2475d9a784bf2c739e119g", false},
		{Work, "work019f3be4fd2475d9a784bf2c739e11940", false},
		{Work, "", false},
		{Work, "segment /?%#", false},
	}
	for _, c := range cases {
		if got := Valid(c.prefix, c.s); got != c.want {
			t.Errorf("Valid(%q, %q) = %v, want %v", c.prefix, c.s, got, c.want)
		}
	}
}

// IDs stay increasing when the clock steps back, and across an observed floor; the
// version and variant bits survive every increment, carries included.
func TestGeneratorFloorAndClockSteps(t *testing.T) {
	t.Parallel()
	clock := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	g := &Generator{now: func() time.Time { return clock }}
	check := func(s, prev string) {
		t.Helper()
		if !Valid(Work, s) {
			t.Fatalf("invalid ID %q", s)
		}
		if s <= prev {
			t.Fatalf("ID %q is not above %q", s, prev)
		}
		raw, _ := hex.DecodeString(s[len("work_"):])
		if raw[6]>>4 != 7 || raw[8]>>6 != 2 {
			t.Fatalf("ID %q lost its version or variant", s)
		}
	}
	prev := g.New(Work)
	for i := range 5000 {
		if i%100 == 0 {
			clock = clock.Add(-time.Second) // the clock steps back
		}
		s := g.New(Work)
		check(s, prev)
		prev = s
	}
	// A floor far ahead (another replica's clock is ahead): the next IDs are above it.
	ahead := Generator{now: func() time.Time { return clock.Add(time.Hour) }}
	floor := ahead.New(Session)
	g.Observe(floor)
	s := g.New(Work)
	if s[len("work_"):] <= floor[len("sess_"):] {
		t.Fatalf("ID %s is not above the observed %s", s, floor)
	}
	// A floor at the very end of a millisecond's counter carries into the next
	// millisecond.
	g.Observe("work_" + fmt.Sprintf("%012x", uint64(clock.Add(2*time.Hour).UnixMilli())) + "7fffbfffffffffffffff")
	last := "work_" + fmt.Sprintf("%012x", uint64(clock.Add(2*time.Hour).UnixMilli())) + "7fffbfffffffffffffff"
	s = g.New(Work)
	check(s, last)
	// Observing something that is not an ID changes nothing.
	g.Observe("nonsense")
	g.Observe("work_zz")
	check(g.New(Work), s)
}
