package client

import "context"

// Healthz asks whether the server process is up (GET /healthz at the server root, no
// token needed); nil means it is. The server root is the base URL without its trailing
// /api/v1/cloud, or the host's root when the base URL does not end so.
func (c *Client) Healthz(ctx context.Context, opts ...RequestOption) error {
	_, err := c.do(ctx, &request{method: "GET", path: "healthz", root: true, opts: opts})
	return err
}

// Readyz asks whether the server can reach its storage (GET /readyz at the server root);
// nil means it can, an *Error with status 503 that it cannot. Like every GET it is
// retried, so a server that stays unready costs the caller the whole retry schedule:
// bound it with ctx, or use a client made WithMaxRetries(0) for a quick probe.
func (c *Client) Readyz(ctx context.Context, opts ...RequestOption) error {
	_, err := c.do(ctx, &request{method: "GET", path: "readyz", root: true, opts: opts})
	return err
}
