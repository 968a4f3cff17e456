package client

import (
	"net/http"
	"time"
)

// RetryAfter exposes retryAfter to the external tests.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) { return retryAfter(h, now) }

// BackoffDelay exposes the backoff schedule, without a server's Retry-After.
func BackoffDelay(initial, max time.Duration, n int) time.Duration {
	return backoff{initial: initial, max: max}.delay(n, nil)
}
