package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Listener returns ln with its connections watched for the answers that net/http writes
// by itself, before any handler runs, and offers no hook for: a request it cannot parse
// (a malformed request line, a bad percent-escape in the path such as /environments/%zz,
// a missing or malformed Host, an invalid header) is 400, headers over the http.Server's
// MaxHeaderBytes are 431, an unknown Transfer-Encoding is 501, an HTTP version other than
// 1.x is 505, and an Expect header other than 100-continue is 417. net/http answers
// those in plain text (or with no body) and without x-request-id; API.md §1 wants the
// error envelope on every non-2xx answer. The connection rewrites each into the envelope,
// with the same status and a fresh x-request-id (the request's own could not be read),
// logs it at Info and counts it in berth_http_requests_total with method "unknown" and
// route "unparsed".
//
// net/http writes these answers in a fixed form, each in one Write with the connection
// closed after it, and berth's own answers never take that form (they always carry
// x-request-id, and net/http adds Date to every handler's answer), so they are recognised
// by their bytes. Were a later Go to write them otherwise, they would pass through
// unchanged, as plain text: TestNetHTTPAnswersAreEnvelopes notices that.
//
// Behind TLS terminated by the http.Server itself the bytes are encrypted and nothing is
// recognised; berth serves plain HTTP.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &envelopeListener{Listener: ln, s: s}
}

type envelopeListener struct {
	net.Listener
	s *Server
}

func (l *envelopeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &envelopeConn{Conn: c, s: l.s}, nil
}

// envelopeConn is a server connection whose net/http-made answers become envelopes.
type envelopeConn struct {
	net.Conn
	s *Server
}

func (c *envelopeConn) Write(b []byte) (int, error) {
	status, detail, ok := netHTTPAnswer(b)
	if !ok {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(c.s.netHTTPEnvelope(status, detail)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// CloseWrite is the underlying connection's: net/http half-closes a connection after a
// 431 so that the client reads the answer rather than a reset.
func (c *envelopeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps net/http's sendfile and splice path for response bodies, which never
// hold an answer of net/http's own.
func (c *envelopeConn) ReadFrom(r io.Reader) (int64, error) { return io.Copy(c.Conn, r) }

// The forms of net/http's own answers (net/http/server.go, conn.serve): an error for a
// request it could not read, and the 417 of an unsupported Expect.
const (
	netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	netHTTP417          = "HTTP/1.1 417 Expectation Failed\r\n"
)

// netHTTPAnswer recognises a write that is one of net/http's own answers, and returns
// its status and the detail net/http gave, if any ("missing required Host header").
func netHTTPAnswer(b []byte) (status int, detail string, ok bool) {
	if len(b) > 1024 || !bytes.HasPrefix(b, []byte("HTTP/1.1 ")) {
		return 0, "", false
	}
	if bytes.HasPrefix(b, []byte(netHTTP417)) {
		// "HTTP/1.1 417 Expectation Failed\r\nConnection: close\r\nDate: …\r\nContent-Length: 0\r\n\r\n":
		// a handler's answer in form, but written before any handler runs.
		if bytes.HasSuffix(b, []byte("\r\nContent-Length: 0\r\n\r\n")) &&
			!bytes.Contains(bytes.ToLower(b), []byte("\r\nx-request-id:")) {
			return http.StatusExpectationFailed, "", true
		}
		return 0, "", false
	}
	line, body, found := bytes.Cut(b[len("HTTP/1.1 "):], []byte(netHTTPErrorHeaders))
	if !found || bytes.ContainsAny(line, "\r\n") || bytes.ContainsAny(body, "\r\n") || len(line) < 4 || line[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	// "400 Bad Request: missing required Host header": the detail follows the reason.
	if _, d, ok := bytes.Cut(line[4:], []byte(": ")); ok {
		detail = string(d)
	}
	return status, detail, true
}

// netHTTPEnvelope is the whole answer that replaces one of net/http's: the same status,
// the error envelope, a fresh x-request-id, and the connection closed as net/http does.
func (s *Server) netHTTPEnvelope(status int, detail string) []byte {
	typ, msg := typeInvalidRequest, ""
	switch status {
	case http.StatusBadRequest:
		msg = "The request could not be read: a malformed request line, path (such as a bad percent-escape) or header."
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = "The request's headers are too large."
	case http.StatusExpectationFailed:
		msg = "Expect: only 100-continue is supported."
	case http.StatusNotImplemented:
		typ, msg = typeAPI, "The request's Transfer-Encoding is not supported."
	case http.StatusHTTPVersionNotSupported:
		typ, msg = typeAPI, "The request's HTTP version is not supported."
	default:
		if status >= 500 {
			typ = typeAPI
		}
		msg = http.StatusText(status) + "."
	}
	if detail != "" {
		msg += " (" + detail + ")"
	}
	id := uuid.NewString()
	h := http.Header{}
	h.Set("x-request-id", id)
	body := mustErrorBody(headerOnly(h), &apiError{Status: status, Type: typ, Message: msg})
	// Counted, with no duration: the request was never timed.
	s.metrics.requests.WithLabelValues("unknown", "unparsed", strconv.Itoa(status)).Inc()
	attrs := []any{"request_id", id, "status", status}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	s.log.Info("request refused before routing", attrs...)
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
	fmt.Fprintf(&b, "Content-Type: application/json\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n", id, len(body))
	fmt.Fprintf(&b, "Date: %s\r\nConnection: close\r\n\r\n", time.Now().UTC().Format(http.TimeFormat))
	b.Write(body)
	return b.Bytes()
}

// headerOnly is a ResponseWriter that is only its header, for mustErrorBody.
type headerOnly http.Header

func (h headerOnly) Header() http.Header       { return http.Header(h) }
func (headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (headerOnly) WriteHeader(int)             {}
