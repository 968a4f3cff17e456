package client

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps the wait a server may ask for. API.md §1 promises Retry-After ≤ 60 s;
// a larger value from some other service is read as 60 s rather than obeyed, so that one
// bad header cannot park a worker for an hour, nor ignored, since the server did ask for
// a pause.
const maxRetryAfter = 60 * time.Second

// mayRetry reports whether a request may be sent more than once. GET and HEAD do not
// change anything. A POST or DELETE may already have acted when its answer was lost, and
// only an Idempotency-Key makes its repeat harmless (the server replays the first
// answer); without one it is never retried, not even on 429, whatever the status.
func mayRetry(method string, header http.Header) bool {
	switch method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	return header.Get("Idempotency-Key") != ""
}

// retryStatus reports whether an error status is worth another attempt: the server timed
// out (408), is overloaded (429) or failed (5xx). Every other 4xx, 409 and 412 among them,
// is an answer about the request itself and would come back the same.
func retryStatus(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// Backoff is a wait schedule between attempts: Initial × 2^n, capped at Max, less a
// random jitter of up to a quarter. The client waits so between retries of a request, and
// package worker between polls that failed.
//
// The jitter spreads the retries of many clients that failed together (a server restart
// fails every worker's poll at once) so that they do not come back in lockstep. It only
// ever shortens the wait, and by at most a quarter, rather than drawing from the whole
// [0, delay) range ("full jitter"): full jitter would sometimes retry at once, hitting a
// restarting server before it can answer, and the official SDKs use the same 75–100%
// band, so berth's clients and theirs load a recovering server alike.
type Backoff struct {
	Initial, Max time.Duration
}

// Delay is the wait before attempt n+1 after n+1 failures (n from 0).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Initial
	for range n {
		if d > b.Max/2 {
			d = b.Max
			break
		}
		d *= 2
	}
	d = min(d, b.Max)
	return d - time.Duration(rand.Float64()*0.25*float64(d))
}

// delay is the wait before retry n (from 0): the server's Retry-After-Ms or Retry-After
// when it sent one, else the schedule's.
func (b Backoff) delay(n int, h http.Header) time.Duration {
	if d, ok := retryAfter(h, time.Now()); ok {
		return d
	}
	return b.Delay(n)
}

// retryAfter reads the wait a server asked for: Retry-After-Ms (milliseconds, possibly
// fractional) first, then Retry-After (seconds, possibly fractional, or an HTTP date).
// Negative waits and dates in the past mean no wait; waits above maxRetryAfter are capped.
// ok is false when neither header is present and valid.
func retryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if h == nil {
		return 0, false
	}
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(ms) && !math.IsInf(ms, 0) {
			return clampRetryAfter(ms * float64(time.Millisecond)), true
		}
	}
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(s) && !math.IsInf(s, 0) {
			return clampRetryAfter(s * float64(time.Second)), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return clampRetryAfter(float64(t.Sub(now))), true
		}
	}
	return 0, false
}

func clampRetryAfter(ns float64) time.Duration {
	return time.Duration(max(0, min(ns, float64(maxRetryAfter))))
}

// sleep waits d, or until ctx ends, whichever comes first; it returns ctx's error in the
// second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
