package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-sh/berth/internal/api"
)

// serverProc is a `berth serve` child process started by the bench.
type serverProc struct {
	name    string // "berth serve", or the baseline's command, for errors
	cmd     *exec.Cmd
	exited  chan struct{} // closed once it has exited; exitErr is set then
	exitErr error

	mu   sync.Mutex
	tail []string // its last log lines, for errors
}

// How long a spawned server may take to start listening (PostgreSQL migrations
// included), and to stop after SIGTERM (it gives in-flight requests 30 s).
const (
	spawnStartTimeout = time.Minute
	spawnStopTimeout  = 45 * time.Second
	logTailLines      = 20
)

var servingRE = regexp.MustCompile(`msg="berth serving" addr=(\S+)`)

// startSpawned starts `berth serve` (o.ServerBinary, or this very executable) as a
// child process on a free loopback port, on a temporary SQLite directory (o.DataDir if
// set) or o.DatabaseURL, waits until it logs the address it listens on, and takes the
// admin token it writes to <data-dir>/admin-token; on a database that has tokens already
// (so that the server writes none) it creates one with `berth token create`, revoked at
// the end. The child is stopped with SIGTERM by t.close.
func (t *target) startSpawned(ctx context.Context, o Options) error {
	bin := o.ServerBinary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("find the berth binary to start the server: %w", err)
		}
	}
	dir := o.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "berth-bench-"); err != nil {
			return err
		}
		t.cleanup = append(t.cleanup, func() error { return os.RemoveAll(dir) })
	}
	name := "berth serve"
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--log-format", "text", "--log-level", "info"}, o.ServerArgs...)
	if o.Baseline {
		name = "berth bench baseline-server"
		args = append([]string{"bench", "baseline-server", "--addr", "127.0.0.1:0", "--data-dir", dir}, o.ServerArgs...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(serverEnv(o.DatabaseURL), o.ServerEnv...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &serverProc{name: name, cmd: cmd, exited: make(chan struct{})}
	t.server = p
	t.cleanup = append(t.cleanup, p.stop)
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > logTailLines {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		p.exitErr = cmd.Wait()
		close(p.exited)
	}()
	var addr string
	timeout := time.NewTimer(spawnStartTimeout)
	defer timeout.Stop()
	select {
	case addr = <-addrc:
	case <-p.exited:
		return fmt.Errorf("%s exited before listening (%v):\n%s", name, p.exitErr, p.logTail())
	case <-timeout.C:
		return fmt.Errorf("%s did not listen within %s:\n%s", name, spawnStartTimeout, p.logTail())
	case <-ctx.Done():
		return ctx.Err()
	}
	tok, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		var id string
		if id, t.token, err = createToken(ctx, bin, dir, o.DatabaseURL); err != nil {
			return err
		}
		t.cleanup = append(t.cleanup, func() error { return revokeToken(bin, dir, o.DatabaseURL, id) })
	case err != nil:
		return err
	default:
		t.token = strings.TrimSpace(string(tok))
	}
	t.base = "http://" + addr + api.BasePath
	db := "SQLite (synchronous=FULL)"
	if o.DatabaseURL != "" {
		db = "PostgreSQL"
	}
	t.kind = fmt.Sprintf("berth serve process (pid %d), %s", cmd.Process.Pid, db)
	if o.Baseline {
		t.kind = fmt.Sprintf("baseline: a do-nothing net/http server process (pid %d)", cmd.Process.Pid)
	}
	return nil
}

// createToken creates an admin token in the server's database with `berth token
// create`, for a database that has tokens already; the run revokes it at its end.
func createToken(ctx context.Context, bin, dir, databaseURL string) (id, secret string, err error) {
	cmd := exec.CommandContext(ctx, bin, "token", "create", "--name", "bench", "--role", "admin", "--data-dir", dir, "--json")
	cmd.Env = serverEnv(databaseURL)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("the database has tokens but %s has no admin-token; berth token create: %v: %s", dir, err, errb.String())
	}
	var tok struct{ ID, Secret string }
	if err := json.Unmarshal(out, &tok); err != nil || tok.ID == "" || tok.Secret == "" {
		return "", "", fmt.Errorf("berth token create: unexpected output %q", out)
	}
	return tok.ID, tok.Secret, nil
}

// revokeToken revokes the token createToken made, with `berth token revoke`.
func revokeToken(bin, dir, databaseURL, id string) error {
	cmd := exec.Command(bin, "token", "revoke", id, "--data-dir", dir)
	cmd.Env = serverEnv(databaseURL)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("revoke the bench's token %s: %v: %s", id, err, out)
	}
	return nil
}

// serverEnv is this process's environment for a berth child process, without the
// variables that would point it elsewhere than the flags say (another database, an API
// URL for berth token), and with BERTH_DATABASE_URL set when databaseURL is: through
// the environment rather than a flag, so that no process listing shows its password.
func serverEnv(databaseURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "BERTH_DATABASE_URL", "BERTH_URL", "BERTH_TOKEN", "BERTH_NO_DASHBOARD":
			continue
		}
		env = append(env, kv)
	}
	if databaseURL != "" {
		env = append(env, "BERTH_DATABASE_URL="+databaseURL)
	}
	return env
}

func (p *serverProc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop stops the server with SIGTERM and waits for it to exit; it fails when the server
// does not exit cleanly (status 0) in time, and then kills it.
func (p *serverProc) stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited during the run (%v):\n%s", p.name, p.exitErr, p.logTail())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	timeout := time.NewTimer(spawnStopTimeout)
	defer timeout.Stop()
	select {
	case <-p.exited:
	case <-timeout.C:
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within %s of SIGTERM; killed:\n%s", p.name, spawnStopTimeout, p.logTail())
	}
	if p.exitErr != nil {
		return fmt.Errorf("%s did not stop cleanly (%v):\n%s", p.name, p.exitErr, p.logTail())
	}
	return nil
}
