package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
)

// A reservation left by a server that died mid-request is never run again: the request
// may have had its effect already, and a second run would act twice. While it might still
// be answered the retry hears "still being processed"; after three minutes it hears that
// the outcome is unknown. Either way nothing is created.
func TestIdempotencyKeyOfAnInterruptedRequestIsNeverRunAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok, err := h.store.TokenByHash(context.Background(), api.HashSecret(h.admin))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"name":"once"}`
	wantStatus(t, h.do("POST", "/environments", body, header("Idempotency-Key", "probe")), 201)
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
	if !strings.Contains(string(busy.Body), "still being processed") {
		t.Errorf("fresh reservation: %s", busy.Body)
	}
	h.clock.Advance(4 * time.Minute)
	gone := h.do("POST", "/environments", body, header("Idempotency-Key", "dead"))
	wantError(t, gone, 409, "conflict_error", "")
	if !strings.Contains(string(gone.Body), "interrupted") {
		t.Errorf("abandoned reservation: %s", gone.Body)
	}
	list := h.do("GET", "/environments?limit=100", "")
	var page struct {
		Data []map[string]any `json:"data"`
	}
	list.decode(t, &page)
	if len(page.Data) != 1 {
		t.Fatalf("%d environments, want the probe's alone", len(page.Data))
	}
}
