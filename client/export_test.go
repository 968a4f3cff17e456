package client

import (
	"net/http"
	"time"
)

// RetryAfter exposes retryAfter to the external tests.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) { return retryAfter(h, now) }

// BackoffDelay is the schedule's wait, without a server's Retry-After.
func BackoffDelay(initial, max time.Duration, n int) time.Duration {
	return Backoff{Initial: initial, Max: max}.Delay(n)
}
