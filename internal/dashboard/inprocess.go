package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/berth-sh/berth/internal/api"
)

// maxAnswer bounds what one in-process API answer may hold in memory. The dashboard asks
// for pages of at most 100 objects; only events carry bodies of the clients' choosing.
const maxAnswer = 16 << 20

var errAnswerTooLarge = errors.New("API answer too large for the dashboard")

// answer is an API response, read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// recorder is the in-memory ResponseWriter that in-process API requests are served with.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	tooBig bool
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.body.Len()+len(b) > maxAnswer {
		r.tooBig = true
		return 0, errAnswerTooLarge
	}
	return r.body.Write(b)
}

// call makes one API request in-process, as the holder of secret ("" sends no token, which
// the API answers 401), and returns the answer. target is a path under the API's base
// path with its query, e.g. "/environments?limit=1".
func (d *Handler) call(ctx context.Context, secret, method, target string, body []byte) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, method, api.BasePath+target, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	d.api.ServeHTTP(rec, req)
	if rec.tooBig {
		return answer{}, errAnswerTooLarge
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return answer{status: rec.status, header: rec.header, body: rec.body.Bytes()}, nil
}

// errorOf reads the API's error envelope of a non-2xx answer.
func (a answer) errorOf() viewError {
	var env struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(a.body, &env)
	e := viewError{Status: a.status, Type: env.Error.Type, Message: env.Error.Message}
	if e.Message == "" {
		e.Message = http.StatusText(a.status)
	}
	return e
}

// secret returns the token secret of the request's cookie, or "".
func secret(r *http.Request) string {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// relayHeaders are the request headers the page may send on to the API. Authorization
// comes from the cookie alone; cookies and everything else stay behind.
var relayHeaders = []string{"Content-Type", "Idempotency-Key", "Worker-ID", "X-Request-Id"}

// relay serves /ui/api/… as the API's /api/…: same method, path, query and body, with the
// cookie's token as the bearer token, and the API's answer as it is. Unsafe methods get
// here only after the cross-origin check.
func (d *Handler) relay(w http.ResponseWriter, r *http.Request) {
	target := strings.TrimPrefix(r.URL.EscapedPath(), "/ui")
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, target, r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "Malformed request path.")
		return
	}
	req.ContentLength = r.ContentLength
	req.Host = r.Host
	req.RemoteAddr = r.RemoteAddr
	for _, name := range relayHeaders {
		if v := r.Header.Values(name); len(v) > 0 {
			req.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	if s := secret(r); s != "" {
		req.Header.Set("Authorization", "Bearer "+s)
	}
	w.Header().Set("Cache-Control", "no-store")
	d.api.ServeHTTP(w, req)
}
