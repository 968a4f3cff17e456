package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/testserver"
)

// This file is the in-process half of "Hostile clients" (API.md §1: no input, however
// malformed, may produce a 5xx or crash the process): bodies over 32 MiB that never end,
// deeply nested JSON, 10,000-key metadata, huge headers, paths and queries. The server is
// wrapped so that the test sees how many body bytes the API itself read. The slow-client
// timeouts live in cmd/berth/serve.go and are tested against a real process in
// cmd/berth/hostile_test.go.
//
// TestHostileClients runs in a process of its own (the test binary re-executed with
// -test.run), so that goleak can check, after the server, its listener and its store are
// shut down, that not one goroutine of all those requests is left behind: in the shared
// test process, other tests' goroutines would make that check meaningless.

const hoChildEnv = "BERTH_TEST_HOSTILE_CHILD"

const hoMaxBody = 32 << 20

// hoServer is a harness whose handler records how many body bytes the API read of each
// request that carries an X-Probe header.
type hoServer struct {
	*harness
	addr string
	mu   sync.Mutex
	read map[string]int64 // X-Probe → body bytes the API read
}

type hoCountingBody struct {
	io.ReadCloser
	n atomic.Int64
}

func (b *hoCountingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func hoNewServer(t *testing.T) *hoServer {
	t.Helper()
	st := openTestStore(t)
	clock := testserver.NewClock()
	srv := api.New(api.Config{Store: st, Now: clock.Now, Logger: discardLogger()})
	s := &hoServer{read: map[string]int64{}}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probe := r.Header.Get("X-Probe")
		if probe == "" {
			srv.ServeHTTP(w, r)
			return
		}
		// A shallow copy: net/http must still see its own body in the original request to
		// decide, after the handler, whether to drain or to close the connection.
		cb := &hoCountingBody{ReadCloser: r.Body}
		r2 := r.WithContext(r.Context())
		r2.Body = cb
		srv.ServeHTTP(w, r2)
		s.mu.Lock()
		s.read[probe] = cb.n.Load()
		s.mu.Unlock()
	}))
	s.harness = &harness{t: t, srv: srv, store: st, clock: clock, url: ts.URL}
	s.addr = ts.Listener.Addr().String()
	t.Cleanup(func() {
		srv.Shutdown()
		ts.Close()
		st.Close()
	})
	s.admin = s.token(api.RoleAdmin, "")
	return s
}

// bodyRead returns how many body bytes the API read of the request with X-Probe probe.
func (s *hoServer) bodyRead(t *testing.T, probe string) int64 {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.read[probe]
	if !ok {
		t.Fatalf("request %s never reached the API", probe)
	}
	return n
}

// hoExchange is one request on a raw connection: head (request line and headers, up to
// and including the blank line) and then, when chunked, the same chunk over and over
// until the server stops taking it or limit bytes are sent. It returns the response (read
// concurrently with the writing), how many body bytes were sent, and how the writing
// ended.
type hoExchange struct {
	res      *http.Response
	body     []byte
	readErr  error
	sent     int64
	writeErr error
}

func hoSend(t *testing.T, addr, head string, chunk []byte, limit int64) hoExchange {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	type answer struct {
		res  *http.Response
		body []byte
		err  error
	}
	resc := make(chan answer, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			resc <- answer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		resc <- answer{res, b, err}
	}()
	var x hoExchange
	_, x.writeErr = io.WriteString(conn, head)
	if chunk != nil {
		frame := append(append([]byte(strconv.FormatInt(int64(len(chunk)), 16)+"\r\n"), chunk...), "\r\n"...)
		for x.writeErr == nil && x.sent < limit {
			_, x.writeErr = conn.Write(frame)
			if x.writeErr == nil {
				x.sent += int64(len(chunk))
			}
		}
	}
	a := <-resc
	x.res, x.body, x.readErr = a.res, a.body, a.err
	return x
}

// hoWantEnvelope asserts a raw answer: status and the error envelope's type and param.
func hoWantEnvelope(t *testing.T, label string, x hoExchange, status int, errType string) {
	t.Helper()
	if x.readErr != nil || x.res == nil {
		t.Errorf("%s: no answer: %v (write: %v)", label, x.readErr, x.writeErr)
		return
	}
	var env struct {
		Type  string
		Error struct{ Type, Message string }
	}
	_ = json.Unmarshal(x.body, &env)
	if x.res.StatusCode != status || env.Type != "error" || env.Error.Type != errType ||
		x.res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s: got %d %s %q, want %d %s envelope", label, x.res.StatusCode, x.res.Header.Get("Content-Type"), x.body, status, errType)
	}
}

func TestHostileClients(t *testing.T) {
	if os.Getenv(hoChildEnv) != "1" {
		t.Parallel()
		hoRunInOwnProcess(t)
		return
	}
	// Alone in its process, and not parallel: every goroutine goleak finds is the server's.
	// Registered first, so it runs last: after the server, its listener and its store
	// have been shut down by the harness's cleanup.
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t)
	})
	s := hoNewServer(t)
	env := s.env(true)
	sess := s.session(env)
	item := amOnlyItem(t, s.harness, env)

	t.Run("body over 32 MiB, chunked, never ending", func(t *testing.T) {
		// A body with no Content-Length that goes on (up to 160 MiB) after the limit: the API
		// reads exactly 32 MiB + 1 byte of it, answers 400, and the server closes the
		// connection instead of draining the rest.
		for _, path := range []string{"/environments", "/sessions/" + sess + "/events", workPath(env, item, "/stop")} {
			probe := "chunked" + path
			head := "POST " + api.BasePath + path + " HTTP/1.1\r\nHost: berth\r\nAuthorization: Bearer " + s.admin +
				"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nX-Probe: " + probe + "\r\n\r\n"
			before := hoHeap()
			x := hoSend(t, s.addr, head, bytes.Repeat([]byte(" "), 64<<10), 160<<20)
			after := hoHeap()
			hoWantEnvelope(t, path, x, 400, "invalid_request_error")
			// What the refused body cost: allocated while it was read (the API buffers up to
			// 32 MiB + 1 in growing chunks, then copies once), and not kept afterwards.
			// Measured: 73 MiB in a release build, 147 MiB under -race, whose instrumentation
			// doubles io.ReadAll's allocations.
			allocated, bound := after.TotalAlloc-before.TotalAlloc, uint64(3*hoMaxBody)
			if hoRaceBuild() {
				bound *= 2
			}
			if allocated > bound {
				t.Errorf("%s: %d MiB allocated for one oversized body, want at most %d MiB", path, allocated>>20, bound>>20)
			}
			if after.HeapAlloc > before.HeapAlloc+4<<20 {
				t.Errorf("%s: live heap %d MiB after the refused body, %d MiB before: the body is kept", path, after.HeapAlloc>>20, before.HeapAlloc>>20)
			}
			t.Logf("%s: %d MiB allocated while refusing it, live heap %d MiB before and after", path, allocated>>20, before.HeapAlloc>>20)
			if n := s.bodyRead(t, probe); n != hoMaxBody+1 {
				t.Errorf("%s: the API read %d body bytes, want exactly 32 MiB + 1 = %d", path, n, hoMaxBody+1)
			}
			if x.writeErr == nil {
				t.Errorf("%s: the server took all %d MiB of an oversized body instead of closing the connection", path, x.sent>>20)
			}
			t.Logf("%s: sent %.1f MiB before the server closed the connection; API read %d bytes", path, float64(x.sent)/(1<<20), s.bodyRead(t, probe))
		}
	})

	t.Run("body over 32 MiB declared", func(t *testing.T) {
		// Content-Length over the limit: refused before a byte is read (none is even sent).
		probe := "declared"
		head := "POST " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nAuthorization: Bearer " + s.admin +
			"\r\nContent-Length: " + strconv.Itoa(hoMaxBody+1) + "\r\nX-Probe: " + probe + "\r\n\r\n"
		x := hoSend(t, s.addr, head, nil, 0)
		hoWantEnvelope(t, "declared 32 MiB + 1", x, 400, "invalid_request_error")
		if n := s.bodyRead(t, probe); n != 0 {
			t.Errorf("the API read %d bytes of a body declared too large", n)
		}
	})

	t.Run("body from an unauthenticated client", func(t *testing.T) {
		// Authentication comes first: a caller without a token cannot make the API read
		// a byte of its body.
		for _, auth := range []string{"", "Authorization: Bearer " + api.NewSecret() + "\r\n"} {
			probe := "unauthenticated" + strconv.Itoa(len(auth))
			head := "POST " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\n" + auth +
				"Transfer-Encoding: chunked\r\nX-Probe: " + probe + "\r\n\r\n"
			x := hoSend(t, s.addr, head, bytes.Repeat([]byte(" "), 64<<10), 160<<20)
			hoWantEnvelope(t, "unauthenticated", x, 401, "authentication_error")
			if n := s.bodyRead(t, probe); n != 0 {
				t.Errorf("the API read %d body bytes of an unauthenticated request", n)
			}
		}
	})

	t.Run("deeply nested JSON", func(t *testing.T) {
		const depth = 100_000
		arrays := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		objects := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
		for _, c := range []struct{ path, body string }{
			{"/environments", arrays},
			{"/environments", objects},
			{"/environments", `{"name":"n","metadata":` + objects + `}`},
			{"/environments", `{"name":"n","config":` + arrays + `}`},
			{"/sessions", `{"agent":` + objects + `,"environment_id":"` + env + `"}`},
			{"/sessions/" + sess + "/events", `{"events":[{"type":"user.message","content":` + arrays + `}]}`},
			{"/environments/" + env + "/work/" + item, `{"metadata":` + arrays + `}`},
			{"/tokens", `{"name":` + arrays + `}`},
		} {
			r := s.do("POST", c.path, c.body)
			wantError(t, r, 400, "invalid_request_error", "")
		}
		// Just under encoding/json's nesting limit, inside an event's content: stored
		// and served back as sent, or refused, but never a 5xx.
		deep := strings.Repeat("[", 9000) + strings.Repeat("]", 9000)
		r := s.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"system.message","content":`+deep+`}]}`)
		if r.Status >= 500 {
			t.Errorf("9,000-deep event content: %d %s", r.Status, r.Body)
		}
		if r.Status == 200 {
			ev := s.do("GET", "/sessions/"+sess+"/events?limit=100", "")
			if ev.Status != 200 || !bytes.Contains(ev.Body, []byte(deep)) {
				t.Errorf("9,000-deep event content not served back: %d", ev.Status)
			}
		}
		t.Logf("9,000-deep event content: %d", r.Status)
	})

	t.Run("10,000-key metadata", func(t *testing.T) {
		meta := make(map[string]string, 10_000)
		for i := range 10_000 {
			meta[fmt.Sprintf("key-%05d", i)] = "v"
		}
		mb, _ := json.Marshal(meta)
		m := string(mb)
		for _, c := range []struct{ path, body, param string }{
			{"/environments", `{"name":"n","metadata":` + m + `}`, "metadata"},
			{"/environments/" + env, `{"metadata":` + m + `}`, "metadata"},
			{"/sessions", `{"agent":"a","environment_id":"` + env + `","metadata":` + m + `}`, "metadata"},
			{"/sessions/" + sess, `{"metadata":` + m + `}`, "metadata"},
			{"/environments/" + env + "/work/" + item, `{"metadata":` + m + `}`, "metadata"},
		} {
			wantError(t, s.do("POST", c.path, c.body), 400, "invalid_request_error", c.param)
		}
		// As a self_hosted config: refused, naming one of the keys.
		r := s.do("POST", "/environments", `{"name":"n","config":{"type":"self_hosted",`+m[1:]+`}`)
		if r.Status != 400 || amErrType(r) != "invalid_request_error" || !strings.Contains(string(r.Body), `"param":"config.key-`) {
			t.Errorf("10,000-key config: %d %.300s", r.Status, r.Body)
		}
		// 10,000 unknown top-level fields are ignored (API.md §1).
		wantStatus(t, s.do("POST", "/environments", `{"name":"n",`+m[1:]), 201)
		// 10,000 events in one send: refused as a whole.
		evs := "[" + strings.TrimSuffix(strings.Repeat(`{"type":"system.message"},`, 10_000), ",") + "]"
		wantError(t, s.do("POST", "/sessions/"+sess+"/events", `{"events":`+evs+`}`), 400, "invalid_request_error", "events")
		// Nothing was changed by the refused requests.
		for _, p := range []string{"/environments/" + env, "/sessions/" + sess} {
			if md := s.do("GET", p, "").obj(t)["metadata"].(map[string]any); len(md) != 0 {
				t.Errorf("%s got %d metadata keys", p, len(md))
			}
		}
	})

	t.Run("huge headers", func(t *testing.T) {
		big := strings.Repeat("w", 64<<10)
		wantError(t, s.do("GET", "/environments/"+env+"/work/poll", "", header("Worker-ID", big)), 400, "invalid_request_error", "Worker-ID")
		wantError(t, s.do("POST", workPath(env, item, "/ack"), "", header("Worker-ID", big)), 400, "invalid_request_error", "Worker-ID")
		wantError(t, s.do("POST", "/environments", `{"name":"n"}`, header("Idempotency-Key", big)), 400, "invalid_request_error", "Idempotency-Key")
		wantError(t, s.do("GET", "/environments", "", as("pt-"+strings.Repeat("A", 64<<10))), 401, "authentication_error", "")
		// A 64 KiB x-request-id is not echoed: the server makes its own.
		r := s.do("GET", "/environments", "", header("x-request-id", big))
		wantStatus(t, r, 200)
		if id := r.Header.Get("x-request-id"); len(id) != 36 {
			t.Errorf("64 KiB x-request-id: answered with x-request-id of %d bytes", len(id))
		}
		// 900 KiB of unknown headers, as 900 headers of 1 KiB or as one: ignored.
		many := func(req *http.Request) {
			for i := range 900 {
				req.Header.Set(fmt.Sprintf("X-Junk-%03d", i), strings.Repeat("j", 1000))
			}
		}
		wantStatus(t, s.do("GET", "/environments", "", many), 200)
		wantStatus(t, s.do("GET", "/environments", "", header("X-Junk", strings.Repeat("j", 900<<10))), 200)
		// Over net/http's 1 MiB limit: 431, and the connection is closed.
		head := "GET " + api.BasePath + "/environments HTTP/1.1\r\nHost: berth\r\nAuthorization: Bearer " + s.admin +
			"\r\nX-Junk: " + strings.Repeat("j", 3<<19) + "\r\n\r\n"
		x := hoSend(t, s.addr, head, nil, 0)
		if x.res == nil || x.res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("1.5 MiB of headers: %v %q %v", x.res, x.body, x.readErr)
		}
	})

	t.Run("huge path and query", func(t *testing.T) {
		wantError(t, s.do("GET", "/environments/env_"+strings.Repeat("0", 512<<10), ""), 404, "not_found_error", "")
		// A 512 KiB positive integer is above 100, so it is treated as 100 (API.md §1);
		// 512 KiB that is not an integer is a 400.
		if r := s.do("GET", "/environments?limit="+strings.Repeat("9", 512<<10), ""); r.Status != 200 {
			t.Errorf("512 KiB limit of nines: %d, want 200 (treated as 100); %.200s", r.Status, r.Body)
		}
		wantError(t, s.do("GET", "/environments?limit="+strings.Repeat("9", 512<<10)+"x", ""), 400, "invalid_request_error", "limit")
		r := s.do("GET", "/environments?"+strings.Repeat("x=1&", 100_000), "")
		if r.Status != 200 {
			t.Errorf("100,000 unknown query parameters: %d %s", r.Status, r.Body)
		}
	})

	t.Run("still serving", func(t *testing.T) {
		wantStatus(t, s.doRaw("GET", "/readyz", ""), 200)
		wantStatus(t, s.do("GET", "/environments/"+env, ""), 200)
	})
}

// hoRaceBuild reports whether this test binary was built with the race detector.
func hoRaceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// hoHeap returns the memory statistics after a collection.
func hoHeap() runtime.MemStats {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// hoRunInOwnProcess runs TestHostileClients in a process of its own and reports its
// outcome, its output and its peak memory.
func hoRunInOwnProcess(t *testing.T) {
	timeout := 10 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - 10*time.Second
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHostileClients$", "-test.count=1", "-test.v",
		"-test.timeout="+timeout.String())
	cmd.Env = append(os.Environ(), hoChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var maxRSS int64
	if cmd.ProcessState == nil {
		t.Fatalf("run the test binary: %v", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss // KiB on Linux
	}
	// The peak RSS is reported, not bounded: under -race it is mostly the detector's
	// shadow memory; the bounds are on the Go heap, in the subtests.
	t.Logf("hostile clients, in a process of their own (peak RSS %d MiB):\n%s", maxRSS>>10, out)
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestHostileClients")) {
		t.Fatalf("hostile clients failed: %v", err)
	}
}
