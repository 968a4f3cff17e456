package api

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// Token roles (API.md §1).
const (
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleWorker = "worker"
)

const (
	tokenPrefix = "pt-"
	// secretLen random base62 characters carry log2(62^43) ≈ 256 bits; API.md asks for
	// at least 40.
	secretLen    = 43
	minSecretLen = 40
	base62       = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// touchEvery bounds how often a token's last_used_at is written: once a minute is
	// exact enough to tell a live token from a forgotten one, and keeps authentication a
	// read.
	touchEvery = time.Minute
)

// NewSecret returns a fresh token secret: "pt-" and 43 random base62 characters.
func NewSecret() string {
	b := make([]byte, 0, len(tokenPrefix)+secretLen)
	b = append(b, tokenPrefix...)
	max := big.NewInt(int64(len(base62)))
	for range secretLen {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic("token secret: " + err.Error())
		}
		b = append(b, base62[n.Int64()])
	}
	return string(b)
}

// HashSecret returns what the store keeps of a secret: its SHA-256, hex. A secret carries
// 256 random bits, so a fast hash is as good as a slow one and lets a lookup use an index.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// wellFormed reports whether s looks like a token: "pt-" and at least 40 base62
// characters.
func wellFormed(s string) bool {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok || len(rest) < minSecretLen || len(rest) > 256 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	return true
}

// NewToken makes a token record and its secret; the store makes its ID when it stores
// it.
func NewToken(name, role, environmentID string, now time.Time) (store.Token, string) {
	secret := NewSecret()
	return store.Token{
		Name:          name,
		Role:          role,
		EnvironmentID: environmentID,
		Hash:          HashSecret(secret),
		CreatedAt:     now,
	}, secret
}

var errNoToken = errUnauthenticated("Authentication required: send Authorization: Bearer <token>.")
var errNoKey = errUnauthenticated("Authentication required: send Authorization: Bearer <token> or x-api-key: <token>.")
var errBadToken = errUnauthenticated("Invalid or revoked token.")

// authenticate finds the caller's token. Missing, malformed, unknown and revoked tokens
// are 401. x-api-key is a way in only in the Anthropic dialect (API.md §8), and only
// without an Authorization header, which is read first.
func (c *call) authenticate() error {
	secret, err := c.credential()
	if err != nil {
		return err
	}
	if !wellFormed(secret) {
		return errBadToken
	}
	hash := HashSecret(secret)
	tok, err := c.s.store.TokenByHash(c.r.Context(), hash)
	if errors.Is(err, store.ErrNotFound) {
		return errBadToken
	}
	if err != nil {
		return err
	}
	// The lookup was by hash; compare once more in constant time so that no code path
	// depends on where two hashes first differ.
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 || !tok.RevokedAt.IsZero() {
		return errBadToken
	}
	c.token, c.secret = tok, secret
	if now := c.s.now(); now.Sub(tok.LastUsedAt) > touchEvery {
		if err := c.s.store.TouchToken(c.r.Context(), tok.ID, now); err != nil {
			c.log.Warn("touch token", "token_id", tok.ID, "err", err)
		}
	}
	return nil
}

// credential reads the token secret of the request: Authorization: Bearer, or in the
// Anthropic dialect x-api-key when there is no Authorization header.
func (c *call) credential() (string, error) {
	h := c.r.Header.Get("Authorization")
	if h == "" {
		if key := c.r.Header.Get("x-api-key"); key != "" && c.anthropic() {
			return strings.TrimSpace(key), nil
		}
		if c.anthropic() {
			return "", errNoKey
		}
		return "", errNoToken
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errBadToken
	}
	return strings.TrimSpace(secret), nil
}

// authorize checks the route's access against the token's role and binding. Worker tokens
// on WorkerSession routes are checked again by the handler (sessionFor).
func (c *call) authorize() error {
	role := c.token.Role
	switch c.route.Access {
	case AdminOnly:
		if role != RoleAdmin {
			return errForbidden("This operation needs an admin token.")
		}
	case Members:
		if role != RoleAdmin && role != RoleMember {
			return errForbidden("Worker tokens may not call this operation.")
		}
	case WorkerEnvironment:
		if role == RoleWorker && c.r.PathValue("environment_id") != c.token.EnvironmentID {
			return errForbidden("This worker token is bound to another environment.")
		}
	}
	return nil
}

// isWorker reports whether the caller holds a worker token.
func (c *call) isWorker() bool { return c.token.Role == RoleWorker }
