package client_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
)

// NormalizeBaseURL: a bare server address gets the API's base path, any other path is
// kept, and a URL without a scheme is refused with the fix in the message.
func TestNormalizeBaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                                      client.DefaultBaseURL,
		"http://127.0.0.1:8080":                 "http://127.0.0.1:8080/api/v1/cloud",
		"http://127.0.0.1:8080/":                "http://127.0.0.1:8080/api/v1/cloud",
		" https://b.example.com ":               "https://b.example.com/api/v1/cloud",
		"https://b.example.com/api/v1/cloud":    "https://b.example.com/api/v1/cloud",
		"https://b.example.com/api/v1/cloud/":   "https://b.example.com/api/v1/cloud/",
		"https://b.example.com/prefix/v1/cloud": "https://b.example.com/prefix/v1/cloud",
	} {
		got, err := client.NormalizeBaseURL(in)
		if err != nil || got != want {
			t.Errorf("NormalizeBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, wantMsg := range map[string]string{
		"127.0.0.1:8080":   "write http://127.0.0.1:8080 (or https://127.0.0.1:8080)",
		"localhost:8080":   "write http://localhost:8080",
		"berth.example":    "write http://berth.example",
		"ftp://host/api":   "want http:// or https://",
		"http://":          "no host",
		"http://a b/":      `"http://a b/"`,
		"http://[::1/api/": `"http://[::1/api/"`,
	} {
		got, err := client.NormalizeBaseURL(in)
		if err == nil || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("NormalizeBaseURL(%q) = %q, %v; want an error saying %q", in, got, err, wantMsg)
		}
	}
}

// IsNoRoute tells a wrong URL from a missing resource: a base URL without the API's path
// gets berth's "No such route." on every call; a missing environment is a plain 404.
func TestIsNoRoute(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wrong, err := client.New(b.url+"/api/v1", b.token("admin", ""))
	if err != nil {
		t.Fatal(err)
	}
	_, err = wrong.ListEnvironments(b.ctx, client.ListEnvironmentsParams{})
	apiError(t, err, http.StatusNotFound, "not_found_error")
	if !client.IsNoRoute(err) || !client.IsNotFound(err) {
		t.Errorf("a base URL without /cloud: IsNoRoute(%v) = false", err)
	}
	_, err = b.admin.GetEnvironment(b.ctx, "env_0190f3be4fd2475d9a784bf2c739e119")
	apiError(t, err, http.StatusNotFound, "not_found_error")
	if client.IsNoRoute(err) {
		t.Errorf("a missing environment: IsNoRoute(%v) = true", err)
	}
	for _, e := range []error{
		&client.Error{StatusCode: 404, Message: "<html>404 Not Found</html>"}, // not the envelope: another server
	} {
		if !client.IsNoRoute(e) {
			t.Errorf("IsNoRoute(%v) = false", e)
		}
	}
	for _, e := range []error{nil, &client.Error{StatusCode: 400, Message: "No such route."}} {
		if client.IsNoRoute(e) {
			t.Errorf("IsNoRoute(%v) = true", e)
		}
	}
}

// A token read from a file keeps its trailing newline; the client sends the token alone.
func TestTokenFromAFile(t *testing.T) {
	t.Parallel()
	s := newScript(t, answering(envJSON))
	c, err := client.New(s.url+"/api/v1/cloud", " pt-fromfile\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEnvironment(t.Context(), "e"); err != nil {
		t.Fatalf("GetEnvironment with a token that ends in a newline: %v", err)
	}
	if got := s.requests()[0].Header.Get("Authorization"); got != "Bearer pt-fromfile" {
		t.Errorf("Authorization %q, want Bearer pt-fromfile", got)
	}
}
