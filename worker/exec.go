package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Exec is a Handler that runs a shell command once per work item, with `sh -c`.
//
// The child gets BERTH_WORK_ID, BERTH_SESSION_ID, BERTH_ENVIRONMENT_ID and BERTH_WORKER_ID
// in its environment and the work item's JSON on stdin; each line it writes to stdout or
// stderr goes to the worker's log with the work ID. It runs in a process group of its own,
// so that stopping it stops whatever it started too.
type Exec struct {
	// Command is the shell command line.
	Command string
	// KillGrace is how long a child has between SIGTERM and SIGKILL when its item is
	// stopped gracefully (a stop requested by an operator, or the drain timeout).
	KillGrace time.Duration
	// Env is added to the worker's own environment for every child.
	Env []string
	// Logger receives the children's output.
	Logger *slog.Logger
}

// Handle implements Handler.
func (e *Exec) Handle(ctx context.Context, job Job) (int, error) {
	cmd := exec.Command("/bin/sh", "-c", e.Command)
	cmd.Env = append(os.Environ(), e.Env...)
	cmd.Env = append(cmd.Env,
		"BERTH_WORK_ID="+job.Work.ID,
		"BERTH_SESSION_ID="+job.Work.Data.ID,
		"BERTH_ENVIRONMENT_ID="+job.Work.EnvironmentID,
		"BERTH_WORKER_ID="+job.WorkerID,
	)
	cmd.Stdin = bytes.NewReader(job.Raw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("work_id", job.Work.ID)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return -1, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("start %q: %w", e.Command, err)
	}
	var copying sync.WaitGroup
	for name, r := range map[string]io.Reader{"stdout": stdout, "stderr": stderr} {
		copying.Add(1)
		go func() {
			defer copying.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				log.Info(sc.Text(), "stream", name)
			}
			io.Copy(io.Discard, r) // a line over 1 MiB: drain the rest so the child never blocks
		}()
	}
	waited := make(chan error, 1)
	go func() {
		copying.Wait() // Wait closes the pipes; read them to the end first
		waited <- cmd.Wait()
	}()

	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		werr = e.stop(cmd, context.Cause(ctx), job.Kill, waited, log)
	}
	var exit *exec.ExitError
	switch {
	case werr == nil:
		return 0, nil
	case errors.As(werr, &exit):
		if st, ok := exit.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal()), nil
		}
		return exit.ExitCode(), nil
	default:
		return -1, werr
	}
}

// stop ends a running child: at once (SIGKILL) when its lease was lost or the stop is
// forced, since another worker may already hold the item; otherwise SIGTERM, and SIGKILL
// after KillGrace, or as soon as kill closes (forced or lease lost during the grace).
func (e *Exec) stop(cmd *exec.Cmd, cause error, kill <-chan struct{}, waited <-chan error, log *slog.Logger) error {
	pgid := -cmd.Process.Pid
	if errors.Is(cause, ErrLeaseLost) || errors.Is(cause, ErrForced) {
		log.Warn("killing child", "reason", cause)
		syscall.Kill(pgid, syscall.SIGKILL)
		return <-waited
	}
	log.Info("terminating child", "reason", cause, "kill_grace", e.KillGrace)
	syscall.Kill(pgid, syscall.SIGTERM)
	t := time.NewTimer(e.KillGrace)
	defer t.Stop()
	select {
	case err := <-waited:
		return err
	case <-kill:
		log.Warn("told to stop at once during the kill grace; killing child")
		syscall.Kill(pgid, syscall.SIGKILL)
		return <-waited
	case <-t.C:
		log.Warn("child outlived its kill grace; killing it")
		syscall.Kill(pgid, syscall.SIGKILL)
		return <-waited
	}
}
