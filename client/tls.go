package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
)

// WithCACertFile makes the client trust the CA certificates in the PEM file path, besides
// the system's, for an https:// base URL: a berth server whose certificate a private CA
// signed. The file is read once, in New, which fails if it cannot be read or holds no
// certificate.
//
// It applies to the *http.Transport of the client's http.Client (a clone of
// http.DefaultTransport when none is given, so HTTP/2 is kept); New fails if that client
// has a Transport of another type. To wrap the transport, use WithTransportMiddleware,
// which wraps it after the CA is in place.
func WithCACertFile(path string) Option {
	return func(c *Client) { c.caFile = path }
}

// WithTransportMiddleware wraps the client's transport (after WithCACertFile is applied):
// mw gets the RoundTripper the client would use and returns the one it will use. Several
// wrap in the order given, the last outermost.
func WithTransportMiddleware(mw func(next http.RoundTripper) http.RoundTripper) Option {
	return func(c *Client) { c.middleware = append(c.middleware, mw) }
}

// LoadCACertFile returns the system's certificate pool (an empty one where the system
// has none) with the PEM certificates of path added.
func LoadCACertFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("berth: CA certificate: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("berth: CA certificate %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// setUpTransport applies WithCACertFile and WithTransportMiddleware to a copy of the
// client's http.Client, so that the caller's is never changed.
func (c *Client) setUpTransport() error {
	if c.caFile == "" && len(c.middleware) == 0 {
		return nil
	}
	hc := *c.http
	rt := hc.Transport
	if c.caFile != "" {
		pool, err := LoadCACertFile(c.caFile)
		if err != nil {
			return err
		}
		if rt == nil {
			rt = http.DefaultTransport
		}
		t, ok := rt.(*http.Transport)
		if !ok {
			return fmt.Errorf("berth: WithCACertFile: the http.Client's Transport is a %T, not an *http.Transport (wrap it with WithTransportMiddleware instead)", rt)
		}
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.RootCAs = pool
		rt = t
	}
	for _, mw := range c.middleware {
		if rt == nil {
			rt = http.DefaultTransport
		}
		rt = mw(rt)
	}
	hc.Transport = rt
	c.http = &hc
	return nil
}
