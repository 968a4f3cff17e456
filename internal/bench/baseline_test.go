package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/api"
)

// The baseline answers what the fleet asks as berth does (an empty poll is the four
// bytes null, the stats count the Worker-IDs that polled) and refuses a block_ms the
// API refuses.
func TestBaselineAnswers(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(NewBaseline())
	defer srv.Close()
	get := func(path string, hdr ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, string(b)
	}
	env := api.BasePath + "/environments/" + baselineEnv
	for _, w := range []string{"a", "b", "a"} {
		if code, body := get(env+"/work/poll?block_ms=1", "Worker-ID", w); code != 200 || body != "null" {
			t.Fatalf("poll: %d %q, want 200 null", code, body)
		}
	}
	if code, body := get(env + "/work/poll"); code != 200 || body != "null" {
		t.Fatalf("poll without block_ms: %d %q, want 200 null", code, body)
	}
	for _, q := range []string{"?block_ms=x", "?block_ms=0", "?block_ms=1000", "?block_ms=-1"} {
		if code, _ := get(env + "/work/poll" + q); code != 400 {
			t.Errorf("poll%s: %d, want 400", q, code)
		}
	}
	if code, body := get(env + "/work/stats"); code != 200 || !strings.Contains(body, `"workers_polling":2}`) {
		t.Errorf("stats: %d %s, want 2 workers polling", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "\ngo_goroutines ") || !strings.Contains(body, "\nberth_work_pollers_parked 0\n") {
		t.Errorf("metrics: %d, missing the runtime or the parked polls:\n%.400s", code, body)
	}
}
