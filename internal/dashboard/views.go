package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// The bounds of a view: each is one page of the API's lists.
const (
	// overviewLimit environments get their stats on the overview: the API's largest page.
	overviewLimit = 100
	workLimit     = 20
	sessionLimit  = 20
	eventLimit    = 50
	// webhookLimit webhooks of an environment show, each with its newest
	// webhookDeliveryLimit deliveries.
	webhookLimit         = 20
	webhookDeliveryLimit = 10
)

// The views the page can ask for, by name.
const (
	viewOverview = "overview" // environments, with the queue stats of each
	viewWork     = "work"     // an environment, its stats and a page of its work items
	viewSessions = "sessions" // an environment and a page of its sessions
	viewItem     = "item"     // a work item, its delivery details and its environment
	viewSession  = "session"  // a session, its environment and a page of its events
	viewWebhooks = "webhooks" // an environment, its webhooks and each one's newest deliveries
)

// viewParams selects a view. Cursors page backwards from the newest item by default:
// a live dashboard shows what happened last.
type viewParams struct {
	Name    string
	Env     string // environment ID (work, sessions, item)
	ID      string // work item (item) or session (session) ID
	State   string // work state filter, the API's comma-separated list
	Outcome string // work outcome filter: "", or one of the outcomes (work)
	Before  string // page of the items just before this ID
	After   string // page of the items just after this ID
}

// idNouns names what an ID of each prefix identifies, for error messages.
var idNouns = map[string]string{
	id.Environment: "environment", id.Work: "work item", id.Session: "session", id.Event: "event",
}

func parseView(q url.Values) (viewParams, error) {
	p := viewParams{Name: q.Get("view"), Env: q.Get("env"), ID: q.Get("id"), State: q.Get("state"),
		Outcome: q.Get("outcome"), Before: q.Get("before"), After: q.Get("after")}
	need := func(prefix, v, name string) error {
		if id.Valid(prefix, v) {
			return nil
		}
		noun := idNouns[prefix]
		if v == "" {
			return fmt.Errorf("%s is required: the %s ID (%s_…)", name, noun, prefix)
		}
		if r := []rune(v); len(r) > 80 {
			v = string(r[:80]) + "…"
		}
		return fmt.Errorf("%s: %q is not a valid %s ID (%s_ followed by 32 lowercase hex digits)", name, v, noun, prefix)
	}
	if p.Outcome != "" && p.Name != viewWork {
		return p, errors.New("only the work view takes an outcome")
	}
	var listPrefix string
	switch p.Name {
	case viewOverview:
	case viewWork:
		switch p.Outcome {
		case "", outcomeSucceeded, outcomeFailed, outcomeNone:
		default:
			return p, fmt.Errorf("outcome must be %s, %s or %s", outcomeSucceeded, outcomeFailed, outcomeNone)
		}
		listPrefix = id.Work
		if err := need(id.Environment, p.Env, "env"); err != nil {
			return p, err
		}
	case viewSessions:
		listPrefix = id.Session
		if err := need(id.Environment, p.Env, "env"); err != nil {
			return p, err
		}
	case viewWebhooks:
		if err := need(id.Environment, p.Env, "env"); err != nil {
			return p, err
		}
	case viewItem:
		if err := need(id.Environment, p.Env, "env"); err != nil {
			return p, err
		}
		if err := need(id.Work, p.ID, "id"); err != nil {
			return p, err
		}
	case viewSession:
		listPrefix = id.Event
		if err := need(id.Session, p.ID, "id"); err != nil {
			return p, err
		}
	default:
		return p, errors.New("view must be overview, work, sessions, webhooks, item or session")
	}
	if p.Before != "" && p.After != "" {
		return p, errors.New("give at most one of before and after")
	}
	for name, v := range map[string]string{"before": p.Before, "after": p.After} {
		if v != "" {
			if listPrefix == "" {
				return p, fmt.Errorf("this view takes no %s", name)
			}
			if err := need(listPrefix, v, name); err != nil {
				return p, err
			}
		}
	}
	return p, nil
}

// cursorQuery adds the page's cursor to q: after_id or before_id as asked, and otherwise
// before an ID above every real one, which is the newest page.
func (p viewParams) cursorQuery(q url.Values, prefix string) {
	switch {
	case p.After != "":
		q.Set("after_id", p.After)
	case p.Before != "":
		q.Set("before_id", p.Before)
	default:
		q.Set("before_id", prefix+"_"+strings.Repeat("f", 32))
	}
}

// viewError is an API error answer, as a view shows it. Resource, on the error that the
// whole view is, names what the API could not show: environment, work or session.
type viewError struct {
	Status   int    `json:"status"`
	Type     string `json:"type"`
	Message  string `json:"message"`
	Resource string `json:"resource,omitempty"`
}

// permanent reports whether an error answer of this status will be the same if asked
// again: a client error other than 401 (the page signs in again), 408 and 429. A stream
// whose view is such an error ends, and the page shows the error instead of retrying.
func permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusUnauthorized &&
		status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

// view is a computed view: JSON for the page, and the status of the API answer that
// decided it (200, or the error that the whole view is).
type view struct {
	body   []byte
	status int
}

// compute computes a view as the holder of secret, with in-process API requests. An
// error is returned only when the API could not be asked at all (the request ended).
func (d *Handler) compute(ctx context.Context, secret string, p viewParams) (view, error) {
	v := map[string]any{"view": p.Name}
	fail := func(a answer, resource string) (view, error) {
		e := a.errorOf()
		e.Resource = resource
		v["error"] = e
		b, err := json.Marshal(v)
		return view{body: b, status: a.status}, err
	}
	get := func(path string, q url.Values) (answer, error) {
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		return d.call(api.Quiet(ctx), secret, http.MethodGet, path, nil)
	}
	esc := url.PathEscape

	switch p.Name {
	case viewOverview:
		envs, err := get("/environments", url.Values{"limit": {fmt.Sprint(overviewLimit)}})
		if err != nil {
			return view{}, err
		}
		if envs.status != http.StatusOK {
			return fail(envs, "environment")
		}
		var page struct {
			Data []struct {
				ID     string `json:"id"`
				Config struct {
					Type string `json:"type"`
				} `json:"config"`
			} `json:"data"`
		}
		if err := json.Unmarshal(envs.body, &page); err != nil {
			return view{}, err
		}
		stats := map[string]any{}
		for _, e := range page.Data {
			if e.Config.Type != "self_hosted" {
				continue
			}
			s, err := get("/environments/"+esc(e.ID)+"/work/stats", nil)
			if err != nil {
				return view{}, err
			}
			if s.status == http.StatusOK {
				stats[e.ID] = json.RawMessage(s.body)
			} else {
				stats[e.ID] = map[string]any{"error": s.errorOf()}
			}
		}
		v["environments"] = json.RawMessage(envs.body)
		v["stats"] = stats

	case viewWork, viewSessions, viewWebhooks, viewItem:
		env, err := get("/environments/"+esc(p.Env), nil)
		if err != nil {
			return view{}, err
		}
		if env.status != http.StatusOK {
			return fail(env, "environment")
		}
		v["environment"] = json.RawMessage(env.body)
		if p.Name != viewItem {
			// The stats are an answer of their own: an environment that is not
			// self_hosted has none, and the view says why.
			s, err := get("/environments/"+esc(p.Env)+"/work/stats", nil)
			if err != nil {
				return view{}, err
			}
			v["stats"] = bodyOrError(s)
		}
		switch p.Name {
		case viewWork:
			if err := d.workList(ctx, get, p, v); err != nil {
				return view{}, err
			}
		case viewSessions:
			q := url.Values{"limit": {fmt.Sprint(sessionLimit)}, "environment_id": {p.Env}, "include_archived": {"true"}}
			p.cursorQuery(q, id.Session)
			list, err := get("/sessions", q)
			if err != nil {
				return view{}, err
			}
			v["sessions"] = bodyOrError(list)
		case viewWebhooks:
			if err := webhookList(get, p, v); err != nil {
				return view{}, err
			}
		case viewItem:
			it, err := get("/environments/"+esc(p.Env)+"/work/"+esc(p.ID), nil)
			if err != nil {
				return view{}, err
			}
			if it.status != http.StatusOK {
				return fail(it, "work")
			}
			// The API has just answered this item to this token: only now may the store
			// tell the rest of its story.
			item, err := d.store.GetWork(ctx, p.Env, p.ID)
			if errors.Is(err, store.ErrNotFound) {
				return fail(answer{status: http.StatusNotFound,
					body: []byte(`{"error":{"type":"not_found_error","message":"Work item not found."}}`)}, "work")
			}
			if err != nil {
				return view{}, fmt.Errorf("get work %s: %w", p.ID, err)
			}
			v["work"] = json.RawMessage(it.body)
			v["delivery"] = deliveryOf(item)
		}

	case viewSession:
		sess, err := get("/sessions/"+esc(p.ID), nil)
		if err != nil {
			return view{}, err
		}
		if sess.status != http.StatusOK {
			return fail(sess, "session")
		}
		v["session"] = json.RawMessage(sess.body)
		var s struct {
			EnvironmentID string `json:"environment_id"`
		}
		json.Unmarshal(sess.body, &s)
		if s.EnvironmentID != "" {
			env, err := get("/environments/"+esc(s.EnvironmentID), nil)
			if err != nil {
				return view{}, err
			}
			v["environment"] = bodyOrError(env)
		}
		q := url.Values{"limit": {fmt.Sprint(eventLimit)}}
		p.cursorQuery(q, id.Event)
		events, err := get("/sessions/"+esc(p.ID)+"/events", q)
		if err != nil {
			return view{}, err
		}
		v["events"] = bodyOrError(events)
	}
	b, err := json.Marshal(v)
	return view{body: b, status: http.StatusOK}, err
}

// webhookList puts an environment's first webhooks in v, each with the newest page of
// its deliveries (API.md §9), as the caller's token may read them.
func webhookList(get func(string, url.Values) (answer, error), p viewParams, v map[string]any) error {
	path := "/environments/" + url.PathEscape(p.Env) + "/webhooks"
	list, err := get(path, url.Values{"limit": {fmt.Sprint(webhookLimit)}})
	if err != nil {
		return err
	}
	v["webhooks"] = bodyOrError(list)
	if list.status != http.StatusOK {
		return nil
	}
	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(list.body, &page); err != nil {
		return err
	}
	deliveries := map[string]any{}
	for _, w := range page.Data {
		q := url.Values{"limit": {fmt.Sprint(webhookDeliveryLimit)}}
		p.cursorQuery(q, id.Delivery)
		ds, err := get(path+"/"+url.PathEscape(w.ID)+"/deliveries", q)
		if err != nil {
			return err
		}
		deliveries[w.ID] = bodyOrError(ds)
	}
	v["deliveries"] = deliveries
	return nil
}

// bodyOrError is a 200 answer's body, or {"error": …} for any other.
func bodyOrError(a answer) any {
	if a.status == http.StatusOK {
		return json.RawMessage(a.body)
	}
	return map[string]any{"error": a.errorOf()}
}

// delivery is what the store knows of a work item beyond its API object: the latest
// delivery by poll, how many there were, who acknowledged it and when its lease expires.
type delivery struct {
	DeliveredTo    string  `json:"delivered_to"`
	DeliveredAt    *string `json:"delivered_at"`
	Deliveries     int     `json:"deliveries"`
	AckedBy        string  `json:"acked_by"`
	LeaseExpiresAt *string `json:"lease_expires_at"`
	TTLSeconds     int     `json:"ttl_seconds"`
}

func deliveryOf(it work.Item) delivery {
	return delivery{
		DeliveredTo: it.DeliveredTo, DeliveredAt: timestamp(it.DeliveredAt), Deliveries: it.Deliveries,
		AckedBy: it.AckedBy, LeaseExpiresAt: timestamp(it.LeaseExpiresAt), TTLSeconds: it.TTLSeconds,
	}
}

// timestamp writes t as the API does, and the zero time as null.
func timestamp(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := work.Timestamp(t).Format(work.TimeLayout)
	return &s
}

// view answers one computation of a view as JSON: what the stream sends first, for a
// page that wants it once.
func (d *Handler) view(w http.ResponseWriter, r *http.Request) {
	p, err := parseView(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", err.Error())
		return
	}
	v, err := d.compute(r.Context(), secret(r), p)
	if err != nil {
		if r.Context().Err() == nil {
			d.log.Error("dashboard view", "view", p.Name, "err", err)
		}
		writeError(w, http.StatusInternalServerError, "api_error", "Internal server error.")
		return
	}
	writeJSON(w, v.status, json.RawMessage(v.body))
}
