package testserver

import (
	"fmt"
	"io"
	"net/http"
	"sync"
)

// Transport is an http.RoundTripper that serves every request in-process with Handler,
// without a network: under testing/synctest a socket would keep the bubble from ever
// being idle, so time would not move. Each request runs in a goroutine of its own; the
// response's body streams what the handler writes as it writes it (a server-sent event
// stream works), and cancelling the request's context is what a client hanging up is to
// the handler.
type Transport struct {
	Handler http.Handler
	// RemoteAddr is the requests' RemoteAddr; empty means 192.0.2.1:1234.
	RemoteAddr string
}

// RoundTrip implements http.RoundTripper.
func (tr *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	sreq := req.Clone(req.Context())
	sreq.RequestURI = req.URL.RequestURI()
	sreq.Host = req.URL.Host
	if req.Host != "" {
		sreq.Host = req.Host
	}
	sreq.RemoteAddr = tr.RemoteAddr
	if sreq.RemoteAddr == "" {
		sreq.RemoteAddr = "192.0.2.1:1234"
	}
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	pr, pw := io.Pipe()
	w := &pipeWriter{header: http.Header{}, pw: pw, req: req, body: pr, ready: make(chan *http.Response, 1)}
	go func() {
		defer pw.Close()
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				panic(p)
			}
		}()
		tr.Handler.ServeHTTP(w, sreq)
		w.WriteHeader(http.StatusOK) // a handler that wrote nothing answered 200
	}()
	select {
	case res := <-w.ready:
		return res, nil
	case <-req.Context().Done():
		pr.CloseWithError(req.Context().Err())
		return nil, req.Context().Err()
	}
}

// pipeWriter is the handler's side of an in-process exchange.
type pipeWriter struct {
	header http.Header
	pw     *io.PipeWriter
	body   *io.PipeReader
	req    *http.Request
	ready  chan *http.Response

	once sync.Once
}

func (w *pipeWriter) Header() http.Header { return w.header }

func (w *pipeWriter) WriteHeader(code int) {
	w.once.Do(func() {
		h := w.header.Clone()
		if h.Get("Content-Type") == "" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.ready <- &http.Response{
			Status: fmt.Sprintf("%d %s", code, http.StatusText(code)), StatusCode: code, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: h, Body: w.body, ContentLength: -1, Request: w.req,
		}
	})
}

func (w *pipeWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.pw.Write(b)
}

// Flush is a no-op: every Write reaches the reader as it is read.
func (w *pipeWriter) Flush() {}
