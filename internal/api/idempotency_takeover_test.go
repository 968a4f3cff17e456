package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
)

// A reservation left by a server that died mid-request blocks its key only until it
// counts as abandoned; then a retry runs the request and its answer is replayed as usual.
func TestIdempotencyKeyAbandonedReservationIsTakenOver(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok, err := h.store.TokenByHash(context.Background(), api.HashSecret(h.admin))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"name":"once"}`
	first := h.do("POST", "/environments", body, header("Idempotency-Key", "probe"))
	wantStatus(t, first, 201)
	// The server's fingerprint of this request, read from the record it kept for "probe".
	rec, existed, err := h.store.ReserveIdempotencyKey(context.Background(), store.Idempotency{
		TokenID: tok.ID, Key: "probe", CreatedAt: h.clock.Now(),
	})
	if err != nil || !existed {
		t.Fatalf("reading the probe's record: %v %v", existed, err)
	}
	// A dead server's reservation of the same request under key "dead": reserved, never
	// completed. The fingerprint covers method, path, query and body, not the key.
	if _, _, err := h.store.ReserveIdempotencyKey(context.Background(), store.Idempotency{
		TokenID: tok.ID, Key: "dead", Fingerprint: rec.Fingerprint, CreatedAt: h.clock.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	busy := h.do("POST", "/environments", body, header("Idempotency-Key", "dead"))
	wantError(t, busy, 409, "conflict_error", "")
	h.clock.Advance(2 * time.Minute)
	wantError(t, h.do("POST", "/environments", body, header("Idempotency-Key", "dead")), 409, "conflict_error", "")
	h.clock.Advance(2 * time.Minute)
	took := h.do("POST", "/environments", body, header("Idempotency-Key", "dead"))
	wantStatus(t, took, 201)
	replay := h.do("POST", "/environments", body, header("Idempotency-Key", "dead"))
	wantStatus(t, replay, 201)
	if string(replay.Body) != string(took.Body) || replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("no replay after the takeover: %s", replay.Body)
	}
	// A different request under an abandoned key is still refused.
	if _, _, err := h.store.ReserveIdempotencyKey(context.Background(), store.Idempotency{
		TokenID: tok.ID, Key: "dead2", Fingerprint: "something else", CreatedAt: h.clock.Now(),
	}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(4 * time.Minute)
	wantError(t, h.do("POST", "/environments", body, header("Idempotency-Key", "dead2")), 409, "conflict_error", "")
}
