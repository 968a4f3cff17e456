package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/store"
)

// idempotencyWindow is how long a response is kept for replay (API.md §1).
const idempotencyWindow = 24 * time.Hour

// abandonedAfter is when a reservation whose request never answered counts as abandoned
// (its server died mid-request) and a retry may run the request again. It is well past
// the longest a request can run: the server's read and write timeouts are a minute each.
const abandonedAfter = 3 * time.Minute

// idempotent runs the handler under an Idempotency-Key: the first request with a key is
// answered and its response kept; a later one with the same key, token, method, path,
// query and body gets that response again, byte for byte, with Idempotent-Replayed: true
// and no second effect. The same key with another request is 409 conflict_error, and so
// is a retry that arrives while the first request is still being answered.
//
// A response with a 5xx status is not kept: the request may not have had its effect, so a
// retry runs it again. Neither is a reservation whose request never answered (its server
// died): after abandonedAfter a retry takes the key over. Should the server have died
// after the request's effect was committed but before its answer was kept, that retry
// acts a second time; the window is the few microseconds between the two commits.
func (c *call) idempotent(key string) error {
	if utf8.RuneCountInString(key) > 255 || !printable(key) {
		return errInvalid("Idempotency-Key", "Idempotency-Key must be at most 255 printable UTF-8 characters.")
	}
	ctx := c.r.Context()
	rec := store.Idempotency{
		TokenID:     c.token.ID,
		Key:         key,
		Fingerprint: fingerprint(c.r, c.body),
		CreatedAt:   c.s.now(),
	}
	existing, existed, err := c.s.store.ReserveIdempotencyKey(ctx, rec)
	if err != nil {
		return err
	}
	if existed && existing.Status == 0 && existing.Fingerprint == rec.Fingerprint &&
		c.s.now().Sub(existing.CreatedAt) > abandonedAfter {
		// The first request's server died before it answered: take the key over.
		if err := c.s.store.ReleaseIdempotencyKey(ctx, c.token.ID, key); err != nil {
			return err
		}
		if existing, existed, err = c.s.store.ReserveIdempotencyKey(ctx, rec); err != nil {
			return err
		}
	}
	if existed {
		switch {
		case existing.Fingerprint != rec.Fingerprint:
			return errIdempotencyBody
		case existing.Status == 0:
			return errIdempotencyBusy
		}
		c.w.Header().Set("Idempotent-Replayed", "true")
		writeRaw(c.w, existing.Status, existing.Body)
		return nil
	}
	cap := &capture{ResponseWriter: c.w}
	c.w = cap
	herr := c.route.handle(c)
	if herr != nil && !cap.wrote {
		writeError(cap, asAPIError(herr, nil))
	}
	if cap.status >= 500 || cap.status == 0 {
		if err := c.s.store.ReleaseIdempotencyKey(ctx, c.token.ID, key); err != nil {
			c.s.log.Error("release idempotency key", "err", err)
		}
		return nil
	}
	if err := c.s.store.CompleteIdempotencyKey(ctx, c.token.ID, key, cap.status, cap.body.Bytes()); err != nil {
		c.s.log.Error("complete idempotency key", "err", err)
	}
	return nil
}

// fingerprint identifies a request for Idempotency-Key purposes: method, escaped path,
// query and body, where the equivalent empty bodies ("", "{}", "{}\n") count as one.
func fingerprint(r *http.Request, body []byte) string {
	h := sha256.New()
	h.Write([]byte(r.Method))
	h.Write([]byte{0})
	h.Write([]byte(r.URL.EscapedPath()))
	h.Write([]byte{0})
	h.Write([]byte(r.URL.RawQuery))
	h.Write([]byte{0})
	h.Write(bytes.TrimSpace(body))
	return hex.EncodeToString(h.Sum(nil))
}

// capture passes a response through and keeps a copy of its status and body.
type capture struct {
	http.ResponseWriter
	status int
	wrote  bool
	body   bytes.Buffer
}

func (c *capture) WriteHeader(code int) {
	if !c.wrote {
		c.status, c.wrote = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *capture) Write(b []byte) (int, error) {
	if !c.wrote {
		c.status, c.wrote = http.StatusOK, true
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}
