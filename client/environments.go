package client

import (
	"context"
	"iter"
)

// CreateEnvironmentParams is the body of CreateEnvironment.
type CreateEnvironmentParams struct {
	// Name is required: non-empty after trimming, at most 255 characters.
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Config is the environment's config; nil means the server's default, cloud. Work
	// endpoints need a self_hosted one (SelfHostedConfig).
	Config   *EnvironmentConfig `json:"config,omitempty"`
	Metadata map[string]string  `json:"metadata,omitempty"`
}

// UpdateEnvironmentParams is a partial update: nil fields are left as they are.
type UpdateEnvironmentParams struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
	// Config replaces the config wholesale; its type may not change.
	Config *EnvironmentConfig `json:"config,omitempty"`
	// Metadata is merged: a value upserts its key, nil deletes it, absent keys stay.
	Metadata map[string]*string `json:"metadata,omitempty"`
}

// ListEnvironmentsParams filters ListEnvironments.
type ListEnvironmentsParams struct {
	ListParams
	// IncludeArchived lists archived environments too.
	IncludeArchived bool
}

// CreateEnvironment creates an environment (POST /environments → 201).
func (c *Client) CreateEnvironment(ctx context.Context, params CreateEnvironmentParams, opts ...RequestOption) (*Environment, error) {
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Environment](ctx, c, &request{method: "POST", path: "environments", body: body, opts: opts})
}

// GetEnvironment reads an environment; a worker token may read only its own.
func (c *Client) GetEnvironment(ctx context.Context, environmentID string, opts ...RequestOption) (*Environment, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	return call[Environment](ctx, c, &request{method: "GET", path: "environments/" + env, opts: opts})
}

// ListEnvironments reads one page of environments, oldest first.
func (c *Client) ListEnvironments(ctx context.Context, params ListEnvironmentsParams, opts ...RequestOption) (*Page[Environment], error) {
	q := params.values()
	if params.IncludeArchived {
		q.Set("include_archived", "true")
	}
	return call[Page[Environment]](ctx, c, &request{method: "GET", path: "environments", query: q, opts: opts})
}

// AllEnvironments iterates over every environment from params on, page after page.
func (c *Client) AllEnvironments(ctx context.Context, params ListEnvironmentsParams, opts ...RequestOption) iter.Seq2[Environment, error] {
	return pages(ctx, params.ListParams, func(ctx context.Context, lp ListParams) (*Page[Environment], error) {
		p := params
		p.ListParams = lp
		return c.ListEnvironments(ctx, p, opts...)
	})
}

// UpdateEnvironment changes the fields set in params.
func (c *Client) UpdateEnvironment(ctx context.Context, environmentID string, params UpdateEnvironmentParams, opts ...RequestOption) (*Environment, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Environment](ctx, c, &request{method: "POST", path: "environments/" + env, body: body, opts: opts})
}

// ArchiveEnvironment sets archived_at (idempotent). An archived environment takes no new
// sessions; its existing work keeps working so that workers can drain.
func (c *Client) ArchiveEnvironment(ctx context.Context, environmentID string, opts ...RequestOption) (*Environment, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	return call[Environment](ctx, c, &request{method: "POST", path: "environments/" + env + "/archive", body: emptyBody, opts: opts})
}

// DeleteEnvironment deletes an environment. It needs an admin token (403 otherwise) and
// fails with 409 (IsConflict) while any session references the environment.
func (c *Client) DeleteEnvironment(ctx context.Context, environmentID string, opts ...RequestOption) (*Deleted, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	return call[Deleted](ctx, c, &request{method: "DELETE", path: "environments/" + env, opts: opts})
}
