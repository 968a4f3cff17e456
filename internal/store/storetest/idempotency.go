package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
)

func draftKey(tokenID string) store.Idempotency {
	return store.Idempotency{TokenID: tokenID, Key: "key-" + id.New("k"), Fingerprint: "fp-1", CreatedAt: base}
}

// reserve reserves rec and fails the test on an error.
func (f *fixture) reserve(t *testing.T, rec store.Idempotency) (store.Idempotency, bool) {
	t.Helper()
	existing, existed, err := f.st.ReserveIdempotencyKey(f.ctx, rec)
	if err != nil {
		t.Fatalf("ReserveIdempotencyKey: %v", err)
	}
	return existing, existed
}

func testReserveIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("FirstReservesSecondFindsIt", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		if _, existed := f.reserve(t, inZone(rec, elsewhere)); existed {
			t.Fatalf("first ReserveIdempotencyKey: existed = true")
		}
		again := rec
		again.Fingerprint = "fp-2"
		again.CreatedAt = base.Add(time.Minute)
		existing, existed := f.reserve(t, again)
		if !existed {
			t.Fatalf("second ReserveIdempotencyKey: existed = false")
		}
		checkEqual(t, "stored reservation", existing, rec)
		// The second call wrote nothing: a third still finds the first fingerprint.
		existing, _ = f.reserve(t, again)
		checkEqual(t, "reservation after a second reserve", existing, rec)
	})

	t.Run("ScopedByToken", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		other := rec
		other.TokenID = id.New(id.Token)
		other.Fingerprint = "fp-other"
		if _, existed := f.reserve(t, other); existed {
			t.Errorf("the same key under another token: existed = true")
		}
		for _, want := range []store.Idempotency{rec, other} {
			again := want
			again.Fingerprint = "fp-again"
			existing, existed := f.reserve(t, again)
			if !existed {
				t.Errorf("token %s: reservation not found", want.TokenID)
			}
			checkEqual(t, "token "+want.TokenID+"'s reservation", existing, want)
		}
	})

	t.Run("ConcurrentReservesOneWinner", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		existed := make([]bool, racers)
		found := make([]store.Idempotency, racers)
		errs := make([]error, racers)
		race(racers, func(i int) {
			r := rec
			r.Fingerprint = fmt.Sprintf("fp-%d", i)
			found[i], existed[i], errs[i] = f.st.ReserveIdempotencyKey(f.ctx, r)
		})
		winner := -1
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("ReserveIdempotencyKey %d: %v", i, errs[i])
			}
			if !existed[i] {
				if winner >= 0 {
					t.Errorf("reserves %d and %d both reserved the key", winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("no reserve reserved the key")
		}
		for i := range racers {
			if existed[i] && found[i].Fingerprint != fmt.Sprintf("fp-%d", winner) {
				t.Errorf("reserve %d found fingerprint %s, want the winner's fp-%d", i, found[i].Fingerprint, winner)
			}
		}
	})
}

func testCompleteIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("StoresResponse", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		body := []byte("{\"id\":\"env_1\",\"name\":\"b\\u00e9\"}\n")
		if err := f.st.CompleteIdempotencyKey(f.ctx, rec.TokenID, rec.Key, 201, body); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		existing, existed := f.reserve(t, rec)
		want := rec
		want.Status, want.Body = 201, body
		if !existed {
			t.Fatalf("completed key not found")
		}
		checkEqual(t, "completed record", existing, want)
	})

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		err := f.st.CompleteIdempotencyKey(f.ctx, id.New(id.Token), "never-reserved", 200, []byte("{}"))
		wantNotFound(t, "CompleteIdempotencyKey without a reservation", err)
	})
}

func testReleaseIdempotencyKey(t *testing.T, newStore newStoreFunc) {
	t.Run("ForgetsReservation", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec, kept := draftKey(id.New(id.Token)), draftKey(id.New(id.Token))
		f.reserve(t, rec)
		f.reserve(t, kept)
		if err := f.st.ReleaseIdempotencyKey(f.ctx, rec.TokenID, rec.Key); err != nil {
			t.Fatalf("ReleaseIdempotencyKey: %v", err)
		}
		if _, existed := f.reserve(t, rec); existed {
			t.Errorf("released key still reserved")
		}
		if _, existed := f.reserve(t, kept); !existed {
			t.Errorf("another key was released too")
		}
	})

	t.Run("KeepsCompletedRecord", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		rec := draftKey(id.New(id.Token))
		f.reserve(t, rec)
		if err := f.st.CompleteIdempotencyKey(f.ctx, rec.TokenID, rec.Key, 200, []byte(`{"ok":true}`)); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		_ = f.st.ReleaseIdempotencyKey(f.ctx, rec.TokenID, rec.Key) // an error is allowed; a deletion is not
		existing, existed := f.reserve(t, rec)
		if !existed || existing.Status != 200 || string(existing.Body) != `{"ok":true}` {
			t.Errorf("completed record after release = existed %v, status %d, body %q; want it kept", existed, existing.Status, existing.Body)
		}
	})
}

func testPruneIdempotencyKeys(t *testing.T, newStore newStoreFunc) {
	t.Run("DeletesOlderThanCutoff", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		tokenID := id.New(id.Token)
		old, atCutoff, young := draftKey(tokenID), draftKey(tokenID), draftKey(tokenID)
		old.CreatedAt = base.Add(-us)
		atCutoff.CreatedAt = base
		young.CreatedAt = base.Add(sec)
		f.reserve(t, old)
		f.reserve(t, atCutoff)
		f.reserve(t, young)
		if err := f.st.CompleteIdempotencyKey(f.ctx, tokenID, old.Key, 200, []byte("{}")); err != nil {
			t.Fatalf("CompleteIdempotencyKey: %v", err)
		}
		if err := f.st.PruneIdempotencyKeys(f.ctx, base.In(elsewhere)); err != nil {
			t.Fatalf("PruneIdempotencyKeys: %v", err)
		}
		for _, tc := range []struct {
			name string
			rec  store.Idempotency
			kept bool
		}{{"created before the cutoff", old, false}, {"created at the cutoff", atCutoff, true}, {"created after the cutoff", young, true}} {
			if _, existed := f.reserve(t, tc.rec); existed != tc.kept {
				t.Errorf("record %s: kept = %v, want %v", tc.name, existed, tc.kept)
			}
		}
	})
}
