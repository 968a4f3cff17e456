package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/berth-sh/berth/internal/store"
)

// Access says who may call a route.
type Access int

const (
	// Public routes take no token (service endpoints).
	Public Access = iota
	// AdminOnly routes take an admin token.
	AdminOnly
	// Members routes take an admin or member token.
	Members
	// WorkerEnvironment routes also take a worker token bound to the path's environment.
	WorkerEnvironment
	// WorkerSession routes also take a worker token bound to the environment of the
	// path's session; the handler checks the binding once it has loaded the session.
	WorkerSession
)

// Route is one method and path pattern (net/http ServeMux syntax) that the server serves.
type Route struct {
	Method  string
	Pattern string
	Access  Access
	handle  func(*call) error
}

func (s *Server) register() {
	b := BasePath
	s.routes = []*Route{
		{"POST", b + "/environments", Members, s.createEnvironment},
		{"GET", b + "/environments", Members, s.listEnvironments},
		{"GET", b + "/environments/{environment_id}", WorkerEnvironment, s.getEnvironment},
		{"POST", b + "/environments/{environment_id}", Members, s.updateEnvironment},
		{"DELETE", b + "/environments/{environment_id}", AdminOnly, s.deleteEnvironment},
		{"POST", b + "/environments/{environment_id}/archive", Members, s.archiveEnvironment},

		{"GET", b + "/environments/{environment_id}/work", WorkerEnvironment, s.listWork},
		{"GET", pollPattern, WorkerEnvironment, s.pollWork},
		{"GET", b + "/environments/{environment_id}/work/stats", WorkerEnvironment, s.workStats},
		{"GET", b + "/environments/{environment_id}/work/{work_id}", WorkerEnvironment, s.getWork},
		{"POST", b + "/environments/{environment_id}/work/{work_id}", WorkerEnvironment, s.updateWork},
		{"POST", b + "/environments/{environment_id}/work/{work_id}/ack", WorkerEnvironment, s.ackWork},
		{"POST", b + "/environments/{environment_id}/work/{work_id}/heartbeat", WorkerEnvironment, s.heartbeatWork},
		{"POST", b + "/environments/{environment_id}/work/{work_id}/stop", WorkerEnvironment, s.stopWork},

		{"POST", b + "/sessions", Members, s.createSession},
		{"GET", b + "/sessions", Members, s.listSessions},
		{"GET", b + "/sessions/{session_id}", WorkerSession, s.getSession},
		{"POST", b + "/sessions/{session_id}", Members, s.updateSession},
		{"DELETE", b + "/sessions/{session_id}", Members, s.deleteSession},
		{"POST", b + "/sessions/{session_id}/archive", Members, s.archiveSession},
		{"POST", b + "/sessions/{session_id}/cancel", Members, s.cancelSession},
		{"GET", b + "/sessions/{session_id}/events", WorkerSession, s.listEvents},
		{"POST", b + "/sessions/{session_id}/events", WorkerSession, s.sendEvents},
		{"GET", b + "/sessions/{session_id}/events/stream", WorkerSession, s.streamEvents},

		{"POST", webhooksPattern, AdminOnly, s.createWebhook},
		{"GET", webhooksPattern, Members, s.listWebhooks},
		{"DELETE", webhooksPattern + "/{webhook_id}", AdminOnly, s.deleteWebhook},
		{"GET", webhooksPattern + "/{webhook_id}/deliveries", Members, s.listDeliveries},

		{"POST", b + "/tokens", AdminOnly, s.createToken},
		{"GET", b + "/tokens", AdminOnly, s.listTokens},
		{"POST", b + "/tokens/{token_id}/revoke", AdminOnly, s.revokeToken},

		{"GET", "/healthz", Public, s.healthz},
		{"GET", "/readyz", Public, s.readyz},
		{"GET", "/metrics", Public, s.serveMetrics},
		{"GET", "/openapi.json", Public, s.openAPI},
	}
	byPattern := map[string][]*Route{}
	var patterns []string
	for _, rt := range s.routes {
		if byPattern[rt.Pattern] == nil {
			patterns = append(patterns, rt.Pattern)
		}
		byPattern[rt.Pattern] = append(byPattern[rt.Pattern], rt)
	}
	sort.Strings(patterns)
	for _, p := range patterns {
		s.mux.Handle(p, s.entry(byPattern[p], nil))
	}
	s.mux.Handle("/", s.entry(nil, errNoRoute))
	s.unclean = s.entry(nil, errUncleanPath)
}

type quietKey struct{}

// Quiet marks a request, made in-process with this context, whose access-log line is
// written at Debug rather than Info level: the dashboard's periodic reads, which would
// otherwise log several lines every half second for each open page. Everything else
// about the request (auth, metrics, errors) is unchanged.
func Quiet(ctx context.Context) context.Context {
	return context.WithValue(ctx, quietKey{}, true)
}

// statusClientClosed is the status counted and logged for a request whose client hung up
// before it was answered: nginx's 499 "client closed request". It is never sent (there is
// no one to send it to); it keeps a client that hangs up from counting as a server error.
const statusClientClosed = 499

// entry wraps the routes of one path pattern: request ID, panic recovery, access log and
// metrics, then method dispatch (405 for other methods; none, the answer for no
// pattern at all).
//
// A request whose context the client cancelled (it hung up) before an answer was written
// is counted and logged with status 499 (statusClientClosed), its access line at the
// level it would have had anyway (Info; Debug for quiet requests and empty polls) and
// with the status the handler chose, if it wrote one, as handler_status. The failure that the hang-up caused (a store call cut off by the
// cancellation) is logged at Debug, not Error: any client could otherwise fill the log
// and the 5xx rate by hanging up. A failure not caused by the cancellation is still logged
// at Error, and a panic is always a 500.
func (s *Server) entry(routes []*Route, none *apiError) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := r.Header.Get("x-request-id")
		if !validRequestID(reqID) {
			reqID = uuid.NewString()
		}
		w.Header().Set("x-request-id", reqID)
		log := s.log.With("request_id", reqID)
		rec := &statusRecorder{ResponseWriter: w, ctx: r.Context()}
		panicked := false
		var rt *Route
		for _, cand := range routes {
			if cand.Method == r.Method {
				rt = cand
			}
		}
		pattern := "unmatched"
		if len(routes) > 0 {
			pattern = routes[0].Pattern
		}
		defer func() {
			if p := recover(); p != nil {
				panicked = true
				log.Error("panic", "panic", p, "stack", string(debug.Stack()))
				if !rec.wrote {
					writeError(rec, errInternal)
				}
			}
			elapsed := time.Since(start)
			status := rec.status
			attrs := []any{"method", r.Method, "path", r.URL.EscapedPath()}
			if rec.clientGone() && !panicked {
				status = statusClientClosed
				attrs = append(attrs, "status", status)
				if rec.wrote {
					attrs = append(attrs, "handler_status", rec.status)
				}
			} else {
				attrs = append(attrs, "status", status)
			}
			s.metrics.observeRequest(r.Method, pattern, status, elapsed)
			level := slog.LevelInfo
			if r.Context().Value(quietKey{}) != nil || (rt != nil && rt.Pattern == pollPattern && rec.onlyNull()) {
				// The dashboard's live reads, and idle long polls (answered null): a
				// worker fleet's waiting would otherwise fill the log at Info.
				level = slog.LevelDebug
			}
			log.Log(r.Context(), level, "request", append(attrs, "duration_ms", float64(elapsed.Microseconds())/1000)...)
		}()
		switch {
		case len(routes) == 0:
			writeError(rec, none)
		case rt == nil:
			allow := make([]string, 0, len(routes))
			for _, cand := range routes {
				allow = append(allow, cand.Method)
			}
			rec.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(rec, &apiError{Status: http.StatusMethodNotAllowed, Type: typeInvalidRequest,
				Message: "Method " + r.Method + " is not allowed on this path."})
		default:
			c := &call{s: s, w: rec, r: r, route: rt, log: log}
			if err := c.serve(); err != nil {
				ae := asAPIError(err, nil)
				switch {
				case ae.Status < 500:
				case rec.clientGone() && errors.Is(err, context.Canceled):
					log.Debug("request failed: the client hung up", "err", err)
				default:
					log.Error("request failed", "err", err)
				}
				if !rec.wrote {
					writeError(rec, ae)
				}
			}
		}
	})
}

// validRequestID accepts a caller's x-request-id of 1–1024 printable ASCII characters
// (spaces included), which is echoed as sent. Anything else (control characters, bytes
// outside ASCII, a longer value) would be unsafe to echo into headers and logs, so the
// server makes a UUID instead.
func validRequestID(id string) bool {
	if id == "" || len(id) > 1024 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// call is one request on its way through a route.
type call struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	route *Route
	// log is the server's logger with this request's request_id: every line logged while
	// serving the request goes through it.
	log   *slog.Logger
	token store.Token
	// secret is the caller's token secret, kept for this request only: it keys the
	// sealing of replayed responses that carry a secret (idempotency.go).
	secret string
	body   []byte
}

// serve authenticates, checks the route's access, applies Idempotency-Key, and runs the
// handler.
func (c *call) serve() error {
	if c.route.Access != Public {
		if err := c.authenticate(); err != nil {
			return err
		}
		if err := c.authorize(); err != nil {
			return err
		}
	}
	// A body sent with GET or DELETE is ignored (API.md §1); POST bodies are read whole
	// here, so that an oversized one is refused before anything happens.
	c.body = []byte("{}")
	if c.r.Method == http.MethodPost {
		b, err := readBody(c.r)
		if err != nil {
			return err
		}
		c.body = b
	}
	if c.r.Method == http.MethodPost || c.r.Method == http.MethodDelete {
		if key := c.r.Header.Get("Idempotency-Key"); key != "" && c.route.Access != Public {
			return c.idempotent(key)
		}
	}
	return c.route.handle(c)
}

// json writes a success answer.
func (c *call) json(status int, v any) error {
	writeJSON(c.w, status, v)
	return nil
}

// webhooksPattern is the path of an environment's webhooks.
const webhooksPattern = BasePath + "/environments/{environment_id}/webhooks"

// pollPattern is the poll route's pattern, whose empty answers are logged at Debug.
const pollPattern = BasePath + "/environments/{environment_id}/work/poll"

// statusRecorder remembers the status written through it, and whether the body was the
// four bytes null (a poll that delivered nothing).
type statusRecorder struct {
	http.ResponseWriter
	ctx    context.Context // the request's
	status int
	wrote  bool
	writes int
	null   bool // the only write so far was "null"
	// gone is whether the request's context had been cancelled when the answer was
	// first written.
	gone bool
}

// clientGone reports whether the client hung up before an answer was written: the
// request's context was cancelled then, or, when nothing has been written, is by now.
// A request's context ends early only when its client goes away (a closed connection,
// a reset stream, or the in-process caller's own cancellation).
func (r *statusRecorder) clientGone() bool {
	if r.wrote {
		return r.gone
	}
	return r.ctx.Err() != nil
}

func (r *statusRecorder) first(code int) {
	r.status, r.wrote, r.gone = code, true, r.ctx.Err() != nil
}

// onlyNull reports whether the answer was 200 with the body null.
func (r *statusRecorder) onlyNull() bool { return r.status == http.StatusOK && r.writes == 1 && r.null }

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.first(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.first(http.StatusOK)
	}
	r.writes++
	r.null = string(b) == "null"
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
