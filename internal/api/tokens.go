package api

import (
	"encoding/json"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

var errTokenNotFound = errNotFound("Token not found.")

// createToken makes a token. role is admin, member or worker; a worker token names the
// environment it is bound to (which must exist), and only a worker token may name one.
func (s *Server) createToken(c *call) error {
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	name, ok, err := f.name()
	if err != nil {
		return err
	}
	if !ok {
		return errInvalid("name", "name is required.")
	}
	role, _, err := f.str("role", 16)
	if err != nil {
		return err
	}
	if role != RoleAdmin && role != RoleMember && role != RoleWorker {
		return errInvalid("role", "role must be admin, member or worker.")
	}
	envID, hasEnv, err := f.str("environment_id", 64)
	if err != nil {
		return err
	}
	switch {
	case role == RoleWorker && !hasEnv:
		return errInvalid("environment_id", "A worker token needs environment_id.")
	case role != RoleWorker && hasEnv:
		return errInvalid("environment_id", "Only worker tokens are bound to an environment.")
	case hasEnv:
		notFound := &apiError{Status: 404, Type: typeNotFound, Param: "environment_id", Message: "Environment not found."}
		if !id.Valid(id.Environment, envID) {
			return notFound
		}
		if _, err := s.store.GetEnvironment(c.r.Context(), envID); err != nil {
			return asAPIError(err, notFound)
		}
	}
	tok, secret := NewToken(name, role, envID, work.Timestamp(s.now()))
	tok, err = s.store.CreateToken(c.r.Context(), tok)
	if err != nil {
		return err
	}
	out := tokenObject(tok)
	out.Secret = secret
	return c.json(201, out)
}

func (s *Server) listTokens(c *call) error {
	p, err := c.pageParams(id.Token)
	if err != nil {
		return err
	}
	toks, more, err := s.store.ListTokens(c.r.Context(), p)
	if err != nil {
		return err
	}
	return c.json(200, newPage(toks, more, p, tokenID, tokenObject))
}

func (s *Server) revokeToken(c *call) error {
	tid := c.r.PathValue("token_id")
	if !id.Valid(id.Token, tid) {
		return errTokenNotFound
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	tok, err := s.store.RevokeToken(c.r.Context(), tid, work.Timestamp(s.now()))
	if err != nil {
		return asAPIError(err, errTokenNotFound)
	}
	return c.json(200, tokenObject(tok))
}

// TokenJSON is a token object (API.md §5) as the API answers with it: the answer of a
// revoke, and with a secret that of POST /tokens. `berth token` prints it when it works
// on the database, so that it prints what the API would.
func TokenJSON(t store.Token, secret string) ([]byte, error) {
	out := tokenObject(t)
	out.Secret = secret
	return json.Marshal(out)
}

// TokenListJSON is the answer of GET /tokens for toks, read from the store with p (more
// tells whether more follow), as the API answers with it.
func TokenListJSON(toks []store.Token, more bool, p store.Page) ([]byte, error) {
	return json.Marshal(newPage(toks, more, p, tokenID, tokenObject))
}
