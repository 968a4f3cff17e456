package id

import (
	"strings"
	"testing"
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
