package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-sh/berth/internal/testserver"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// This file is the out-of-process half of "Hostile clients": what only a real `berth serve`
// shows, because the limits live in serve.go's http.Server (slow clients) or need the
// whole process to be measured (a thousand parked long polls under producers: every
// request answered, every item delivered once, bounded memory, goroutines back to their
// baseline). The in-process half is internal/api/hostile_test.go.

// hsSoak says whether the long versions run (make soak).
var hsSoak = os.Getenv("BERTH_SOAK") == "1"

// hsProc is a running `berth serve` whose access log is counted, not kept: a thousand
// pollers make a great many lines. Lines above INFO are kept (the first 100).
type hsProc struct {
	cmd      *exec.Cmd
	addr     string
	mu       sync.Mutex
	lines    int
	loud     []string // WARN and ERROR lines
	errors   int
	exited   chan struct{}
	exitErr  error
	metricsC *http.Client
}

// hsStartServe starts `berth serve` (this test binary) on a free loopback port with extra
// flags and waits until it listens. The test's cleanup stops it with SIGTERM (SIGKILL
// after 15 s).
func hsStartServe(t *testing.T, dataDir string, flags ...string) *hsProc {
	t.Helper()
	return hsStartBinary(t, os.Args[0], dataDir, flags...)
}

// hsStartBinary is hsStartServe with another berth binary.
func hsStartBinary(t *testing.T, binary, dataDir string, flags ...string) *hsProc {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir}, flags...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &hsProc{cmd: cmd, exited: make(chan struct{}),
		metricsC: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines++
			if strings.Contains(line, "level=ERROR") {
				p.errors++
			}
			if !strings.Contains(line, "level=INFO") && len(p.loud) < 100 {
				p.loud = append(p.loud, line)
			}
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-p.exited
			t.Errorf("berth serve did not stop within 15 s of SIGTERM")
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("berth serve exited: %v\n%s", p.exitErr, strings.Join(p.loud, "\n"))
	case <-time.After(testserver.HangGuard):
		t.Fatalf("berth serve did not start")
	}
	return p
}

func (p *hsProc) url(path string) string { return "http://" + p.addr + path }

// logSummary returns the number of log lines, ERROR lines, and the lines above INFO.
func (p *hsProc) logSummary() (lines, errs int, loud []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines, p.errors, append([]string(nil), p.loud...)
}

var hsMetricRE = regexp.MustCompile(`(?m)^(go_goroutines|berth_work_pollers_parked|process_resident_memory_bytes) (\S+)$`)

// metrics reads the server's own gauges from /metrics, on a connection of its own.
func (p *hsProc) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	res, err := p.metricsC.Get(p.url("/metrics"))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	out := map[string]float64{}
	for _, m := range hsMetricRE.FindAllStringSubmatch(string(b), -1) {
		out[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if len(out) != 3 {
		t.Fatalf("/metrics lacks go_goroutines, berth_work_pollers_parked or process_resident_memory_bytes")
	}
	return out
}

// goroutinesSettle waits until the server runs at most want goroutines and returns the
// last count. A leak never settles: the bound (two minutes, for what takes milliseconds)
// turns it into a failure instead of a hang.
func (p *hsProc) goroutinesSettle(t *testing.T, want float64) float64 {
	t.Helper()
	guard := time.Now().Add(2 * time.Minute)
	for {
		g := p.metrics(t)["go_goroutines"]
		if g <= want || time.Now().After(guard) {
			return g
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// vmHWM is the process's peak resident set size, in bytes, from /proc.
func (p *hsProc) vmHWM(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// hsCall sends one JSON request and returns the status and body.
func hsCall(c *http.Client, method, url, token, body string, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// hsSetup creates a self_hosted environment and returns its ID.
func hsSetup(t *testing.T, p *hsProc, admin string) string {
	t.Helper()
	code, body, err := hsCall(http.DefaultClient, "POST", p.url("/api/v1/cloud/environments"), admin,
		`{"name":"hostile","config":{"type":"self_hosted"}}`)
	if err != nil || code != 201 {
		t.Fatalf("create environment: %d %s %v", code, body, err)
	}
	var env struct{ ID string }
	json.Unmarshal(body, &env)
	return env.ID
}

// hsSlowConn is one connection of a slow client: it writes head, then one byte of
// trickle every interval, until the server closes the connection or limit passes. It
// returns how long the connection lasted and what the server sent before closing.
func hsSlowConn(addr, head, trickle string, interval, limit time.Duration) (lasted time.Duration, got string, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	begin := time.Now()
	conn.SetDeadline(begin.Add(limit))
	closed := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(conn) // until the server closes (or the deadline)
		closed <- string(b)
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		return 0, "", err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case got = <-closed:
			lasted = time.Since(begin)
			if lasted >= limit {
				return lasted, got, errors.New("the server never closed the connection")
			}
			return lasted, got, nil
		case <-tick.C:
			if trickle != "" {
				conn.Write([]byte{trickle[i%len(trickle)]}) // fails once the server is gone
			}
		}
	}
}

// hsSlowClients runs n slow connections at once and checks that the server cuts each one
// off, no later than want+slack; meanwhile an honest client must be served throughout.
// Only the bound that protects the server is asserted, with room for a busy machine: how
// early a connection seems to be cut depends on when this process gets to start its
// clock, which on a loaded machine can be seconds after the server started its own.
func hsSlowClients(t *testing.T, p *hsProc, label string, n int, head, trickle string, want, slack time.Duration, check func(got string) error) {
	t.Helper()
	type result struct {
		lasted time.Duration
		got    string
		err    error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			l, g, err := hsSlowConn(p.addr, head, trickle, 200*time.Millisecond, want+slack+5*time.Second)
			results <- result{l, g, err}
		}()
	}
	// An honest client is served while the slow ones hold their connections.
	honest := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	stopHonest := make(chan struct{})
	honestDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopHonest:
				honestDone <- nil
				return
			case <-time.After(500 * time.Millisecond):
			}
			res, err := honest.Get(p.url("/healthz"))
			if err != nil {
				honestDone <- err
				return
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				honestDone <- fmt.Errorf("/healthz answered %d", res.StatusCode)
				return
			}
		}
	}()
	var lasted []time.Duration
	answers := map[string]int{} // the status line each got before the close ("" for none)
	for range n {
		r := <-results
		status, _, _ := strings.Cut(r.got, "\r\n")
		answers[status]++
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", label, r.err)
		case r.lasted > want+slack:
			t.Errorf("%s: connection cut after %v, want at most %v (+%v)", label, r.lasted.Round(time.Millisecond), want, slack)
		}
		if err := check(r.got); err != nil {
			t.Errorf("%s: %v", label, err)
		}
		lasted = append(lasted, r.lasted)
	}
	close(stopHonest)
	if err := <-honestDone; err != nil {
		t.Errorf("%s: an honest client was not served meanwhile: %v", label, err)
	}
	sort.Slice(lasted, func(i, j int) bool { return lasted[i] < lasted[j] })
	t.Logf("%s: %d connections cut after %v … %v; answered before the close: %v", label, n,
		lasted[0].Round(time.Millisecond), lasted[len(lasted)-1].Round(time.Millisecond), answers)
}

// TestHostileSlowHeaders: clients that send their headers a byte at a time, never
// finishing, are cut off by the real ReadHeaderTimeout (10 s, serve.go's default), a
// hundred at once, without a word (or at most an error status, never a 5xx), while an
// honest client is served; their goroutines go with them.
func TestHostileSlowHeaders(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := hsStartServe(t, dir)
	base := p.metrics(t)["go_goroutines"]
	head := "GET /healthz HTTP/1.1\r\nHost: berth\r\nX-Slow: "
	hsSlowClients(t, p, "slow headers", 100, head, "s", defaultReadHeaderTimeout, hsSlack(defaultReadHeaderTimeout), hsNo5xx)
	if g := p.goroutinesSettle(t, base+2); g > base+2 {
		t.Errorf("server goroutines %v after the slow clients were cut off, baseline %v", g, base)
	}
}

// hsSlack is the room a slow-client check gives the server past its timeout d: the same
// again and ten seconds, so that only a server that does not cut slow clients fails.
func hsSlack(d time.Duration) time.Duration { return d + 10*time.Second }

// hsNo5xx accepts a silent close or an answer that is not a 5xx.
func hsNo5xx(got string) error {
	if got == "" {
		return nil
	}
	if strings.HasPrefix(got, "HTTP/1.1 5") {
		return fmt.Errorf("answered %.60q", got)
	}
	return nil
}

// TestHostileSlowBodies: clients that send their headers and then stall, or trickle,
// their body are cut off by ReadTimeout: here set to 3 s through serve's hidden
// --read-timeout flag, so that the check takes seconds, not the default minute (which
// BERTH_SOAK=1 also checks). Nothing of their requests takes effect.
func TestHostileSlowBodies(t *testing.T) {
	t.Parallel()
	const short = 3 * time.Second
	dir := filepath.Join(t.TempDir(), "data")
	p := hsStartServe(t, dir, "--read-timeout", short.String())
	admin := readAdminToken(t, dir)
	base := p.metrics(t)["go_goroutines"]
	post := "POST /api/v1/cloud/environments HTTP/1.1\r\nHost: berth\r\nAuthorization: Bearer " + admin +
		"\r\nContent-Type: application/json\r\n"
	stalled := post + "Content-Length: 1000\r\n\r\n" + `{"name":"slow`
	trickled := post + "Transfer-Encoding: chunked\r\n\r\n1000\r\n" + `{"name":"slow","description":"`
	wantNotCreated := func(got string) error {
		if strings.HasPrefix(got, "HTTP/1.1 2") || strings.HasPrefix(got, "HTTP/1.1 5") {
			return fmt.Errorf("answered %.60q", got)
		}
		return nil
	}
	hsSlowClients(t, p, "stalled body", 20, stalled, "", short, hsSlack(short), wantNotCreated)
	hsSlowClients(t, p, "trickled body", 20, trickled, "x", short, hsSlack(short), wantNotCreated)
	if hsSoak {
		qdir := filepath.Join(t.TempDir(), "data")
		q := hsStartServe(t, qdir)
		qadmin := readAdminToken(t, qdir)
		qstalled := strings.Replace(stalled, admin, qadmin, 1)
		hsSlowClients(t, q, "stalled body, default ReadTimeout", 20, qstalled, "", defaultReadTimeout, hsSlack(defaultReadTimeout), wantNotCreated)
	}
	code, body, err := hsCall(http.DefaultClient, "GET", p.url("/api/v1/cloud/environments"), admin, "")
	if err != nil || code != 200 || !strings.Contains(string(body), `"data":[]`) {
		t.Errorf("after the slow bodies: %d %s %v (want no environment)", code, body, err)
	}
	if g := p.goroutinesSettle(t, base+2); g > base+2 {
		t.Errorf("server goroutines %v after the slow clients were cut off, baseline %v", g, base)
	}
}

// hsRaceBuild reports whether this test binary was built with the race detector.
func hsRaceBuild() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// hsReleaseBinary returns a berth binary as it is deployed: this test binary, or, when the
// tests run with -race, berth built without it into dir. Under the race detector the
// embedded SQLite (pure Go) runs some fifty times slower and takes about nine times the
// memory, so a load test of a race build measures the detector, not the server: with a
// thousand pollers it cannot keep up with their re-polls on two CPUs. Every other test
// runs the race build.
func hsReleaseBinary(t *testing.T, dir string) string {
	t.Helper()
	if !hsRaceBuild() {
		return os.Args[0]
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "berth")
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build berth without -race: %v\n%s", err, out)
	}
	return bin
}

// TestHostileParkedPolls: a thousand workers long-poll one environment (block_ms=999,
// polling again at once) while producers create sessions for a bounded time (5 s; a
// minute with BERTH_SOAK=1). Every request is answered (no 5xx, no connection error),
// every session's item is delivered exactly once (and acknowledged and stopped by its
// worker), the server's peak RSS stays bounded, it logs no error, and once the clients
// are gone its goroutine count is back to its baseline. The server is a release build
// (hsReleaseBinary).
func TestHostileParkedPolls(t *testing.T) {
	t.Parallel()
	const pollers, producers = 1000, 4
	load := 5 * time.Second
	if hsSoak {
		load = time.Minute
	}
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "data")
	p := hsStartBinary(t, hsReleaseBinary(t, tmp), dir)
	admin := readAdminToken(t, dir)
	env := hsSetup(t, p, admin)
	code, body, err := hsCall(http.DefaultClient, "POST", p.url("/api/v1/cloud/tokens"), admin,
		`{"name":"pollers","role":"worker","environment_id":"`+env+`"}`)
	if err != nil || code != 201 {
		t.Fatalf("worker token: %d %s %v", code, body, err)
	}
	var tok struct{ Secret string }
	json.Unmarshal(body, &tok)
	http.DefaultClient.CloseIdleConnections()
	base := p.metrics(t)

	tr := &http.Transport{MaxIdleConns: 2 * pollers, MaxIdleConnsPerHost: 2 * pollers, IdleConnTimeout: 5 * time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	var (
		mu        sync.Mutex
		created   = map[string]bool{} // session IDs answered 201
		delivered = map[string]int{}  // session ID → deliveries
		items     = map[string]int{}  // work ID → deliveries
		problems  []string
		requests  atomic.Int64
		nulls     atomic.Int64
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	call := func(method, path, token, body string, hdr ...string) (int, []byte, bool) {
		requests.Add(1)
		code, b, err := hsCall(hc, method, p.url("/api/v1/cloud"+path), token, body, hdr...)
		if err != nil {
			problem("%s %s: %v", method, path, err)
			return 0, nil, false
		}
		return code, b, true
	}

	stopPolling := make(chan struct{})
	var pollWG sync.WaitGroup
	for i := range pollers {
		pollWG.Add(1)
		go func() {
			defer pollWG.Done()
			worker := fmt.Sprintf("hostile-%04d", i)
			for {
				select {
				case <-stopPolling:
					return
				default:
				}
				code, b, ok := call("GET", "/environments/"+env+"/work/poll?block_ms=999", tok.Secret, "", "Worker-ID", worker)
				if !ok {
					time.Sleep(100 * time.Millisecond) // bounded: the problem fails the test
					continue
				}
				if code != 200 {
					problem("poll: %d %.200s", code, b)
					continue
				}
				if string(b) == "null" {
					nulls.Add(1)
					continue
				}
				var w struct {
					ID   string
					Data struct{ ID string }
				}
				if err := json.Unmarshal(b, &w); err != nil || w.ID == "" {
					problem("poll: not a work item: %.200s", b)
					continue
				}
				mu.Lock()
				delivered[w.Data.ID]++
				items[w.ID]++
				mu.Unlock()
				for _, step := range []struct{ path, body string }{{"/ack", ""}, {"/stop", `{"force":true}`}} {
					code, b, ok := call("POST", "/environments/"+env+"/work/"+w.ID+step.path, tok.Secret, step.body, "Worker-ID", worker)
					if ok && code != 200 {
						problem("%s %s: %d %.200s", step.path, w.ID, code, b)
					}
				}
			}
		}()
	}

	// The producers start once the polls are parked, by the server's own gauge. How many
	// are parked at one instant depends on how fast this process re-polls (a poller is
	// not parked between an answer and its next poll), so it is reported, not asserted:
	// the test waits until polls park, for up to the time a thousand take on a quiet
	// machine many times over, and then goes on with what it has.
	var peakParked, peakGoroutines, peakRSS float64
	sample := func() {
		m := p.metrics(t)
		peakParked = max(peakParked, m["berth_work_pollers_parked"])
		peakGoroutines = max(peakGoroutines, m["go_goroutines"])
		peakRSS = max(peakRSS, m["process_resident_memory_bytes"])
	}
	for start := time.Now(); peakParked < pollers; time.Sleep(20 * time.Millisecond) {
		sample()
		if peakParked > 0 && time.Since(start) > 10*time.Second {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("no poll parked in two minutes")
		}
	}

	// Producers, for the bounded load time.
	loadStart := time.Now()
	stopProducing := time.Now().Add(load)
	var prodWG sync.WaitGroup
	for range producers {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			for time.Now().Before(stopProducing) {
				code, b, ok := call("POST", "/sessions", admin, `{"agent":"hostile","environment_id":"`+env+`"}`)
				if !ok {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				if code != 201 {
					problem("create session: %d %.200s", code, b)
					continue
				}
				var s struct{ ID string }
				json.Unmarshal(b, &s)
				mu.Lock()
				created[s.ID] = true
				mu.Unlock()
			}
		}()
	}
	for time.Now().Before(stopProducing) {
		sample()
		time.Sleep(250 * time.Millisecond)
	}
	prodWG.Wait()
	// Drain: the pollers take what is left. The bound only turns an item that is never
	// delivered into a failure instead of a hang.
	for guard := time.Now().Add(2 * time.Minute); time.Now().Before(guard); {
		mu.Lock()
		n, want := len(delivered), len(created)
		mu.Unlock()
		if n >= want {
			break
		}
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	sample()
	close(stopPolling)
	pollDone := make(chan struct{})
	go func() { pollWG.Wait(); close(pollDone) }()
	select {
	case <-pollDone:
	case <-time.After(2 * time.Minute):
		t.Fatalf("pollers did not stop within two minutes")
	}
	elapsed := time.Since(loadStart)
	// Nothing is left in the queue, delivered or not, and the thousand workers were all seen
	// polling within the last 30 s.
	code, body, _ = hsCall(http.DefaultClient, "GET", p.url("/api/v1/cloud/environments/"+env+"/work/stats"), admin, "")
	var stats struct {
		Depth          int `json:"depth"`
		Pending        int `json:"pending"`
		WorkersPolling int `json:"workers_polling"`
	}
	json.Unmarshal(body, &stats)
	if code != 200 || stats.Depth != 0 || stats.Pending != 0 || stats.WorkersPolling != pollers {
		t.Errorf("stats after the load: %d %s, want depth 0, pending 0, workers_polling %d", code, body, pollers)
	}
	tr.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()

	mu.Lock()
	defer mu.Unlock()
	for _, pr := range problems {
		t.Errorf("request not answered properly: %s", pr)
	}
	if len(created) == 0 {
		t.Errorf("no session was created")
	}
	var missing, twice []string
	for s := range created {
		if delivered[s] == 0 {
			missing = append(missing, s)
		}
	}
	for s, n := range delivered {
		if n != 1 || !created[s] {
			twice = append(twice, fmt.Sprintf("%s×%d", s, n))
		}
	}
	for w, n := range items {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s×%d", w, n))
		}
	}
	if len(missing) > 0 || len(twice) > 0 {
		t.Errorf("%d sessions created, %d delivered: never delivered %d %.5q, delivered other than once %.5q",
			len(created), len(delivered), len(missing), missing, twice)
	}

	// Back to baseline: the thousand connections are closed, and with them their
	// goroutines.
	final := p.goroutinesSettle(t, base["go_goroutines"]+5)
	if final > base["go_goroutines"]+5 {
		t.Errorf("server goroutines %v after the load, baseline %v", final, base["go_goroutines"])
	}
	hwm := p.vmHWM(t)
	const rssBound = 400 << 20
	if hwm > rssBound {
		t.Errorf("server peak RSS %d MiB, want under %d MiB", hwm>>20, rssBound>>20)
	}
	lines, errs, loud := p.logSummary()
	if errs > 0 {
		t.Errorf("the server logged %d errors: %q", errs, loud)
	}
	t.Logf("%d pollers, %d producers, %v of load (%v with the drain): %d requests (%d empty polls), %d sessions created and delivered once each; "+
		"server goroutines %v before, peak %v, %v after; peak parked polls %v; peak RSS %d MiB (VmHWM; /metrics peak %d MiB, before %d MiB); %d log lines, %d above INFO",
		pollers, producers, load, elapsed.Round(time.Millisecond), requests.Load(), nulls.Load(), len(created),
		base["go_goroutines"], peakGoroutines, final, peakParked, hwm>>20, int64(peakRSS)>>20, int64(base["process_resident_memory_bytes"])>>20,
		lines, len(loud))
}
