// Package testserver is what berth's tests share to start a server and drive it: a clock
// the test moves by hand, the store under test (SQLite, or PostgreSQL when
// BERTH_TEST_API_STORE=postgres), an in-process HTTP transport for tests that run under
// testing/synctest, and a server with an admin token behind a real listener or that
// transport. It is for tests only.
package testserver
