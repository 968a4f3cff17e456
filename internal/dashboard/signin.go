package dashboard

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
)

// maxSignInBody bounds a sign-in request: it holds one token.
const maxSignInBody = 8 << 10

// The sign-in errors the API's own messages do not say well enough on a form.
const (
	msgNoToken     = "Enter a token."
	msgWorkerToken = "This is a worker token. Sign in with an admin or member token."
)

// signIn checks a token with the API and, if it may use the dashboard, keeps it in the
// session cookie. The API decides: a token it answers GET /environments for (admin,
// member) may sign in; a worker token is refused (403), a bad one gets the API's 401.
//
// The body is JSON {"token":"…"} (the page) or a form with a token field (the same form
// submitted without scripts; it gets a redirect to / on success).
func (d *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	form := false
	var token string
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		form = true
		token = r.PostFormValue("token")
	default:
		var body struct {
			Token string `json:"token"`
		}
		b, err := io.ReadAll(r.Body)
		if err != nil || (len(strings.TrimSpace(string(b))) > 0 && json.Unmarshal(b, &body) != nil) {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "Send {\"token\": \"pt-…\"}.")
			return
		}
		token = body.Token
	}
	token = strings.TrimSpace(token)
	if token == "" {
		writeError(w, http.StatusBadRequest, "invalid_request_error", msgNoToken)
		return
	}
	role, a, err := d.role(r.Context(), token)
	if err != nil {
		d.log.Error("dashboard sign-in", "err", err)
		writeError(w, http.StatusInternalServerError, "api_error", "Internal server error.")
		return
	}
	if a.status != http.StatusOK {
		if a.status == http.StatusForbidden {
			writeError(w, http.StatusForbidden, "permission_error", msgWorkerToken)
			return
		}
		relayAnswer(w, a)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	if form {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"role": role})
}

// signOut clears the session cookie. The token itself stays valid: it is the API's, and
// other clients may hold it.
func (d *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, map[string]bool{"signed_in": false})
}

// me tells the page whether its cookie holds a token that may use the dashboard, and the
// token's role; otherwise it answers the API's error.
func (d *Handler) me(w http.ResponseWriter, r *http.Request) {
	role, a, err := d.role(r.Context(), secret(r))
	if err != nil {
		d.log.Error("dashboard session", "err", err)
		writeError(w, http.StatusInternalServerError, "api_error", "Internal server error.")
		return
	}
	if a.status != http.StatusOK {
		relayAnswer(w, a)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"role": role})
}

// role asks the API what secret may do: a is the answer to GET /environments (200 for
// the admin and member tokens that may use the dashboard), and role, when a is 200, is
// "admin" if the API also answers the admin-only GET /tokens, else "member".
func (d *Handler) role(ctx context.Context, secret string) (role string, a answer, err error) {
	a, err = d.call(ctx, secret, http.MethodGet, "/environments?limit=1", nil)
	if err != nil || a.status != http.StatusOK {
		return "", a, err
	}
	t, err := d.call(ctx, secret, http.MethodGet, "/tokens?limit=1", nil)
	if err != nil {
		return "", a, err
	}
	if t.status == http.StatusOK {
		return "admin", a, nil
	}
	return "member", a, nil
}

// relayAnswer writes an in-process API answer as it is.
func relayAnswer(w http.ResponseWriter, a answer) {
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(a.status)
	w.Write(a.body)
}
