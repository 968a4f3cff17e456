// Package testserver is what berth's tests share to start a server and drive it: a clock
// the test moves by hand, the store under test (SQLite, or PostgreSQL when
// BERTH_TEST_API_STORE=postgres), an in-process HTTP transport for tests that run under
// testing/synctest, and a server with an admin token behind a real listener or that
// transport. It is for tests only.
package testserver

import "time"

// HangGuard bounds the waits of tests for something that must happen but whose timing
// is not the subject: a state a server reaches, a process that starts or exits. It only
// turns a hang (a bug) into a failure with a message; on a busy machine, work that takes
// milliseconds may take seconds, so it is far longer than anything should take.
const HangGuard = 2 * time.Minute
