package client

import (
	"context"
	"iter"
)

// CreateTokenParams is the body of CreateToken.
type CreateTokenParams struct {
	Name string `json:"name"`
	// Role is RoleAdmin, RoleMember or RoleWorker.
	Role string `json:"role"`
	// EnvironmentID binds a worker token to its environment; required for RoleWorker and
	// refused for the other roles.
	EnvironmentID string `json:"environment_id,omitempty"`
}

// CreateToken makes a token (admin only, → 201). Its Secret is in this answer and
// nowhere else.
func (c *Client) CreateToken(ctx context.Context, params CreateTokenParams, opts ...RequestOption) (*Token, error) {
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Token](ctx, c, &request{method: "POST", path: "tokens", body: body, opts: opts})
}

// ListTokens reads one page of tokens (admin only), without their secrets.
func (c *Client) ListTokens(ctx context.Context, params ListParams, opts ...RequestOption) (*Page[Token], error) {
	return call[Page[Token]](ctx, c, &request{method: "GET", path: "tokens", query: params.values(), opts: opts})
}

// AllTokens iterates over every token from params on, page after page.
func (c *Client) AllTokens(ctx context.Context, params ListParams, opts ...RequestOption) iter.Seq2[Token, error] {
	return pages(ctx, params, func(ctx context.Context, lp ListParams) (*Page[Token], error) {
		return c.ListTokens(ctx, lp, opts...)
	})
}

// RevokeToken revokes a token (admin only; idempotent): from the next request on, it
// fails with 401.
func (c *Client) RevokeToken(ctx context.Context, tokenID string, opts ...RequestOption) (*Token, error) {
	tok, err := segment("token_id", tokenID)
	if err != nil {
		return nil, err
	}
	return call[Token](ctx, c, &request{method: "POST", path: "tokens/" + tok + "/revoke", body: emptyBody, opts: opts})
}
