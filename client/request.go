package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// request is one API call before it is sent: everything needed to send it again.
type request struct {
	method string
	path   string // relative to the base, each ID already escaped by segment
	root   bool   // resolve path against the server root instead of the API base
	query  url.Values
	header http.Header // headers of the call itself (Worker-ID)
	body   []byte      // nil: no body; otherwise sent as JSON, the same bytes every attempt
	opts   []RequestOption
}

// response is a successful answer, read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// emptyBody is what a bodiless POST sends, as the official SDKs do: an empty JSON object.
var emptyBody = []byte("{}")

// jsonBody encodes params as a request body.
func jsonBody(params any) ([]byte, error) {
	b, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("berth: encode request: %w", err)
	}
	return b, nil
}

// segment escapes one path ID as a single segment, so that "/" becomes %2F and "?" %3F.
// "." and ".." are escaped as well: left alone, they would be read as dot segments and
// address another resource. An empty ID fails here, before anything is sent.
func segment(name, id string) (string, error) {
	if id == "" {
		return "", fmt.Errorf("berth: %s is empty", name)
	}
	s := url.PathEscape(id)
	if s == "." || s == ".." {
		s = strings.ReplaceAll(s, ".", "%2E")
	}
	return s, nil
}

// url resolves the request's path against the base (or the root) and adds its query.
func (c *Client) url(r *request) (*url.URL, error) {
	base := c.base
	if r.root {
		base = c.root
	}
	u := *base
	u.RawPath = base.EscapedPath() + r.path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("berth: path %q: %w", r.path, err)
	}
	u.Path = p
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	return &u, nil
}

// do sends the request, retrying it as retry.go allows, and returns a 2xx answer. A non-2xx
// answer is returned as *Error; a transport error, or the end of ctx, wrapped.
func (c *Client) do(ctx context.Context, r *request) (*response, error) {
	u, err := c.url(r)
	if err != nil {
		return nil, err
	}
	header := c.header(r)
	retryable := mayRetry(r.method, header)
	for attempt := 0; ; attempt++ {
		resp, err := c.attempt(ctx, r.method, u, header, r.body)
		var last error
		switch {
		case err == nil && resp.status/100 == 2:
			return resp, nil
		case err == nil:
			apiErr := newError(resp)
			if !retryable || !retryStatus(resp.status) || attempt >= c.maxRetries {
				return nil, apiErr
			}
			last = apiErr
		case ctx.Err() != nil:
			// The attempt failed because the caller gave up.
			return nil, fmt.Errorf("berth: %s %s: %w", r.method, u.Redacted(), context.Cause(ctx))
		case !retryable || attempt >= c.maxRetries:
			return nil, err
		default:
			last = err
		}
		var h http.Header
		if resp != nil {
			h = resp.header
		}
		if sleep(ctx, c.backoff.delay(attempt, h)) != nil {
			return nil, fmt.Errorf("berth: %s %s: %w (while waiting to retry after: %v)",
				r.method, u.Redacted(), context.Cause(ctx), last)
		}
	}
}

// header builds the headers every attempt of r carries: the client's, then the call's,
// then the caller's RequestOptions, each overriding the one before.
func (c *Client) header(r *request) http.Header {
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", c.userAgent)
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	if r.body != nil {
		h.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		h[k] = v
	}
	var rc requestConfig
	for _, opt := range r.opts {
		opt(&rc)
	}
	for k, v := range rc.header {
		h[k] = v
	}
	return h
}

// attempt sends one attempt and reads its answer whole. Each attempt gets a fresh reader
// over the same body bytes, so a retry sends exactly what the first attempt sent.
func (c *Client) attempt(ctx context.Context, method string, u *url.URL, header http.Header, body []byte) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("berth: %w", err)
	}
	req.Header = header.Clone()
	if body != nil {
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("berth: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("berth: %s %s: read response: %w", method, u.Redacted(), err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// call sends r and decodes its answer into a new T.
func call[T any](ctx context.Context, c *Client, r *request) (*T, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	return decode[T](r, resp)
}

// decode reads a success answer into a new T. An empty body or a JSON null is an error
// here: only PollWork takes them for an answer (no work), and every other endpoint
// answers with an object.
func decode[T any](r *request, resp *response) (*T, error) {
	if isNothing(resp) {
		return nil, fmt.Errorf("berth: %s %s: HTTP %d without a JSON object in the body", r.method, r.path, resp.status)
	}
	out := new(T)
	if err := json.Unmarshal(resp.body, out); err != nil {
		return nil, fmt.Errorf("berth: %s %s: decode response: %w", r.method, r.path, err)
	}
	return out, nil
}

// isNothing reports whether an answer carries no object: 204, an empty or all-whitespace
// body, or the JSON literal null.
func isNothing(resp *response) bool {
	b := bytes.TrimSpace(resp.body)
	return resp.status == http.StatusNoContent || len(b) == 0 || bytes.Equal(b, []byte("null"))
}
