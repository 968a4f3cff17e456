// Package client is the Go client of the self-hosted Environment work API that berth
// serves (spec/API.md). It speaks to berth or to any compatible service under any base
// URL, and is what berth's worker, CLI and tests use.
//
// There is one method per endpoint, named in the spec's words and taking a context first:
// environments (CreateEnvironment … DeleteEnvironment), sessions and their events
// (CreateSession … ListEvents), work items (ListWork, PollWork, GetWorkStats, GetWork,
// UpdateWork, AckWork, HeartbeatWork, StopWork), tokens (CreateToken, ListTokens,
// RevokeToken) and the service endpoints (Healthz, Readyz). Lists return one Page; the
// All… methods iterate over every page.
//
// # Event stream
//
// StreamEvents follows a session's events live (API.md §7), as the official SDKs'
// resumable stream does: an iterator that reconnects after a dropped connection with a
// jittered backoff and Last-Event-ID, so that it yields every event once, in order, and
// ends after session.deleted.
//
// # Errors
//
// A non-2xx answer is returned as *Error, carrying the envelope of API.md §1; IsNotFound,
// IsConflict, IsPreconditionFailed, IsUnauthorized and IsForbidden test for the common
// cases, and IsNoRoute for a 404 that means the base URL is wrong. Transport and context
// errors are returned wrapped, never as *Error.
//
// New takes the API base URL exactly; NormalizeBaseURL turns what a person types (a bare
// http://host:port) into one.
//
// # Retries
//
// GET requests, and POST or DELETE requests that carry an Idempotency-Key (see
// WithIdempotencyKey), are retried on 408, 429, 5xx and connection errors, with jittered
// exponential backoff or after the server's Retry-After. Nothing else is retried: a POST
// without a key could act twice, and 409 and 412 are answers, not failures.
//
// # Example
//
// A worker's loop, reduced to its calls:
//
//	c, err := client.New("http://127.0.0.1:8080/api/v1/cloud", os.Getenv("BERTH_TOKEN"))
//	if err != nil {
//		return err
//	}
//	w, err := c.PollWork(ctx, envID, client.PollParams{BlockMS: 999, WorkerID: "worker-1"})
//	if err != nil || w == nil {
//		return err // nil, nil: nothing to do yet
//	}
//	if _, err := c.AckWork(ctx, envID, w.ID, client.AckParams{WorkerID: "worker-1"}); err != nil {
//		return err
//	}
//	hb, err := c.HeartbeatWork(ctx, envID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat})
//	if err != nil {
//		return err
//	}
//	// … run the session, heartbeating with ExpectedLastHeartbeat: hb.LastHeartbeat …
//	_, err = c.StopWork(ctx, envID, w.ID, false)
//	return err
package client
