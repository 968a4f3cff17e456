package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

func TestGETRetriedOnServerFailures(t *testing.T) {
	t.Parallel()
	for _, status := range []int{408, 429, 500, 502, 503, 504} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			s := newScript(t, failing(2, status, envJSON))
			env, err := s.client().GetEnvironment(t.Context(), "env_1", client.WithHeader("X-Trace", "t-1"))
			if err != nil || env.ID != "env_1" {
				t.Fatalf("get %+v %v", env, err)
			}
			if n := s.attempts(); n != 3 {
				t.Fatalf("%d attempts, want 3", n)
			}
			sameRequests(t, s.requests())
		})
	}
}

func TestRetriesGiveUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts     []client.Option
		attempts int
	}{
		{nil, 3},
		{[]client.Option{client.WithMaxRetries(0)}, 1},
		{[]client.Option{client.WithMaxRetries(4)}, 5},
	} {
		t.Run(fmt.Sprint(tc.attempts), func(t *testing.T) {
			t.Parallel()
			s := newScript(t, failing(100, 503, ""))
			_, err := s.client(tc.opts...).ListWork(t.Context(), "env_1", client.ListWorkParams{})
			apiError(t, err, 503, "api_error")
			if n := s.attempts(); n != tc.attempts {
				t.Fatalf("%d attempts, want %d", n, tc.attempts)
			}
		})
	}
}

func TestNeverRetriedOnOther4xx(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 403, 404, 409, 412, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			s := newScript(t, failing(100, status, ""))
			c := s.client()
			_, err := c.GetWork(t.Context(), "env_1", "work_1")
			apiError(t, err, status, "api_error")
			// Nor a POST whose key would make a retry safe: a 4xx would come back the same.
			_, err = c.HeartbeatWork(t.Context(), "env_1", "work_1", client.HeartbeatParams{}, client.WithIdempotencyKey("k"))
			apiError(t, err, status, "api_error")
			if n := s.attempts(); n != 2 {
				t.Fatalf("%d attempts, want 1 per call", n)
			}
		})
	}
}

func TestPOSTWithoutKeyNeverRetried(t *testing.T) {
	t.Parallel()
	calls := map[string]func(context.Context, *client.Client) error{
		"create": func(ctx context.Context, c *client.Client) error {
			_, err := c.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "x"})
			return err
		},
		"ack": func(ctx context.Context, c *client.Client) error {
			_, err := c.AckWork(ctx, "env_1", "work_1", client.AckParams{})
			return err
		},
		"heartbeat": func(ctx context.Context, c *client.Client) error {
			_, err := c.HeartbeatWork(ctx, "env_1", "work_1", client.HeartbeatParams{})
			return err
		},
		"stop": func(ctx context.Context, c *client.Client) error {
			_, err := c.StopWork(ctx, "env_1", "work_1", false)
			return err
		},
		"delete": func(ctx context.Context, c *client.Client) error {
			_, err := c.DeleteSession(ctx, "sess_1")
			return err
		},
	}
	for name, call := range calls {
		for _, status := range []int{429, 500, 503} {
			t.Run(fmt.Sprint(name, status), func(t *testing.T) {
				t.Parallel()
				s := newScript(t, failing(100, status, ""))
				apiError(t, call(t.Context(), s.client()), status, "api_error")
				if n := s.attempts(); n != 1 {
					t.Fatalf("%d attempts, want 1", n)
				}
			})
		}
		t.Run(name+" reset", func(t *testing.T) {
			t.Parallel()
			s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) { resetConnection(t, w) })
			err := call(t.Context(), s.client())
			var apiErr *client.Error
			if err == nil || errors.As(err, &apiErr) {
				t.Fatalf("err = %v, want a transport error", err)
			}
			if n := s.attempts(); n != 1 {
				t.Fatalf("%d attempts, want 1", n)
			}
		})
	}
}

func TestKeyedRetriesSendTheSameRequest(t *testing.T) {
	t.Parallel()
	s := newScript(t, failing(2, 503, envJSON))
	env, err := s.client().CreateEnvironment(t.Context(),
		client.CreateEnvironmentParams{Name: "n", Metadata: map[string]string{"a": "b"}, Config: client.SelfHostedConfig("make")},
		client.WithIdempotencyKey("key-1"), client.WithHeader("X-Trace", "t-1"))
	if err != nil || env.ID != "env_1" {
		t.Fatalf("create %+v %v", env, err)
	}
	reqs := s.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d attempts, want 3", len(reqs))
	}
	if len(reqs[0].Body) == 0 || reqs[0].Header.Get("Idempotency-Key") != "key-1" {
		t.Fatalf("first attempt %+v", reqs[0])
	}
	sameRequests(t, reqs)

	// DELETE too.
	s = newScript(t, failing(1, 500, `{"id":"sess_1","type":"session_deleted"}`))
	if _, err := s.client().DeleteSession(t.Context(), "sess_1", client.WithIdempotencyKey("key-2")); err != nil {
		t.Fatal(err)
	}
	if n := s.attempts(); n != 2 {
		t.Fatalf("delete: %d attempts, want 2", n)
	}
}

func TestRetriedOnConnectionReset(t *testing.T) {
	t.Parallel()
	reset2 := func(body string) func(int, http.ResponseWriter, *http.Request) {
		return func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				resetConnection(t, w)
				return
			}
			w.Write([]byte(body))
		}
	}
	s := newScript(t, reset2(workJSON))
	if _, err := s.client().GetWork(t.Context(), "env_1", "work_1"); err != nil {
		t.Fatal(err)
	}
	if n := s.attempts(); n != 3 {
		t.Fatalf("get: %d attempts, want 3", n)
	}
	s = newScript(t, reset2(workJSON))
	if _, err := s.client().StopWork(t.Context(), "env_1", "work_1", true, client.WithIdempotencyKey("stop-1")); err != nil {
		t.Fatal(err)
	}
	if n := s.attempts(); n != 3 {
		t.Fatalf("keyed stop: %d attempts, want 3", n)
	}
	sameRequests(t, s.requests())
}

// The server's Retry-After replaces the backoff: with an hour of backoff, these calls
// finish only because the header said to retry at once.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	headers := map[string][2]string{
		"seconds":  {"Retry-After", "0"},
		"fraction": {"Retry-After", "0.001"},
		"date":     {"Retry-After", time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat)},
		"ms":       {"Retry-After-Ms", "1"},
	}
	for name, h := range headers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set(h[0], h[1])
					errorAnswer(w, 429, "rate_limit_error", "slow down")
					return
				}
				w.Write([]byte(envJSON))
			})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if _, err := s.client(client.WithBackoff(time.Hour, time.Hour)).GetEnvironment(ctx, "env_1"); err != nil {
				t.Fatal(err)
			}
			if n := s.attempts(); n != 2 {
				t.Fatalf("%d attempts, want 2", n)
			}
		})
	}
}

func TestContextEndStopsRetries(t *testing.T) {
	t.Parallel()
	first := make(chan struct{})
	s := newScript(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		errorAnswer(w, 503, "api_error", "down")
		if n == 1 {
			close(first)
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-first
		cancel()
	}()
	_, err := s.client().GetEnvironment(ctx, "env_1")
	var apiErr *client.Error
	if !errors.Is(err, context.Canceled) || errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want context.Canceled and no *client.Error", err)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	_, err = s.client().GetEnvironment(ctx, "env_1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if n := s.attempts(); n != 2 {
		t.Fatalf("%d attempts, want 1 per call", n)
	}

	// An ended context sends nothing at all.
	_, err = s.client().GetEnvironment(ctx, "env_1")
	if !errors.Is(err, context.DeadlineExceeded) || s.attempts() != 2 {
		t.Fatalf("err = %v after %d attempts", err, s.attempts())
	}
}

func TestRetryAfterParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, value string
		want        time.Duration
		ok          bool
	}{
		{"Retry-After", "2", 2 * time.Second, true},
		{"Retry-After", "1.5", 1500 * time.Millisecond, true},
		{"Retry-After", "-3", 0, true},
		{"Retry-After", "3600", 60 * time.Second, true},
		{"Retry-After", now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second, true},
		{"Retry-After", now.Add(-10 * time.Second).Format(http.TimeFormat), 0, true},
		{"Retry-After", now.Add(time.Hour).Format(http.TimeFormat), 60 * time.Second, true},
		{"Retry-After", "soon", 0, false},
		{"Retry-After", "NaN", 0, false},
		{"Retry-After-Ms", "250", 250 * time.Millisecond, true},
		{"Retry-After-Ms", "0.5", 500 * time.Microsecond, true},
		{"Retry-After-Ms", "99999999", 60 * time.Second, true},
		{"Retry-After-Ms", "x", 0, false},
		{"X-Other", "1", 0, false},
	} {
		got, ok := client.RetryAfter(http.Header{http.CanonicalHeaderKey(tc.name): {tc.value}}, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %s → %v %t, want %v %t", tc.name, tc.value, got, ok, tc.want, tc.ok)
		}
	}
	// Retry-After-Ms is read first.
	h := http.Header{"Retry-After": {"9"}, "Retry-After-Ms": {"20"}}
	if got, _ := client.RetryAfter(h, now); got != 20*time.Millisecond {
		t.Errorf("both headers: %v", got)
	}
}

func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	for n, base := range []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
		for range 50 {
			d := client.BackoffDelay(500*time.Millisecond, 8*time.Second, n)
			if d > base || d < base*3/4 {
				t.Fatalf("retry %d: %v, want within [%v, %v]", n, d, base*3/4, base)
			}
		}
	}
	if d := client.BackoffDelay(time.Hour, 1<<62, 200); d <= 0 || d > 1<<62 {
		t.Fatalf("many retries: %v", d)
	}
}

// sameRequests asserts that every attempt sent the first attempt's method, target, body
// and headers.
func sameRequests(t *testing.T, reqs []seenRequest) {
	t.Helper()
	for i, r := range reqs[1:] {
		first := reqs[0]
		if r.Method != first.Method || r.URI != first.URI || !bytes.Equal(r.Body, first.Body) {
			t.Errorf("attempt %d: %s %s %q, first was %s %s %q", i+2, r.Method, r.URI, r.Body, first.Method, first.URI, first.Body)
		}
		for k, v := range first.Header {
			if fmt.Sprint(r.Header[k]) != fmt.Sprint(v) {
				t.Errorf("attempt %d: header %s = %v, first was %v", i+2, k, r.Header[k], v)
			}
		}
		if len(r.Header) != len(first.Header) {
			t.Errorf("attempt %d: headers %v, first had %v", i+2, r.Header, first.Header)
		}
	}
}
