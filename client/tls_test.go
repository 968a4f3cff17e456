package client_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
)

// WithCACertFile trusts a private CA: a server whose certificate it signed is reached
// (over HTTP/2), one the system does not trust is refused without it, and a bad file is
// an error of New.
func TestWithCACertFile(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	var wrapped int
	c, err := client.New(srv.URL, "", client.WithCACertFile(ca), client.WithTransportMiddleware(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) { wrapped++; return next.RoundTrip(r) })
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Healthz(t.Context()); err != nil {
		t.Fatalf("Healthz with the CA: %v", err)
	}
	if wrapped != 1 {
		t.Errorf("the middleware saw %d requests, want 1", wrapped)
	}

	plain, err := client.New(srv.URL, "", client.WithMaxRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Healthz(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("Healthz without the CA: %v, want a certificate error", err)
	}

	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate\n"), 0o644)
	for _, tc := range []struct {
		name string
		opts []client.Option
		want string
	}{
		{"missing file", []client.Option{client.WithCACertFile(filepath.Join(dir, "nope.pem"))}, "nope.pem"},
		{"no PEM", []client.Option{client.WithCACertFile(bad)}, "no PEM certificate"},
		{"foreign transport", []client.Option{client.WithCACertFile(ca),
			client.WithHTTPClient(&http.Client{Transport: roundTripFunc(http.DefaultTransport.RoundTrip)})}, "not an *http.Transport"},
	} {
		if _, err := client.New(srv.URL, "", tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
