// Package storetest is the conformance suite of the storage contract (package store):
// every store runs Run from its own tests and must pass it unchanged.
//
// The suite follows River's riverdrivertest: subtests are grouped by the contract's
// methods, every subtest starts with t.Parallel() and makes its own empty store, and the
// assertions state the contract in the words of store.go's doc comments. Time is a
// parameter: every call gets an explicit now on one fixed timeline (base plus offsets), so
// nothing sleeps. The race subtests use a bounded number of goroutines and are meant to be
// run with -race.
//
// The suite has one file per area of the contract. A group's function (testX for the
// group X) lives in its area's file, next to the helpers that only that area uses; helpers
// that several areas use live in fixtures.go and checks.go.
//
//	storetest.go     Run and its table of groups, the timeline and shared constants; Ping
//	fixtures.go      the fixture: building, storing and reading back records; the work
//	                 rules the tests apply; racing goroutines
//	checks.go        comparing records, checking errors, paging through lists
//	environments.go  CreateEnvironment, GetEnvironment, ListEnvironments, UpdateEnvironment,
//	                 DeleteEnvironment
//	sessions.go      CreateSession, GetSession, ListSessions, UpdateSession,
//	                 UpdateSessionWork, DeleteSession
//	handoff.go       CreateSessionAndClaim
//	events.go        AppendEvents, ListEvents
//	work.go          ClaimWork, NextReclaim, GetWork, ListWork, UpdateWork, WorkStats,
//	                 RecordPoll
//	count.go         CountWork
//	leases.go        ExpireLeases, NextLeaseExpiry
//	tokens.go        CreateToken, CreateFirstToken, TokenByHash, ListTokens, RevokeToken,
//	                 TouchToken, CountTokens
//	idempotency.go   ReserveIdempotencyKey, CompleteIdempotencyKey, ReleaseIdempotencyKey,
//	                 PruneIdempotencyKeys
//	webhooks.go      CreateWebhook, GetWebhook, ListWebhooks, DeleteWebhook, the deliveries
//	                 that queuing an item writes, ListDeliveries, ClaimDeliveries,
//	                 RecordAttempt, NextDelivery, CountPendingDeliveries
package storetest

import (
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// base is the origin of the suite's timeline. Its microsecond digits catch a store that
// keeps only milliseconds or seconds.
var base = time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC)

// elsewhere is a zone the round-trip tests write times in, so that a store that hands
// back the caller's location instead of UTC is caught.
var elsewhere = time.FixedZone("CEST", 2*60*60)

const (
	us  = time.Microsecond
	sec = time.Second

	selfHosted = "self_hosted"
	cloud      = "cloud"

	// racers is how many goroutines a race subtest runs against one row or queue: enough
	// to interleave on any store, few enough to stay quick under -race.
	racers = 8
)

// newStoreFunc makes a fresh, empty store for one subtest and closes it when t ends.
type newStoreFunc = func(t *testing.T) store.Store

// Run runs the conformance suite against the stores newStore makes. Every subtest calls
// newStore itself, so stores never share rows; newStore must return an empty store and
// close it when its t ends (t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	groups := []struct {
		name string
		run  func(*testing.T, newStoreFunc)
	}{
		{"Ping", testPing},
		{"CreateEnvironment", testCreateEnvironment},
		{"GetEnvironment", testGetEnvironment},
		{"ListEnvironments", testListEnvironments},
		{"UpdateEnvironment", testUpdateEnvironment},
		{"DeleteEnvironment", testDeleteEnvironment},
		{"CreateSession", testCreateSession},
		{"CreateSessionAndClaim", testCreateSessionAndClaim},
		{"GetSession", testGetSession},
		{"ListSessions", testListSessions},
		{"UpdateSession", testUpdateSession},
		{"UpdateSessionWork", testUpdateSessionWork},
		{"DeleteSession", testDeleteSession},
		{"AppendEvents", testAppendEvents},
		{"ListEvents", testListEvents},
		{"EventReads", testEventReads},
		{"SessionStatus", testSessionStatus},
		{"ClaimWork", testClaimWork},
		{"NextReclaim", testNextReclaim},
		{"GetWork", testGetWork},
		{"ListWork", testListWork},
		{"UpdateWork", testUpdateWork},
		{"WorkStats", testWorkStats},
		{"CountWork", testCountWork},
		{"RecordPoll", testRecordPoll},
		{"ExpireLeases", testExpireLeases},
		{"NextLeaseExpiry", testNextLeaseExpiry},
		{"CreateToken", testCreateToken},
		{"CreateFirstToken", testCreateFirstToken},
		{"TokenByHash", testTokenByHash},
		{"ListTokens", testListTokens},
		{"RevokeToken", testRevokeToken},
		{"TouchToken", testTouchToken},
		{"CountTokens", testCountTokens},
		{"ReadsAfterWrites", testReadsAfterWrites},
		{"ReserveIdempotencyKey", testReserveIdempotencyKey},
		{"CompleteIdempotencyKey", testCompleteIdempotencyKey},
		{"ReleaseIdempotencyKey", testReleaseIdempotencyKey},
		{"PruneIdempotencyKeys", testPruneIdempotencyKeys},
		{"PrunePollers", testPrunePollers},
		// The seam, per driver.
		{"FiltersMatchTheRules", testFiltersMatchTheRules},
		{"PutWorkIf", testPutWorkIf},
		{"LockLease", testLockLease},
		{"Followers", testFollowers},
		{"ReportsOnlyWhatCommitted", testReportsOnlyWhatCommitted},
	}
	groups = append(groups, webhookGroups...)
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newStore)
		})
	}
}

func testPing(t *testing.T, newStore newStoreFunc) {
	t.Run("Reachable", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		if err := f.st.Ping(f.ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}
