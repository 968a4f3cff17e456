package client

import (
	"context"
	"encoding/json"
	"iter"
	"time"
)

// Webhook is a webhook object (API.md §9): a URL the environment calls, signed, for every
// work item queued in it.
type Webhook struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"` // "webhook"
	EnvironmentID string    `json:"environment_id"`
	URL           string    `json:"url"`
	Description   string    `json:"description"`
	CreatedAt     time.Time `json:"created_at"`
	// Secret is the "whsec_…" secret that signs the deliveries (Berth-Signature),
	// present only in CreateWebhook's answer.
	Secret string `json:"secret,omitempty"`
}

// WebhookDelivery is one webhook's delivery of one queued work item, with its attempts
// (API.md §9).
type WebhookDelivery struct {
	ID   string `json:"id"`
	Type string `json:"type"` // "webhook_delivery"
	// Event is the body POSTed to the webhook, byte for byte: {"id","type":"work.queued",
	// "created_at","environment_id","work_id","session_id"}.
	Event    json.RawMessage `json:"event"`
	Attempts int             `json:"attempts"`
	// LastStatus is the HTTP status of the last finished attempt; nil when none answered.
	LastStatus *int `json:"last_status"`
	// LastError says why the last finished attempt failed; nil when it did not.
	LastError *string `json:"last_error"`
	// NextAttemptAt is when the next attempt is due; nil once delivered or given up.
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	DeliveredAt   *time.Time `json:"delivered_at"`
	CreatedAt     time.Time  `json:"created_at"`
}

// CreateWebhookParams is the body of CreateWebhook.
type CreateWebhookParams struct {
	// URL is an absolute http or https URL of at most 2,048 characters.
	URL         string `json:"url"`
	Description string `json:"description,omitempty"`
}

// CreateWebhook adds a webhook to an environment (admin only, → 201). Its Secret is in
// this answer and nowhere else.
func (c *Client) CreateWebhook(ctx context.Context, environmentID string, params CreateWebhookParams, opts ...RequestOption) (*Webhook, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Webhook](ctx, c, &request{method: "POST", path: "environments/" + env + "/webhooks", body: body, opts: opts})
}

// ListWebhooks reads one page of an environment's webhooks, without their secrets.
func (c *Client) ListWebhooks(ctx context.Context, environmentID string, params ListParams, opts ...RequestOption) (*Page[Webhook], error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	return call[Page[Webhook]](ctx, c, &request{method: "GET", path: "environments/" + env + "/webhooks", query: params.values(), opts: opts})
}

// AllWebhooks iterates over every webhook of an environment from params on.
func (c *Client) AllWebhooks(ctx context.Context, environmentID string, params ListParams, opts ...RequestOption) iter.Seq2[Webhook, error] {
	return pages(ctx, params, func(ctx context.Context, lp ListParams) (*Page[Webhook], error) {
		return c.ListWebhooks(ctx, environmentID, lp, opts...)
	})
}

// DeleteWebhook deletes a webhook and its deliveries (admin only).
func (c *Client) DeleteWebhook(ctx context.Context, environmentID, webhookID string, opts ...RequestOption) (*Deleted, error) {
	path, err := webhookPath(environmentID, webhookID)
	if err != nil {
		return nil, err
	}
	return call[Deleted](ctx, c, &request{method: "DELETE", path: path, opts: opts})
}

// ListWebhookDeliveries reads one page of a webhook's deliveries, oldest first.
func (c *Client) ListWebhookDeliveries(ctx context.Context, environmentID, webhookID string, params ListParams, opts ...RequestOption) (*Page[WebhookDelivery], error) {
	path, err := webhookPath(environmentID, webhookID)
	if err != nil {
		return nil, err
	}
	return call[Page[WebhookDelivery]](ctx, c, &request{method: "GET", path: path + "/deliveries", query: params.values(), opts: opts})
}

// AllWebhookDeliveries iterates over every delivery of a webhook from params on.
func (c *Client) AllWebhookDeliveries(ctx context.Context, environmentID, webhookID string, params ListParams, opts ...RequestOption) iter.Seq2[WebhookDelivery, error] {
	return pages(ctx, params, func(ctx context.Context, lp ListParams) (*Page[WebhookDelivery], error) {
		return c.ListWebhookDeliveries(ctx, environmentID, webhookID, lp, opts...)
	})
}

func webhookPath(environmentID, webhookID string) (string, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return "", err
	}
	wh, err := segment("webhook_id", webhookID)
	if err != nil {
		return "", err
	}
	return "environments/" + env + "/webhooks/" + wh, nil
}
