package client

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"
)

// DefaultBaseURL is the API base of a berth server on its default listen address; New
// uses it when given an empty base URL.
const DefaultBaseURL = "http://127.0.0.1:8080/api/v1/cloud"

// basePath is where API.md puts the API. The service endpoints (/healthz, /readyz) live
// at the server root, which is found by removing it from the base URL's path.
const basePath = "/api/v1/cloud/"

const (
	// defaultMaxRetries gives three attempts in all, as the official SDKs make: enough to
	// ride out a restart or a brief overload, few enough that a caller learns of a real
	// outage within seconds.
	defaultMaxRetries = 2
	// defaultInitialBackoff and defaultMaxBackoff are the official SDKs' schedule
	// (0.5 s × 2^n, at most 8 s), so that berth's clients load a recovering server no
	// harder than the clients it was built to serve.
	defaultInitialBackoff = 500 * time.Millisecond
	defaultMaxBackoff     = 8 * time.Second
)

// Client calls the API. It is safe for concurrent use; its configuration does not change
// after New.
type Client struct {
	base       *url.URL // the API base, path ending in "/"
	root       *url.URL // the server root, for the service endpoints
	token      string
	http       *http.Client
	maxRetries int
	backoff    Backoff
	userAgent  string
	// caFile and middleware change the transport once the options are applied (tls.go).
	caFile     string
	middleware []func(http.RoundTripper) http.RoundTripper
}

// Option configures a Client in New.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc. The default is
// http.DefaultClient, which has no timeout of its own: deadlines come from each call's
// context, which also bounds every retry.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.http = hc }
}

// WithMaxRetries sets how many times a retryable request is retried after its first
// attempt (default 2, so 3 attempts). 0 disables retries.
func WithMaxRetries(n int) Option {
	return func(c *Client) { c.maxRetries = n }
}

// WithBackoff sets the backoff before retry n (counting from 0): initial × 2^n, at most
// max, less a random jitter of up to 25%. The defaults are 500 ms and 8 s. A server's
// Retry-After takes precedence.
func WithBackoff(initial, max time.Duration) Option {
	return func(c *Client) { c.backoff = Backoff{Initial: initial, Max: max} }
}

// WithUserAgent sets the User-Agent header (default "berth-client/<version>", the
// version of the berth module this package was built from).
func WithUserAgent(s string) Option {
	return func(c *Client) { c.userAgent = s }
}

// New returns a client of the API at baseURL, authenticating with token (a "pt-…" secret;
// empty sends no Authorization header, enough for Healthz and Readyz). Spaces and line
// breaks around the token are dropped: a token read from a file (a Kubernetes Secret made
// with --from-file) usually ends in a newline, which no header may carry.
//
// baseURL is the API base, such as "https://berth.example.com/api/v1/cloud"; empty means
// DefaultBaseURL, and a trailing slash is optional. Every path is resolved relative to it,
// so a compatible service mounted under any prefix works.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	base, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("berth: base URL: %w", err)
	}
	if (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("berth: base URL %q: want http:// or https:// and a host", baseURL)
	}
	base.RawQuery, base.Fragment, base.RawFragment = "", "", ""
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
		if base.RawPath != "" {
			base.RawPath += "/"
		}
	}
	c := &Client{
		base:       base,
		root:       serverRoot(base),
		token:      strings.TrimSpace(token),
		http:       http.DefaultClient,
		maxRetries: defaultMaxRetries,
		backoff:    Backoff{Initial: defaultInitialBackoff, Max: defaultMaxBackoff},
		userAgent:  "berth-client/" + moduleVersion(),
	}
	for _, opt := range opts {
		opt(c)
	}
	switch {
	case c.http == nil:
		return nil, errors.New("berth: WithHTTPClient: nil *http.Client")
	case c.maxRetries < 0:
		return nil, fmt.Errorf("berth: WithMaxRetries(%d): must not be negative", c.maxRetries)
	case c.backoff.Initial <= 0 || c.backoff.Max < c.backoff.Initial:
		return nil, fmt.Errorf("berth: WithBackoff(%v, %v): want 0 < initial ≤ max", c.backoff.Initial, c.backoff.Max)
	}
	if err := c.setUpTransport(); err != nil {
		return nil, err
	}
	return c, nil
}

// NormalizeBaseURL turns an API base URL as a person writes it (a command-line flag, an
// environment variable) into the base URL New wants: empty means DefaultBaseURL, and a
// bare server address, http://host:port with no path (or "/"), gets the API's base path
// /api/v1/cloud. A URL with any other path is kept as it is. A value without a scheme,
// such as "127.0.0.1:8080", is an error that shows the fix: berth never guesses between
// http and https for a URL that will carry a token.
func NormalizeBaseURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultBaseURL, nil
	}
	if !strings.Contains(s, "://") {
		return "", fmt.Errorf("berth: URL %q has no scheme: write http://%s (or https://%s)", s, s, s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("berth: URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("berth: URL %q: want http:// or https://, not %s://", s, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("berth: URL %q has no host: want http://host:port", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path, u.RawPath = strings.TrimSuffix(basePath, "/"), ""
	}
	return u.String(), nil
}

// BaseURL returns the API base the client resolves its paths against, with its trailing
// slash.
func (c *Client) BaseURL() string { return c.base.String() }

// serverRoot is where the service endpoints live: the base with API.md's base path
// removed from its end, or the host's root when the base does not end in it.
func serverRoot(base *url.URL) *url.URL {
	root := *base
	root.RawPath = ""
	if p, ok := strings.CutSuffix(base.Path, basePath); ok {
		root.Path = p + "/"
	} else {
		root.Path = "/"
	}
	return &root
}

// moduleVersion is the version of the berth module in this binary: the main module's
// when berth itself is built, a dependency's otherwise; "devel" when unknown.
func moduleVersion() string {
	const module = "github.com/berth-sh/berth"
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	version := ""
	if info.Main.Path == module {
		version = info.Main.Version
	}
	for _, dep := range info.Deps {
		if dep.Path == module {
			version = dep.Version
		}
	}
	if version == "" || version == "(devel)" {
		return "devel"
	}
	return version
}

// RequestOption changes one call: a header, or an Idempotency-Key. Every method takes
// them as its trailing arguments.
type RequestOption func(*requestConfig)

type requestConfig struct {
	header http.Header
}

// WithIdempotencyKey sends the Idempotency-Key header (at most 255 characters). The
// server then answers a repeat of the same request (same token, method, path, query and
// body, within 24 h) with the first answer and no second effect, which is also what makes
// the client willing to retry a POST or DELETE.
func WithIdempotencyKey(key string) RequestOption {
	return WithHeader("Idempotency-Key", key)
}

// WithHeader sets a request header, replacing any value the client would send itself
// (Authorization included: an explicit header wins over the client's token). The same
// header goes out on every attempt.
func WithHeader(key, value string) RequestOption {
	return func(rc *requestConfig) {
		if rc.header == nil {
			rc.header = http.Header{}
		}
		rc.header.Set(key, value)
	}
}

// String returns a pointer to s, for the optional fields of update params and for the
// values of a metadata patch (where nil deletes the key).
func String(s string) *string { return &s }
