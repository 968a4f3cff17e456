package client

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// NoHeartbeat is the ExpectedLastHeartbeat of a worker taking a lease that has never had
// a heartbeat: the first heartbeat after AckWork.
const NoHeartbeat = "NO_HEARTBEAT"

// ListWorkParams filters ListWork.
type ListWorkParams struct {
	ListParams
	// States lists only items in these states [ext]; empty means all.
	States []State
}

// PollParams are the parameters of PollWork.
type PollParams struct {
	// BlockMS is how long the server may wait for an item, 1–999 ms; 0 answers at once.
	BlockMS int
	// ReclaimOlderThanMS makes an item delivered but not acknowledged this long ago
	// deliverable again; nil means the server's default, 5000 ms.
	ReclaimOlderThanMS *int
	// WorkerID is sent as the Worker-ID header: a stable name the worker chooses (not a
	// credential). The server records it with the delivery, lets only that worker ack the
	// item, and counts it in QueueStats.WorkersPolling. "" sends none.
	WorkerID string
}

// AckParams are the parameters of AckWork.
type AckParams struct {
	// WorkerID is sent as the Worker-ID header; it must be the one the item was delivered
	// to, if any (409 otherwise). "" sends none.
	WorkerID string
}

// HeartbeatParams are the parameters of HeartbeatWork. Zero values are not sent.
type HeartbeatParams struct {
	// ExpectedLastHeartbeat makes the heartbeat conditional: NoHeartbeat for the first
	// one, then the previous Heartbeat.LastHeartbeat, unchanged. A mismatch fails with
	// 412 (IsPreconditionFailed). "" sends none: the heartbeat is unconditional.
	ExpectedLastHeartbeat string
	// DesiredTTLSeconds is the lease to ask for; the server clamps it to [10, 600]. 0
	// means the server's default, 60.
	DesiredTTLSeconds int
}

// UpdateWorkParams is the body of UpdateWork.
type UpdateWorkParams struct {
	// Metadata is merged: a value upserts its key, nil deletes it, absent keys stay. nil
	// changes nothing.
	Metadata map[string]*string `json:"metadata,omitempty"`
}

// workPath is the path of one work item.
func workPath(environmentID, workID string) (string, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return "", err
	}
	w, err := segment("work_id", workID)
	if err != nil {
		return "", err
	}
	return "environments/" + env + "/work/" + w, nil
}

// workerHeader is the Worker-ID header of a poll or an ack, nil for none.
func workerHeader(workerID string) http.Header {
	if workerID == "" {
		return nil
	}
	return http.Header{"Worker-Id": {workerID}}
}

// ListWork reads one page of an environment's work items, in queue order, all states
// unless params.States filters them. The environment must be self_hosted (400 otherwise).
func (c *Client) ListWork(ctx context.Context, environmentID string, params ListWorkParams, opts ...RequestOption) (*Page[Work], error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	q := params.values()
	if len(params.States) > 0 {
		states := make([]string, len(params.States))
		for i, s := range params.States {
			states[i] = string(s)
		}
		q.Set("state", strings.Join(states, ","))
	}
	return call[Page[Work]](ctx, c, &request{method: "GET", path: "environments/" + env + "/work", query: q, opts: opts})
}

// AllWork iterates over an environment's work items from params on, page after page.
func (c *Client) AllWork(ctx context.Context, environmentID string, params ListWorkParams, opts ...RequestOption) iter.Seq2[Work, error] {
	return pages(ctx, params.ListParams, func(ctx context.Context, lp ListParams) (*Page[Work], error) {
		p := params
		p.ListParams = lp
		return c.ListWork(ctx, environmentID, p, opts...)
	})
}

// PollWork claims the oldest deliverable item of an environment, waiting up to
// params.BlockMS for one. It returns nil and no error when there is none: the server
// answered null (or 204, or an empty body, as other compatible services may).
//
// A polled item stays queued until AckWork; if it is not acknowledged within the reclaim
// window, another poll may deliver it again. Like every GET, a poll is retried after a
// failure, which is safe: an item delivered to an answer that was lost is reclaimed.
func (c *Client) PollWork(ctx context.Context, environmentID string, params PollParams, opts ...RequestOption) (*Work, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if params.BlockMS != 0 {
		q.Set("block_ms", strconv.Itoa(params.BlockMS))
	}
	if params.ReclaimOlderThanMS != nil {
		q.Set("reclaim_older_than_ms", strconv.Itoa(*params.ReclaimOlderThanMS))
	}
	r := &request{method: "GET", path: "environments/" + env + "/work/poll", query: q,
		header: workerHeader(params.WorkerID), opts: opts}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	if isNothing(resp) {
		return nil, nil
	}
	return decode[Work](r, resp)
}

// GetWorkStats reads the queue statistics of an environment.
func (c *Client) GetWorkStats(ctx context.Context, environmentID string, opts ...RequestOption) (*QueueStats, error) {
	env, err := segment("environment_id", environmentID)
	if err != nil {
		return nil, err
	}
	return call[QueueStats](ctx, c, &request{method: "GET", path: "environments/" + env + "/work/stats", opts: opts})
}

// GetWork reads a work item; an item of another environment is 404.
func (c *Client) GetWork(ctx context.Context, environmentID, workID string, opts ...RequestOption) (*Work, error) {
	p, err := workPath(environmentID, workID)
	if err != nil {
		return nil, err
	}
	return call[Work](ctx, c, &request{method: "GET", path: p, opts: opts})
}

// UpdateWork merges params.Metadata into the item's metadata, in any state.
func (c *Client) UpdateWork(ctx context.Context, environmentID, workID string, params UpdateWorkParams, opts ...RequestOption) (*Work, error) {
	p, err := workPath(environmentID, workID)
	if err != nil {
		return nil, err
	}
	body, err := jsonBody(params)
	if err != nil {
		return nil, err
	}
	return call[Work](ctx, c, &request{method: "POST", path: p, body: body, opts: opts})
}

// AckWork acknowledges a polled item: queued → starting, which starts its lease with the
// default TTL. Acknowledging again from the same worker (or with no Worker-ID) answers
// the item unchanged; from another worker, or once stopping or stopped, it fails with 409
// (IsConflict).
func (c *Client) AckWork(ctx context.Context, environmentID, workID string, params AckParams, opts ...RequestOption) (*Work, error) {
	p, err := workPath(environmentID, workID)
	if err != nil {
		return nil, err
	}
	return call[Work](ctx, c, &request{method: "POST", path: p + "/ack", body: emptyBody,
		header: workerHeader(params.WorkerID), opts: opts})
}

// HeartbeatWork extends the lease of an acknowledged item (starting → active on the
// first one). It sends no body, as the official Go SDK does; the server reads only the
// query. A heartbeat on a queued or stopped item fails with 409 (IsConflict: the lease is
// lost, abandon the item without stopping it); a mismatched ExpectedLastHeartbeat with
// 412 (IsPreconditionFailed, with Error.CurrentState). When the answer's State is
// stopping, drain and confirm with StopWork.
func (c *Client) HeartbeatWork(ctx context.Context, environmentID, workID string, params HeartbeatParams, opts ...RequestOption) (*Heartbeat, error) {
	p, err := workPath(environmentID, workID)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if params.ExpectedLastHeartbeat != "" {
		q.Set("expected_last_heartbeat", params.ExpectedLastHeartbeat)
	}
	if params.DesiredTTLSeconds != 0 {
		q.Set("desired_ttl_seconds", strconv.Itoa(params.DesiredTTLSeconds))
	}
	return call[Heartbeat](ctx, c, &request{method: "POST", path: p + "/heartbeat", query: q, opts: opts})
}

// StopWork stops a work item. force=false is graceful: an acknowledged item moves to
// stopping (its worker drains, then calls StopWork itself to reach stopped), anything
// else to stopped. force=true stops it at once. Stopping a stopped item answers it
// unchanged.
func (c *Client) StopWork(ctx context.Context, environmentID, workID string, force bool, opts ...RequestOption) (*Work, error) {
	p, err := workPath(environmentID, workID)
	if err != nil {
		return nil, err
	}
	body := []byte(fmt.Sprintf(`{"force":%t}`, force))
	return call[Work](ctx, c, &request{method: "POST", path: p + "/stop", body: body, opts: opts})
}
