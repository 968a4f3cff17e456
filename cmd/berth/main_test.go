package main

import (
	"bufio"
	"context"
	"encoding/json"
	"github.com/berth-sh/berth/internal/testserver"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the berth binary: run with BERTH_TEST_AS_MAIN=1 it is
// berth itself, so the tests below start real `berth serve` processes (built with the
// race detector, like the tests).
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// proc is a running berth process.
type proc struct {
	cmd     *exec.Cmd
	addr    string
	mu      sync.Mutex
	logs    strings.Builder
	exited  chan struct{} // closed when the process has exited; exitErr is set then
	exitErr error
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// wait waits for the process to exit and returns how it exited.
func (p *proc) wait() error {
	<-p.exited
	return p.exitErr
}

var servingRE = regexp.MustCompile(`msg="berth serving" addr=(\S+)`)

// startServe starts `berth serve` on a free loopback port with dataDir and waits until it
// listens.
func startServe(t *testing.T, dataDir string) *proc {
	t.Helper()
	p, addrc := launchServe(t, "--data-dir", dataDir)
	awaitServe(t, p, addrc)
	return p
}

// launchServe starts `berth serve --addr 127.0.0.1:0` with the given flags without
// waiting for it (awaitServe does), so that several launched one after the other start
// concurrently. The process is stopped when the test ends: with SIGTERM, so that it closes
// its connections (before a test's database schema is dropped), and by force if it has
// not gone within ten seconds.
func launchServe(t *testing.T, args ...string) (*proc, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addrc <- m[1]
			}
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // harmless once it has exited
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p, addrc
}

// awaitServe waits until a launched server listens.
func awaitServe(t *testing.T, p *proc, addrc <-chan string) {
	t.Helper()
	select {
	case p.addr = <-addrc:
	case <-p.exited:
		t.Fatalf("berth serve exited: %v\n%s", p.exitErr, p.log())
	case <-time.After(testserver.HangGuard):
		t.Fatalf("berth serve did not start\n%s", p.log())
	}
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

func request(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func readAdminToken(t *testing.T, dataDir string) string {
	t.Helper()
	path := filepath.Join(dataDir, AdminTokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^pt-[0-9A-Za-z]{40,}\n$`).Match(b) {
		t.Fatalf("%s holds %q, want the token alone on one line", path, b)
	}
	return strings.TrimSpace(string(b))
}

func TestServeCreatesAdminTokenOnceAndKeepsData(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	token := readAdminToken(t, dir)
	if !strings.Contains(p.log(), filepath.Join(dir, AdminTokenFile)) {
		t.Errorf("log does not name the token file:\n%s", p.log())
	}
	if strings.Contains(p.log(), token) {
		t.Errorf("log contains the admin token")
	}
	code, body := request(t, "POST", p.url("/api/v1/cloud/environments"), token, `{"name":"kept","config":{"type":"self_hosted"}}`)
	if code != 201 {
		t.Fatalf("create environment: %d %s", code, body)
	}
	var env struct{ ID string }
	json.Unmarshal(body, &env)
	// The serve command instruments its store: the admin token's first last_used_at and
	// the environment were commits at least (background upkeep may add; the first token
	// may be made before the metrics exist).
	_, metrics := request(t, "GET", p.url("/metrics"), "", "")
	sample := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(metrics)
		if m == nil {
			t.Fatalf("/metrics lacks %s:\n%s", name, metrics)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	// (A commit of background upkeep may land between the two histograms' updates, so
	// their counts are not compared; the store's own test counts exactly.)
	commits, carried := sample("berth_store_commit_batch_size_count"), sample("berth_store_commit_batch_size_sum")
	if durations := sample("berth_store_commit_duration_seconds_count"); commits < 2 || carried < commits || durations < 2 {
		t.Errorf("store commit metrics: %v commits carrying %v transactions, %v durations", commits, carried, durations)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
	}

	// Same data directory: no second token, the first still works, the data is there.
	p2 := startServe(t, dir)
	if strings.Contains(p2.log(), "created the first admin token") {
		t.Errorf("a second admin token was created on restart")
	}
	if got := readAdminToken(t, dir); got != token {
		t.Errorf("admin-token file changed on restart")
	}
	code, body = request(t, "GET", p2.url("/api/v1/cloud/environments/"+env.ID), token, "")
	if code != 200 || !strings.Contains(string(body), `"name":"kept"`) {
		t.Fatalf("environment after restart: %d %s", code, body)
	}
}

func TestServeShutdownAnswersParkedPollsWithNull(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	token := readAdminToken(t, dir)
	code, body := request(t, "POST", p.url("/api/v1/cloud/environments"), token, `{"name":"e","config":{"type":"self_hosted"}}`)
	if code != 201 {
		t.Fatalf("create environment: %d %s", code, body)
	}
	var env struct{ ID string }
	json.Unmarshal(body, &env)

	type answer struct {
		code int
		body string
		err  error
	}
	polls := make(chan answer, 3)
	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(context.Background(), "GET",
				p.url("/api/v1/cloud/environments/"+env.ID+"/work/poll?block_ms=999"), nil)
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				polls <- answer{err: err}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			polls <- answer{code: res.StatusCode, body: string(b)}
		}()
	}
	// Wait until the three polls are parked, as the server's own gauge says.
	testserver.WaitFor(t, "three polls parked", func() bool {
		_, m := request(t, "GET", p.url("/metrics"), "", "")
		return strings.Contains(string(m), "berth_work_pollers_parked 3")
	})
	p.cmd.Process.Signal(syscall.SIGTERM)
	for range 3 {
		a := <-polls
		if a.err != nil || a.code != 200 || a.body != "null" {
			t.Errorf("parked poll during shutdown: %d %q %v", a.code, a.body, a.err)
		}
	}
	if err := p.wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
	}
	// Closed cleanly: the WAL was checkpointed into the database file.
	if fi, err := os.Stat(filepath.Join(dir, "berth.db-wal")); err == nil && fi.Size() != 0 {
		t.Errorf("WAL not checkpointed on shutdown: %d bytes", fi.Size())
	}
}

func TestTokenCommandsAgainstRunningServer(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(os.Args[0], append([]string{"token", "--data-dir", dir}, args...)...)
		cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("berth token %v: %v", args, err)
		}
		return string(out)
	}
	secret := strings.TrimSpace(run("create", "--name", "ci", "--role", "member"))
	if code, body := request(t, "GET", p.url("/api/v1/cloud/environments"), secret, ""); code != 200 {
		t.Fatalf("new member token: %d %s", code, body)
	}
	list := run("list", "--json")
	var toks struct {
		Data []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
			Role string `json:"role"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(list), &toks); err != nil {
		t.Fatalf("token list --json: %v\n%s", err, list)
	}
	id := ""
	for _, tk := range toks.Data {
		if tk.Name == "ci" && tk.Role == "member" {
			id = tk.ID
		}
	}
	if id == "" || strings.Contains(list, secret) {
		t.Fatalf("token list: %s", list)
	}
	run("revoke", id)
	if code, _ := request(t, "GET", p.url("/api/v1/cloud/environments"), secret, ""); code != 401 {
		t.Fatalf("revoked token answered %d, want 401", code)
	}
}
