// Package dashboard is berth's live web dashboard: one page, embedded in the binary, that
// shows the environments and their queues, work items with their timelines, and sessions
// with their events as they are committed (a relay of the API's event stream, events.go),
// and that creates sessions, sends messages to them and stops work items.
//
// The dashboard holds no rules and no authentication of its own. Every read and every
// action is a request to the API handler, made in-process with the token the browser
// signed in with, whose answer is relayed or shown as it is; so the API decides, in one
// place, who may see and do what. The token is kept in an HttpOnly, SameSite=Strict
// cookie, and every request that could change anything must also pass Go's
// cross-origin protection.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-sh/berth/internal/store"
)

// Config configures the dashboard.
type Config struct {
	// API serves the API (an *api.Server). Every path that is not the dashboard's goes
	// to it unchanged, and the dashboard's own reads and actions are requests to it.
	API http.Handler
	// Store is read for the delivery details of work items that the API object does not
	// carry (to whom and how often it was delivered, who acknowledged it, when its lease
	// expires), and only for items the API has just answered to the same token: a work
	// item's page, and the workers of the work list's rows.
	Store store.Store
	// Logger receives the dashboard's errors; nil means slog.Default(). Token secrets are
	// never logged.
	Logger *slog.Logger
	// Interval is how often a live view is computed again; 0 means 500 ms.
	Interval time.Duration
	// Context ends every live view when it is done, so that a server that shuts down is
	// not held open by browsers; nil means context.Background().
	Context context.Context
}

// defaultInterval keeps a live view within half a second of the store: quick enough that
// a state change looks immediate, slow enough that an open tab costs little.
const defaultInterval = 500 * time.Millisecond

// cookieName is the cookie that holds the token secret. It is HttpOnly: the page's
// scripts never see the token.
const cookieName = "berth_token"

//go:embed assets
var assetFS embed.FS

// Handler serves the dashboard and, for every other path, the API. Create it with New.
type Handler struct {
	api      http.Handler
	store    store.Store
	log      *slog.Logger
	interval time.Duration
	ctx      context.Context
	ui       http.Handler
	index    []byte
}

// New returns the dashboard handler for cfg.
func New(cfg Config) *Handler {
	d := &Handler{api: cfg.API, store: cfg.Store, log: cfg.Logger, interval: cfg.Interval, ctx: cfg.Context}
	if d.log == nil {
		d.log = slog.Default()
	}
	if d.interval <= 0 {
		d.interval = defaultInterval
	}
	if d.ctx == nil {
		d.ctx = context.Background()
	}
	var err error
	if d.index, err = assetFS.ReadFile("assets/index.html"); err != nil {
		panic("dashboard: " + err.Error()) // the file is embedded: only a broken build lacks it
	}
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		panic("dashboard: " + err.Error())
	}

	mux := http.NewServeMux()
	mux.Handle("GET /ui/assets/", http.StripPrefix("/ui/assets/", assetHandler(http.FileServerFS(assets))))
	mux.HandleFunc("POST /ui/signin", d.signIn)
	mux.HandleFunc("POST /ui/signout", d.signOut)
	mux.Handle("GET /ui/me", sameOriginRead(http.HandlerFunc(d.me)))
	mux.Handle("GET /ui/view", sameOriginRead(http.HandlerFunc(d.view)))
	mux.Handle("GET /ui/stream", sameOriginRead(http.HandlerFunc(d.stream)))
	mux.Handle("GET /ui/events", sameOriginRead(http.HandlerFunc(d.events)))
	mux.Handle("/ui/api/", sameOriginRead(http.HandlerFunc(d.relay)))
	mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found_error", "No such dashboard page.")
	})

	// Every unsafe method (sign-in, sign-out, the API's POSTs and DELETEs) must come from
	// the dashboard's own origin. SameSite=Strict already keeps the cookie off requests
	// from other sites; this also refuses other origins of the same site, and requests
	// made without the cookie (sign-in).
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "permission_error", "Cross-origin request refused.")
	}))
	d.ui = cop.Handler(mux)
	return d
}

// ServeHTTP serves the page at /, the dashboard under /ui/, and passes everything else to
// the API unchanged.
func (d *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		d.page(w, r)
	case strings.HasPrefix(r.URL.Path, "/ui/"):
		d.ui.ServeHTTP(w, r)
	default:
		d.api.ServeHTTP(w, r)
	}
}

// contentSecurityPolicy allows the page its own scripts, styles and connections and
// nothing else: no inline script, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

func (d *Handler) page(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(d.index)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(d.index)
	}
}

// assetHandler serves the embedded assets, and no directory listing. The files carry no
// modification time, so browsers revalidate them (no-cache) and get them again whole;
// they are small.
func assetHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			writeError(w, http.StatusNotFound, "not_found_error", "No such dashboard page.")
			return
		}
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// sameOriginRead refuses reads that a page of another origin makes with the browser's
// cookie. SameSite=Strict keeps the cookie off requests from other sites, but not off
// those from another origin of the same site (a sibling subdomain), and some reads have
// effects (a poll records a delivery). Requests without Sec-Fetch-Site (not a browser, or
// an old one) pass: they carry no one else's cookie.
func sameOriginRead(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "", "same-origin", "none":
			next.ServeHTTP(w, r)
		default:
			writeError(w, http.StatusForbidden, "permission_error", "Cross-origin request refused.")
		}
	})
}

// errorEnvelope is the API's error envelope, in the API's key order (without a
// request_id: the dashboard's own answers are not API requests).
type errorEnvelope struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError writes an error in the shape of the API's envelope.
func writeError(w http.ResponseWriter, status int, typ, message string) {
	e := errorEnvelope{Type: "error"}
	e.Error.Type, e.Error.Message = typ, message
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"type":"error","error":{"type":"api_error","message":"Internal server error."}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
