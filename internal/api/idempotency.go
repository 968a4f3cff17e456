package api

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/store"
)

// idempotencyWindow is how long a response is kept for replay (API.md §1).
const idempotencyWindow = 24 * time.Hour

// bookkeepingTimeout bounds the store writes that keep a key's answer or release the key
// after its request was handled. They run on a context of their own, not cancelled when
// the client hangs up: see idempotent.
const bookkeepingTimeout = 30 * time.Second

// abandonedAfter is when a reservation whose request never answered counts as
// interrupted (its server died mid-request): well past the longest a request can run, as
// the server's read and write timeouts are a minute each.
const abandonedAfter = 3 * time.Minute

// idempotent runs the handler under an Idempotency-Key: the first request with a key is
// answered and its response kept; a later one with the same key, token, method, path,
// query and body gets that response again, byte for byte, with Idempotent-Replayed: true
// and no second effect. The same key with another request is 409 conflict_error, and so
// is a retry that arrives while the first request is still being answered.
//
// A response with a 5xx status is not kept: the request may not have had its effect, so a
// retry runs it again. A request whose server died before it answered leaves its key
// reserved with no answer: the request may or may not have had its effect (the effect and
// the kept answer are separate commits), so running it again could act twice. Such a key
// is never run again; after abandonedAfter a retry is told the outcome is unknown (409),
// so that the client checks and goes on with a new key.
//
// A client that hangs up (a client-side timeout) changes none of this: retrying after a
// timeout is what keys are for. The handler runs with the request's context, so a store
// write that the hang-up reached in time fails with a context error and is rolled back as
// a whole (both stores run a write to its commit or not at all); that answer is a 5xx and
// the key is released, so the retry runs afresh. A write that committed first is answered
// as usual, and that answer is kept. Either way the bookkeeping (keeping the answer or
// releasing the key) runs on a context detached from the request, bounded by
// bookkeepingTimeout, so that the retry gets the first answer or a fresh run, never a key
// stuck "still being processed" and later "interrupted".
//
// A kept response that carries a token secret (POST /tokens) is sealed with a key only the
// caller holds (sealReplay), so that the database never holds a secret in the clear.
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
	if existed {
		switch {
		case existing.Fingerprint != rec.Fingerprint:
			return errIdempotencyBody
		case existing.Status == 0 && c.s.now().Sub(existing.CreatedAt) > abandonedAfter:
			return errIdempotencyInterrupted
		case existing.Status == 0:
			return errIdempotencyBusy
		}
		body, err := c.unsealReplay(key, existing.Body)
		if err != nil {
			return err
		}
		c.w.Header().Set("Idempotent-Replayed", "true")
		writeRaw(c.w, existing.Status, body)
		return nil
	}
	cap := &capture{ResponseWriter: c.w}
	c.w = cap
	herr := c.route.handle(c)
	if herr != nil && !cap.wrote {
		writeError(cap, asAPIError(herr, nil))
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if cap.status >= 500 || cap.status == 0 {
		if err := c.s.store.ReleaseIdempotencyKey(bctx, c.token.ID, key); err != nil {
			c.log.Error("release idempotency key", "err", err)
		}
		return herr // answered already; returned so that entry logs a failure
	}
	if err := c.s.store.CompleteIdempotencyKey(bctx, c.token.ID, key, cap.status, c.sealReplay(key, cap.body.Bytes())); err != nil {
		c.log.Error("complete idempotency key", "err", err)
	}
	return herr
}

// sealedPrefix starts a kept response that is sealed; a JSON body never starts with NUL.
const sealedPrefix = "\x00berth-sealed-1\x00"

// carriesSecret reports whether the route's answer holds a secret: a token's (POST
// /tokens) or a webhook's (POST …/webhooks). API.md §1 and §5: the server stores only a
// hash of a token secret, so such an answer is kept for replay only sealed (sealReplay);
// a webhook secret, which the server must keep to sign with, is sealed all the same, so
// that the replay store holds no secret in the clear.
func (c *call) carriesSecret() bool {
	return c.route.Method == http.MethodPost &&
		(c.route.Pattern == BasePath+"/tokens" || c.route.Pattern == webhooksPattern)
}

// replayCipher is AES-256-GCM keyed by the caller's own secret and the Idempotency-Key.
// The server never stores that secret, only its hash, so what it keeps cannot be read
// back from the database; the replay, which needs the same token, can.
func (c *call) replayCipher(key string) cipher.AEAD {
	k := sha256.Sum256([]byte("berth idempotent replay\x00" + c.secret + "\x00" + key))
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// sealReplay returns what to keep of a response body for replay: the body itself, or,
// when it carries a secret, the body sealed.
func (c *call) sealReplay(key string, body []byte) []byte {
	if !c.carriesSecret() {
		return body
	}
	aead := c.replayCipher(key)
	out := make([]byte, len(sealedPrefix)+aead.NonceSize(), len(sealedPrefix)+aead.NonceSize()+len(body)+aead.Overhead())
	copy(out, sealedPrefix)
	nonce := out[len(sealedPrefix):]
	rand.Read(nonce)
	return aead.Seal(out, nonce, body, nil)
}

// unsealReplay is the inverse of sealReplay.
func (c *call) unsealReplay(key string, kept []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(kept, []byte(sealedPrefix))
	if !ok {
		return kept, nil
	}
	aead := c.replayCipher(key)
	if len(rest) < aead.NonceSize() {
		return nil, errors.New("idempotency: sealed response too short")
	}
	body, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], nil)
	if err != nil {
		return nil, fmt.Errorf("idempotency: open sealed response: %w", err)
	}
	return body, nil
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
