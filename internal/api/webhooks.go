package api

import (
	"encoding/json"
	"net/url"
	"strings"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/webhook"
	"github.com/berth-sh/berth/internal/work"
)

// Webhooks (API.md §9): an environment's URLs, called for every item queued in it.

// maxWebhookURL is the longest webhook URL accepted, in characters.
const maxWebhookURL = 2048

var errWebhookNotFound = errNotFound("Webhook not found.")

type webhookJSON struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	EnvironmentID string    `json:"environment_id"`
	URL           string    `json:"url"`
	Description   string    `json:"description"`
	CreatedAt     timestamp `json:"created_at"`
	Secret        string    `json:"secret,omitempty"`
}

func webhookObject(w store.Webhook) webhookJSON {
	return webhookJSON{ID: w.ID, Type: "webhook", EnvironmentID: w.EnvironmentID, URL: w.URL,
		Description: w.Description, CreatedAt: timestamp(w.CreatedAt)}
}

func webhookID(w store.Webhook) string { return w.ID }

type deliveryJSON struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Event         json.RawMessage `json:"event"`
	Attempts      int             `json:"attempts"`
	LastStatus    *int            `json:"last_status"`
	LastError     *string         `json:"last_error"`
	NextAttemptAt timestamp       `json:"next_attempt_at"`
	DeliveredAt   timestamp       `json:"delivered_at"`
	CreatedAt     timestamp       `json:"created_at"`
}

func deliveryObject(d store.Delivery) deliveryJSON {
	out := deliveryJSON{ID: d.ID, Type: "webhook_delivery", Event: webhook.Event(d), Attempts: d.Attempts,
		NextAttemptAt: timestamp(d.NextAttemptAt), DeliveredAt: timestamp(d.DeliveredAt), CreatedAt: timestamp(d.CreatedAt)}
	if d.LastStatus != 0 {
		st := d.LastStatus
		out.LastStatus = &st
	}
	if d.LastError != "" {
		e := d.LastError
		out.LastError = &e
	}
	return out
}

func deliveryID(d store.Delivery) string { return d.ID }

// parseWebhookURL validates a webhook URL: absolute http or https with a host, at most
// 2,048 characters, stored as given.
func parseWebhookURL(raw string) error {
	bad := errInvalid("url", "url must be an absolute http or https URL of at most %d characters.", maxWebhookURL)
	if len(raw) > maxWebhookURL || strings.TrimSpace(raw) != raw {
		return bad
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return bad
	}
	if u.User != nil {
		return errInvalid("url", "url must not carry credentials (user:password@); the signature authenticates berth.")
	}
	return nil
}

// createWebhook adds a webhook to an environment of any type; its secret is in this
// answer only.
func (s *Server) createWebhook(c *call) error {
	env, err := c.loadEnvironment()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	raw, ok, err := f.str("url", maxWebhookURL)
	if err != nil {
		return err
	}
	if !ok {
		return errInvalid("url", "url is required.")
	}
	if err := parseWebhookURL(raw); err != nil {
		return err
	}
	desc, _, err := f.str("description", maxDescriptionLen)
	if err != nil {
		return err
	}
	w := store.Webhook{EnvironmentID: env.ID, URL: raw, Description: desc, Secret: webhook.NewSecret(),
		CreatedAt: work.Timestamp(s.now())}
	if w, err = s.store.CreateWebhook(c.r.Context(), w); err != nil {
		return asAPIError(err, errEnvironmentNotFound)
	}
	out := webhookObject(w)
	out.Secret = w.Secret
	return c.json(201, out)
}

func (s *Server) listWebhooks(c *call) error {
	env, err := c.loadEnvironment()
	if err != nil {
		return err
	}
	p, err := pageParams(c.r.URL.Query(), id.Webhook)
	if err != nil {
		return err
	}
	hooks, more, err := s.store.ListWebhooks(c.r.Context(), env.ID, p)
	if err != nil {
		return err
	}
	return c.json(200, newPage(hooks, more, p, webhookID, webhookObject))
}

// webhookParam reads the path's environment and webhook IDs; malformed ones cannot exist.
func (c *call) webhookParam() (envID, webhookID string, err error) {
	if envID, err = c.environmentParam(); err != nil {
		return "", "", err
	}
	webhookID = c.r.PathValue("webhook_id")
	if !id.Valid(id.Webhook, webhookID) {
		return "", "", errWebhookNotFound
	}
	return envID, webhookID, nil
}

func (s *Server) deleteWebhook(c *call) error {
	envID, whID, err := c.webhookParam()
	if err != nil {
		return err
	}
	if err := s.store.DeleteWebhook(c.r.Context(), envID, whID); err != nil {
		return asAPIError(err, errWebhookNotFound)
	}
	return c.json(200, deletedJSON{ID: whID, Type: "webhook_deleted"})
}

func (s *Server) listDeliveries(c *call) error {
	envID, whID, err := c.webhookParam()
	if err != nil {
		return err
	}
	if _, err := s.store.GetWebhook(c.r.Context(), envID, whID); err != nil {
		return asAPIError(err, errWebhookNotFound)
	}
	p, err := pageParams(c.r.URL.Query(), id.Delivery)
	if err != nil {
		return err
	}
	ds, more, err := s.store.ListDeliveries(c.r.Context(), whID, p)
	if err != nil {
		return err
	}
	return c.json(200, newPage(ds, more, p, deliveryID, deliveryObject))
}
