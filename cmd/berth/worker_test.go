package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// These tests run real `berth serve` and `berth worker` processes (the test binary as
// berth, see TestMain) and check the worker from the outside: signals, exit codes, crash
// recovery, throughput.

// cluster is a running `berth serve` with a self_hosted environment and a worker token.
type cluster struct {
	t      *testing.T
	srv    *proc
	base   string // API base URL
	admin  *client.Client
	env    string
	secret string // worker token of env
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	srv := startServe(t, dir)
	c := &cluster{t: t, srv: srv, base: srv.url("/api/v1/cloud")}
	var err error
	c.admin, err = client.New(c.base, readAdminToken(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env, err := c.admin.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "workers", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	c.env = env.ID
	tok, err := c.admin.CreateToken(ctx, client.CreateTokenParams{Name: "worker", Role: client.RoleWorker, EnvironmentID: c.env})
	if err != nil {
		t.Fatal(err)
	}
	c.secret = tok.Secret
	return c
}

// session creates a session and returns its queued item.
func (c *cluster) session() client.Work {
	c.t.Helper()
	ctx := context.Background()
	s, err := c.admin.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: c.env})
	if err != nil {
		c.t.Fatal(err)
	}
	items := c.itemsOf(s.ID)
	if len(items) != 1 {
		c.t.Fatalf("session %s has %d items", s.ID, len(items))
	}
	return items[0]
}

// items lists every work item of the environment, oldest first.
func (c *cluster) items() []client.Work {
	c.t.Helper()
	var out []client.Work
	for w, err := range c.admin.AllWork(context.Background(), c.env, client.ListWorkParams{ListParams: client.ListParams{Limit: 100}}) {
		if err != nil {
			c.t.Fatal(err)
		}
		out = append(out, w)
	}
	return out
}

func (c *cluster) itemsOf(sessionID string) []client.Work {
	c.t.Helper()
	var out []client.Work
	for _, w := range c.items() {
		if w.Data.ID == sessionID {
			out = append(out, w)
		}
	}
	return out
}

func (c *cluster) get(workID string) *client.Work {
	c.t.Helper()
	w, err := c.admin.GetWork(context.Background(), c.env, workID)
	if err != nil {
		c.t.Fatal(err)
	}
	return w
}

// waitState reads the item until it is in state, within timeout.
func (c *cluster) waitState(workID string, state client.State, timeout time.Duration) *client.Work {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w := c.get(workID)
		if w.State == state {
			return w
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("item %s is %s, never became %s", workID, w.State, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// workerProc is a running `berth worker`.
type workerProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	logs    strings.Builder
	changed chan struct{} // closed and replaced on every log line
	exited  chan struct{} // closed when the process has exited; exitErr is set then
	exitErr error
}

// startWorker starts `berth worker` against the cluster (--url, --token, --environment
// and --log-format json are given; args add to them), with extra environment variables.
func (c *cluster) startWorker(env []string, args ...string) *workerProc {
	c.t.Helper()
	all := append([]string{"worker", "--url", c.base, "--environment", c.env, "--log-format", "json"}, args...)
	cmd := exec.Command(os.Args[0], all...)
	cmd.Env = append(append(os.Environ(), "BERTH_TEST_AS_MAIN=1", "BERTH_TOKEN="+c.secret), env...)
	return startProc(c.t, cmd)
}

func startProc(t *testing.T, cmd *exec.Cmd) *workerProc {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{cmd: cmd, changed: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // harmless once it has exited
		<-p.exited
		if strings.Contains(p.log(), "DATA RACE") {
			t.Errorf("the worker process reported a data race:\n%s", p.log())
		}
	})
	return p
}

func (p *workerProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// waitLog waits until the worker's log contains substr.
func (p *workerProc) waitLog(t *testing.T, substr string) {
	t.Helper()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok, ch := strings.Contains(p.logs.String(), substr), p.changed
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-p.exited:
			if !strings.Contains(p.log(), substr) {
				t.Fatalf("worker exited (%v) before logging %q:\n%s", p.exitErr, substr, p.log())
			}
		case <-deadline.C:
			t.Fatalf("worker never logged %q:\n%s", substr, p.log())
		}
	}
}

// exitCode waits up to timeout for the process to exit and returns its exit code.
func (p *workerProc) exitCode(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("worker did not exit within %v:\n%s", timeout, p.log())
	}
	var ee *exec.ExitError
	switch {
	case p.exitErr == nil:
		return 0
	case errors.As(p.exitErr, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("worker: %v", p.exitErr)
	return -1
}

func (p *workerProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *workerProc) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// SIGINT drains: the worker takes no new item, lets the running one finish, records its
// exit code, stops it, and exits 0.
func TestWorkerDrainsOnSignal(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	first := c.session()
	dir := t.TempDir()
	w := c.startWorker([]string{"DIR=" + dir}, "--worker-id", "drainer", "--capacity", "2", "--drain-timeout", "1m",
		"--exec", `echo "ready $BERTH_WORK_ID"; while [ ! -e "$DIR/go" ]; do sleep 0.05; done`)
	w.waitLog(t, "ready "+first.ID)
	w.signal(t, syscall.SIGINT)
	w.waitLog(t, "signal: draining")
	second := c.session() // queued after the drain began: must stay queued
	if !w.running() {
		t.Fatalf("worker exited while its item was running:\n%s", w.log())
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := w.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after a drain, want 0:\n%s", code, w.log())
	}
	got := c.get(first.ID)
	if got.State != client.StateStopped || got.Metadata["exit_code"] != "0" || got.StopRequestedAt == nil {
		t.Errorf("drained item: %s, exit_code %q, stop_requested_at %v", got.State, got.Metadata["exit_code"], got.StopRequestedAt)
	}
	if got := c.get(second.ID); got.State != client.StateQueued || got.AcknowledgedAt != nil {
		t.Errorf("item queued during the drain: %s, acknowledged %v", got.State, got.AcknowledgedAt)
	}
}

// SIGTERM with an item that outlives --drain-timeout: the child gets SIGTERM, then
// SIGKILL after --kill-grace (it ignores SIGTERM); its exit code (137) is recorded and the
// item stopped gracefully; the worker exits 0.
func TestWorkerDrainTimeoutThenKillGrace(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	item := c.session()
	w := c.startWorker(nil, "--worker-id", "slow-drainer", "--drain-timeout", "500ms", "--kill-grace", "300ms",
		"--exec", `trap '' TERM; echo "ready $BERTH_WORK_ID"; sleep 120`)
	w.waitLog(t, "ready "+item.ID)
	signalled := time.Now()
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, w.log())
	}
	if d := time.Since(signalled); d < 800*time.Millisecond {
		t.Errorf("worker exited %v after SIGTERM, before drain timeout + kill grace (800ms)", d)
	}
	got := c.get(item.ID)
	if got.State != client.StateStopped || got.Metadata["exit_code"] != "137" || got.StopRequestedAt == nil {
		t.Errorf("item: %s, exit_code %q, stop_requested_at %v", got.State, got.Metadata["exit_code"], got.StopRequestedAt)
	}
	for _, want := range []string{`"msg":"terminating child"`, `"reason":"drain timeout"`, `"msg":"child outlived its kill grace; killing it"`} {
		if !strings.Contains(w.log(), want) {
			t.Errorf("log lacks %s:\n%s", want, w.log())
		}
	}
}

// The README's `--exec /opt/agent/run.sh`, stopped by the worker's SIGTERM (systemd's,
// Kubernetes'): the script's own exit code is recorded (3, from its TERM trap; not 143,
// the death of the shell that runs it), with no exec in front, and the background
// process it started does not outlive the worker.
func TestWorkerStopRecordsTheScriptsOwnExitCode(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	item := c.session()
	dir := t.TempDir()
	// The background process says when it runs: a SIGTERM that comes between its fork and
	// its exec is lost (dash catches it, then resets the handler).
	script := `#!/bin/sh
trap 'exit 3' TERM
sh -c 'echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec sleep 600 >/dev/null 2>&1' "$DIR/bg" &
while [ ! -e "$DIR/bg" ]; do sleep 0.01; done
echo "ready $BERTH_WORK_ID"
wait
`
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	w := c.startWorker([]string{"DIR=" + dir}, "--worker-id", "script-runner", "--drain-timeout", "0", "--kill-grace", "1m",
		"--exec", filepath.Join(dir, "run.sh"))
	w.waitLog(t, "ready "+item.ID)
	bg := readPIDFile(t, filepath.Join(dir, "bg"))
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, w.log())
	}
	got := c.get(item.ID)
	if got.State != client.StateStopped || got.Metadata["exit_code"] != "3" {
		t.Errorf("item: %s, exit_code %q, want stopped with the script's 3", got.State, got.Metadata["exit_code"])
	}
	if err := syscall.Kill(bg, 0); err != syscall.ESRCH && !zombie(bg) {
		syscall.Kill(bg, syscall.SIGKILL)
		t.Errorf("the script's background process %d outlived the worker (kill 0: %v)", bg, err)
	}
}

// zombie reports whether pid is a zombie: dead, waiting for a parent that may never reap
// it (PID 1 in some containers does not).
func zombie(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// --drain-timeout 0 means no drain at all (not worker.Config's default of 30 s): on
// SIGTERM the running item is stopped at once, and with --kill-grace 0 a child that
// ignores SIGTERM is killed at once too.
func TestWorkerZeroDrainTimeoutStopsAtOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	item := c.session()
	w := c.startWorker(nil, "--worker-id", "no-drain", "--drain-timeout", "0", "--kill-grace", "0",
		"--exec", `trap '' TERM; echo "ready $BERTH_WORK_ID"; sleep 120`)
	w.waitLog(t, "ready "+item.ID)
	signalled := time.Now()
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, w.log())
	}
	if d := time.Since(signalled); d > 10*time.Second {
		t.Errorf("worker took %v to exit with --drain-timeout 0", d)
	}
	got := c.get(item.ID)
	if got.State != client.StateStopped || got.Metadata["exit_code"] != "137" || got.StopRequestedAt == nil {
		t.Errorf("item: %s, exit_code %q, stop_requested_at %v", got.State, got.Metadata["exit_code"], got.StopRequestedAt)
	}
}

// A second SIGTERM during the drain stops every item at once with force=true: the child
// is killed without waiting for --drain-timeout or --kill-grace, the item goes straight
// to stopped (no graceful request: stop_requested_at stays null), and the worker exits 0.
func TestWorkerSecondSignalForcesStop(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.session(), c.session()
	w := c.startWorker(nil, "--worker-id", "forced", "--capacity", "2", "--drain-timeout", "1m", "--kill-grace", "1m",
		"--exec", `trap '' TERM; echo "ready $BERTH_WORK_ID"; sleep 120`)
	w.waitLog(t, "ready "+a.ID)
	w.waitLog(t, "ready "+b.ID)
	w.signal(t, syscall.SIGTERM)
	w.waitLog(t, "signal: draining")
	forced := time.Now()
	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, w.log())
	}
	if d := time.Since(forced); d > 20*time.Second {
		t.Errorf("worker took %v to exit after the second signal", d)
	}
	for _, it := range []client.Work{a, b} {
		got := c.get(it.ID)
		if got.State != client.StateStopped || got.StopRequestedAt != nil || got.Metadata["exit_code"] != "137" {
			t.Errorf("item %s: %s, stop_requested_at %v, exit_code %q; want stopped by force, 137",
				it.ID, got.State, got.StopRequestedAt, got.Metadata["exit_code"])
		}
	}
	w.waitLog(t, "second signal: stopping every item now")
}

// The server refusing the worker (401 for a bad token, 403 for a worker token of another
// environment, 404 for an environment that does not exist) ends it at once with a clear
// message and exit code 1.
func TestWorkerRefusedExitsNonZero(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	other, err := c.admin.CreateEnvironment(ctx, client.CreateEnvironmentParams{Name: "other", Config: client.SelfHostedConfig("")})
	if err != nil {
		t.Fatal(err)
	}
	member, err := c.admin.CreateToken(ctx, client.CreateTokenParams{Name: "member", Role: client.RoleMember})
	if err != nil {
		t.Fatal(err)
	}
	refused := "berth: the server refused this worker (check --token and --environment): HTTP "
	wrongURL := "http://" + c.srv.addr + "/api/v1"
	for _, tc := range []struct {
		name, url, token, env, want string
	}{
		{"bad token", c.base, "pt-" + strings.Repeat("0", 43), c.env, refused + "401 authentication_error"},
		{"another environment", c.base, c.secret, other.ID, refused + "403 permission_error"},
		{"no such environment", c.base, member.Secret, "env_0190f3be4fd2475d9a784bf2c739e119", refused + "404 not_found_error"},
		// The server has no API there: the URL is at fault, not the token or environment.
		{"no API at the URL", wrongURL, c.secret, c.env, "berth: no berth API at " + wrongURL + "/ (check --url or BERTH_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "worker", "--url", tc.url, "--token", tc.token, "--environment", tc.env,
				"--worker-id", "refused", "--exec", "true")
			cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1")
			w := startProc(t, cmd)
			start := time.Now()
			if code := w.exitCode(t, 30*time.Second); code != 1 {
				t.Fatalf("exit code %d, want 1:\n%s", code, w.log())
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("took %v to give up", d)
			}
			if !strings.Contains(w.log(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, w.log())
			}
			// The last line is the error, said once: "berth: …", never "berth: … berth: …".
			lines := strings.Split(strings.TrimSpace(w.log()), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "berth: ") || strings.Count(last, "berth:") != 1 {
				t.Errorf("the worker's error does not say \"berth:\" once: %q", last)
			}
		})
	}
}

// The worker takes the server's bare address, as the CLI does (http://host:port means
// its API at /api/v1/cloud), and refuses an address without a scheme before it starts.
func TestWorkerURLForms(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	item := c.session()
	w := c.startWorker(nil, "--url", "http://"+c.srv.addr, "--worker-id", "bare-url", "--exec", `echo "ran $BERTH_WORK_ID"`)
	w.waitLog(t, "ran "+item.ID)
	c.waitState(item.ID, client.StateStopped, 30*time.Second)

	cmd := exec.Command(os.Args[0], "worker", "--url", c.srv.addr, "--token", c.secret, "--environment", c.env, "--exec", "true")
	cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1")
	bad := startProc(t, cmd)
	if code := bad.exitCode(t, 30*time.Second); code != 1 {
		t.Fatalf("--url without a scheme: exit code %d, want 1:\n%s", code, bad.log())
	}
	want := "berth: --url (or BERTH_URL): URL \"" + c.srv.addr + "\" has no scheme: write http://" + c.srv.addr
	if !strings.Contains(bad.log(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, bad.log())
	}
}

// A flag's environment variable that does not parse is an error, not a silent default.
func TestWorkerRejectsMalformedEnvironment(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "worker", "--exec", "true")
	cmd.Env = append(os.Environ(), "BERTH_TEST_AS_MAIN=1", "BERTH_TOKEN=pt-x", "BERTH_ENVIRONMENT_ID=env_x",
		"BERTH_DRAIN_TIMEOUT=5min", "BERTH_CAPACITY=four")
	w := startProc(t, cmd)
	if code := w.exitCode(t, 30*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, w.log())
	}
	for _, want := range []string{`BERTH_DRAIN_TIMEOUT="5min"`, `BERTH_CAPACITY="four"`} {
		if !strings.Contains(w.log(), want) {
			t.Errorf("stderr does not name %s:\n%s", want, w.log())
		}
	}
}

// Crash recovery end to end: worker A is killed with SIGKILL mid-item (its child left
// orphaned, as after a machine crash). The lease (--ttl 10) expires on the server, which
// requeues the session; worker B, already waiting, takes the fresh item and completes it.
// Takes about 10-11 s of real time, the lease.
func TestWorkerCrashRecovery(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	first := c.session()
	dir := t.TempDir()
	a := c.startWorker([]string{"DIR=" + dir}, "--worker-id", "crash-a", "--ttl", "10",
		"--exec", `echo $$ > "$DIR/a.pid"; echo "ready $BERTH_WORK_ID"; exec sleep 600`)
	a.waitLog(t, "ready "+first.ID)
	pid := readPIDFile(t, filepath.Join(dir, "a.pid"))
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // A's orphan
	c.waitState(first.ID, client.StateActive, 30*time.Second)

	b := c.startWorker([]string{"DIR=" + dir}, "--worker-id", "crash-b", "--ttl", "10",
		"--exec", `echo "$BERTH_WORKER_ID $BERTH_WORK_ID" >> "$DIR/b.runs"`)
	b.waitLog(t, `"msg":"worker started"`)
	a.signal(t, syscall.SIGKILL)
	killed := time.Now()
	a.exitCode(t, 10*time.Second)

	var fresh client.Work
	deadline := killed.Add(40 * time.Second)
	for {
		items := c.itemsOf(first.Data.ID)
		if len(items) == 2 && items[1].State == client.StateStopped {
			fresh = items[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session not recovered 40 s after the crash: %+v\nB's log:\n%s", items, b.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the session's fresh item was completed by B %v after A was killed", time.Since(killed).Round(100*time.Millisecond))
	old := c.get(first.ID)
	if old.State != client.StateStopped || old.StopRequestedAt != nil || old.Metadata["exit_code"] != "" {
		t.Errorf("crashed item: %s, stop_requested_at %v, metadata %v; want stopped by expiry", old.State, old.StopRequestedAt, old.Metadata)
	}
	if fresh.ID == first.ID || fresh.Metadata["exit_code"] != "0" || fresh.StopRequestedAt == nil {
		t.Errorf("fresh item %s: exit_code %q, stop_requested_at %v", fresh.ID, fresh.Metadata["exit_code"], fresh.StopRequestedAt)
	}
	runs, err := os.ReadFile(filepath.Join(dir, "b.runs"))
	if err != nil || strings.TrimSpace(string(runs)) != "crash-b "+fresh.ID {
		t.Errorf("B ran %q (%v), want the fresh item once", runs, err)
	}
	b.signal(t, syscall.SIGTERM)
	if code := b.exitCode(t, 30*time.Second); code != 0 {
		t.Errorf("B exit code %d", code)
	}
}

func readPIDFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// Throughput: 200 sessions, one worker with --capacity 8 running 'sleep 0.2' for each.
// Every item ends stopped with exit_code 0, none runs twice, no more than 8 run at once,
// and the wall time is logged (the floor is 200/8 × 0.2 s = 5 s).
func TestWorker200SessionsAtCapacity8(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const sessions, capacity = 200, 8
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < sessions; j += 8 {
				if _, err := c.admin.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: c.env}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := time.Now()
	w := c.startWorker([]string{"DIR=" + dir}, "--worker-id", "bulk", "--capacity", strconv.Itoa(capacity),
		"--exec", `echo "$BERTH_WORK_ID start $(date +%s%N)" >> "$DIR/runs"; sleep 0.2; echo "$BERTH_WORK_ID end $(date +%s%N)" >> "$DIR/runs"`)
	live := []client.State{client.StateQueued, client.StateStarting, client.StateActive, client.StateStopping}
	deadline := start.Add(5 * time.Minute)
	for {
		page, err := c.admin.ListWork(ctx, c.env, client.ListWorkParams{ListParams: client.ListParams{Limit: 1}, States: live})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) == 0 {
			break
		}
		if time.Now().After(deadline) || !w.running() {
			t.Fatalf("items still live after %v:\n%s", time.Since(start), w.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	wall := time.Since(start)
	t.Logf("%d sessions at --capacity %d with 'sleep 0.2': wall time %v (floor %v)", sessions, capacity,
		wall.Round(10*time.Millisecond), time.Duration(sessions/capacity)*200*time.Millisecond)

	items := c.items()
	if len(items) != sessions {
		t.Errorf("%d items, want %d (a requeue means a lease was lost)", len(items), sessions)
	}
	for _, it := range items {
		if it.State != client.StateStopped || it.Metadata["exit_code"] != "0" {
			t.Errorf("item %s: %s, exit_code %q", it.ID, it.State, it.Metadata["exit_code"])
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil {
		t.Fatal(err)
	}
	starts := map[string]int{}
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("runs line %q", l)
		}
		ns, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("runs line %q: %v", l, err)
		}
		if f[1] == "start" {
			starts[f[0]]++
			edges = append(edges, edge{ns, +1})
		} else {
			edges = append(edges, edge{ns, -1})
		}
	}
	if len(starts) != sessions {
		t.Errorf("%d distinct items ran, want %d", len(starts), sessions)
	}
	for id, n := range starts {
		if n != 1 {
			t.Errorf("item %s ran %d times", id, n)
		}
	}
	// Ends sort before starts at the same instant: a slot freed and retaken.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at != edges[j].at {
			return edges[i].at < edges[j].at
		}
		return edges[i].delta < edges[j].delta
	})
	cur, peak := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	t.Logf("at most %d commands ran at once", peak)
	if peak > capacity {
		t.Errorf("%d commands ran at once, more than --capacity %d", peak, capacity)
	}

	w.signal(t, syscall.SIGTERM)
	if code := w.exitCode(t, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM:\n%s", code, w.log())
	}
}
