package api_test

import (
	"testing"
)

// An integer query parameter is plain digits: a leading "+" (sent escaped as %2B; a bare
// "+" in a query is a space) is refused with 400 naming the parameter, block_ms like the
// others.
func TestIntegerParametersRefuseASign(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	item := "work_00000000000000000000000000000001"
	cases := []struct{ method, path, param string }{
		{"GET", "/environments/" + env + "/work/poll?block_ms=", "block_ms"},
		{"GET", "/environments/" + env + "/work/poll?reclaim_older_than_ms=", "reclaim_older_than_ms"},
		{"POST", workPath(env, item, "/heartbeat") + "?desired_ttl_seconds=", "desired_ttl_seconds"},
		{"GET", "/environments?limit=", "limit"},
	}
	for _, c := range cases {
		for _, v := range []string{"%2B5", "+5", "%2B999", "%205", "5%20"} {
			r := h.do(c.method, c.path+v, "")
			wantError(t, r, 400, "invalid_request_error", c.param)
		}
		// Plain digits are fine.
		if r := h.do(c.method, c.path+"5", ""); r.Status == 400 {
			t.Errorf("%s %s5: %s", c.method, c.path, r.Body)
		}
	}
}
