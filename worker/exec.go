package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/berth-sh/berth/client"
)

// Exec is a Handler that runs a shell command once per work item, with `sh -c`.
//
// The child gets BERTH_WORK_ID, BERTH_SESSION_ID, BERTH_ENVIRONMENT_ID and BERTH_WORKER_ID
// in its environment and the work item's JSON on stdin; each line it writes to stdout or
// stderr goes to the worker's log with the work ID. It runs in a process group of its own,
// so that stopping it stops whatever it started too.
//
// The item ends when the command (the shell) exits, whatever it leaves behind: processes
// still in its group then get SIGTERM, and SIGKILL after KillGrace, before Handle returns,
// so that nothing the command started outlives its item or holds its slot.
//
// The shell traps SIGTERM (`trap exit TERM`, prepended to Command): a graceful stop
// signals the whole group, the command the shell is running ends as it chooses, and the
// shell then exits with that command's exit status instead of dying of the signal itself.
// Without the trap, `--exec ./job.sh` would record 143 (the shell's death by SIGTERM)
// even when job.sh handled the signal and exited with a code of its own: /bin/sh forks
// for the command rather than exec'ing it (dash does, for any -c string), and the shell
// gets the group's SIGTERM too. Subshells and background jobs reset the trap, as POSIX
// says, and a command that exec's or sets its own trap replaces it.
type Exec struct {
	// Command is the shell command line.
	Command string
	// KillGrace is how long a child has between SIGTERM and SIGKILL when its item is
	// stopped gracefully (a stop requested by an operator, or the drain timeout), and
	// how long processes the command left in its group have after it exits.
	KillGrace time.Duration
	// Env is added to the worker's own environment for every child.
	Env []string
	// Logger receives the children's output.
	Logger *slog.Logger
	// Events makes the child's stdin follow its session: the item's JSON is its first
	// line (ending in a newline), then comes each event of the item's session as one
	// JSON line, the stored event as the API returns it: the session's history first,
	// then each new event live, as it is committed (StreamEvents of Job.Client, which the
	// Worker sets; it
	// reconnects by itself with no gap and no duplicate). A user.interrupt is such a line
	// too, and nothing more: the command decides what an interrupt means to it. Stdin
	// ends after the session.deleted line, and when the command's item ends; should the
	// stream be refused (an API error), it ends too, and the reason is logged; a server
	// that cannot be reached is tried again, with a backoff, for as long as the command runs.
	// Without Events, stdin is the item's JSON alone, as the poll answered it.
	Events bool
}

// termTrap is prepended to every command: see Exec.
const termTrap = "trap exit TERM; "

// outputGrace bounds the wait for the end of a command's output once its process group
// is gone. Only a process that left the group (setsid, a daemon) can still hold the pipes
// then: it is beyond the worker's reach, and must not hold the item.
const outputGrace = time.Second

// groupPoll is the longest wait between two looks at whether the processes a command
// left behind have ended (the first looks come sooner). A process group has nothing to
// wait on, so it is polled, only while such processes are being ended.
const groupPoll = 100 * time.Millisecond

// killWait bounds the wait for a process group to vanish after SIGKILL, which processes in
// an uninterruptible sleep take a while to act on.
const killWait = 5 * time.Second

// Handle implements Handler.
func (e *Exec) Handle(ctx context.Context, job Job) (int, error) {
	log := e.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("work_id", job.Work.ID)
	cmd := exec.Command("/bin/sh", "-c", termTrap+e.Command)
	cmd.Env = append(os.Environ(), e.Env...)
	cmd.Env = append(cmd.Env,
		"BERTH_WORK_ID="+job.Work.ID,
		"BERTH_SESSION_ID="+job.Work.Data.ID,
		"BERTH_ENVIRONMENT_ID="+job.Work.EnvironmentID,
		"BERTH_WORKER_ID="+job.WorkerID,
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	// The pipes are the worker's own, not exec.Cmd's: Cmd.Wait would wait for its copying
	// to end, that is for every process holding the pipes (a background child, a daemon)
	// to close them, while the item must end when the command itself exits.
	cio, err := newChildIO(cmd)
	if err != nil {
		return -1, err
	}
	if err := cmd.Start(); err != nil {
		cio.abort()
		return -1, fmt.Errorf("start %q: %w", e.Command, err)
	}
	var feed func(w io.Writer)
	stdin := job.Raw
	feedCtx, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	if e.Events && job.Client != nil {
		stdin = jsonLine(job.Raw)
		feed = func(w io.Writer) { feedEvents(feedCtx, job, w, log) }
	}
	cio.started(stdin, feed, log)
	pgid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var werr error
	var sig groupSignal // what stop sent the group, if it was called
	select {
	case werr = <-waited:
	case <-ctx.Done():
		sig, werr = e.stop(pgid, context.Cause(ctx), job.Kill, waited, log)
	}
	e.endGroup(pgid, sig, job.Kill, log)
	stopFeed()
	cio.finish(log)

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
// after KillGrace, or as soon as kill closes (forced or lease lost during the grace). It
// returns when the shell has exited, with what it sent the group and Wait's error.
func (e *Exec) stop(pgid int, cause error, kill <-chan struct{}, waited <-chan error, log *slog.Logger) (groupSignal, error) {
	if errors.Is(cause, ErrLeaseLost) || errors.Is(cause, ErrForced) {
		log.Warn("killing child", "reason", cause)
		syscall.Kill(-pgid, syscall.SIGKILL)
		sig := groupSignal{at: time.Now(), killed: true}
		return sig, <-waited
	}
	log.Info("terminating child", "reason", cause, "kill_grace", e.KillGrace)
	sig := groupSignal{at: time.Now()}
	syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(e.KillGrace)
	defer t.Stop()
	select {
	case err := <-waited:
		return sig, err
	case <-kill:
		log.Warn("told to stop at once during the kill grace; killing child")
	case <-t.C:
		log.Warn("child outlived its kill grace; killing it")
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	sig.killed = true
	return sig, <-waited
}

// groupSignal is what the worker has sent a command's process group: SIGTERM at at, and
// SIGKILL since if killed. The zero value: nothing yet.
type groupSignal struct {
	at     time.Time
	killed bool
}

// endGroup ends what the command left in its process group once the shell has exited
// (and been reaped): SIGTERM, unless stop sent one already (sig), then SIGKILL once the
// kill grace, counted from the SIGTERM, has passed, or as soon as kill closes. It returns
// when the group is empty, or soon after SIGKILL.
//
// The group's ID is the PID of the shell, which has been reaped. The system does not
// reuse a process group's ID while the group has members, so the signals cannot reach
// anyone else while any process of the group lives; once it is empty they fail (ESRCH).
func (e *Exec) endGroup(pgid int, sig groupSignal, kill <-chan struct{}, log *slog.Logger) {
	if !groupAlive(pgid) {
		return
	}
	if !sig.killed {
		// Not a second SIGTERM after stop's: a process may take a second one as an order
		// to quit at once, in the middle of its graceful exit.
		if sig.at.IsZero() {
			sig.at = time.Now()
			log.Warn("the command left processes running in its process group; terminating them", "kill_grace", e.KillGrace)
			syscall.Kill(-pgid, syscall.SIGTERM)
		}
		grace := time.NewTimer(time.Until(sig.at.Add(e.KillGrace)))
		defer grace.Stop()
		if !waitGroup(pgid, grace.C, kill) {
			return
		}
		select {
		case <-kill:
			log.Warn("told to stop at once; killing what the command left in its process group")
		default:
			log.Warn("processes the command left in its process group outlived the kill grace; killing them")
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	deadline := time.NewTimer(killWait)
	defer deadline.Stop()
	if waitGroup(pgid, deadline.C, nil) {
		log.Error("processes of the command's process group survive SIGKILL; going on without them", "pgid", pgid)
	}
}

// waitGroup waits until process group pgid is empty (false), or until timeout or kill
// fires first (true).
func waitGroup(pgid int, timeout <-chan time.Time, kill <-chan struct{}) bool {
	pause := time.Millisecond
	t := time.NewTimer(pause)
	defer t.Stop()
	for groupAlive(pgid) {
		select {
		case <-t.C:
		case <-timeout:
			return true
		case <-kill:
			return true
		}
		pause = min(2*pause, groupPoll)
		t.Reset(pause)
	}
	return false
}

// groupAlive reports whether process group pgid has a live process left. Zombies do not
// count: it reaps those that are the worker's own children (a command's orphans are, when
// the worker is PID 1 in a container, or a child subreaper), and asks /proc about the
// others. Only the group's processes are reaped, after exec.Cmd has reaped the shell.
func groupAlive(pgid int) bool {
	for {
		pid, err := syscall.Wait4(-pgid, nil, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
	if syscall.Kill(-pgid, 0) == syscall.ESRCH {
		return false
	}
	if live, ok := liveInGroup(pgid); ok {
		return live
	}
	return true
}

// childIO is a child's stdin, stdout and stderr: pipes whose child ends go to the child
// and whose worker ends the worker reads and writes itself.
type childIO struct {
	stdinR, stdinW *os.File
	outR, outW     *os.File
	errR, errW     *os.File
	reading        sync.WaitGroup
	writing        sync.WaitGroup // the stdin writer
	read           chan struct{}  // closed when both readers have reached the end
}

func newChildIO(cmd *exec.Cmd) (*childIO, error) {
	c := &childIO{read: make(chan struct{})}
	var err error
	if c.stdinR, c.stdinW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if c.outR, c.outW, err = os.Pipe(); err != nil {
		c.abort()
		return nil, err
	}
	if c.errR, c.errW, err = os.Pipe(); err != nil {
		c.abort()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.stdinR, c.outW, c.errW
	return c, nil
}

// abort closes every end, when the child could not be started.
func (c *childIO) abort() {
	for _, f := range []*os.File{c.stdinR, c.stdinW, c.outR, c.outW, c.errR, c.errW} {
		if f != nil {
			f.Close()
		}
	}
}

// started closes the child's ends in the worker (the child has its copies), writes the
// item's JSON to the child's stdin, then what feed writes (nil: nothing), and logs each
// line the child writes.
func (c *childIO) started(stdin []byte, feed func(io.Writer), log *slog.Logger) {
	c.stdinR.Close()
	c.outW.Close()
	c.errW.Close()
	c.writing.Add(1)
	go func() {
		defer c.writing.Done()
		// A child that does not read its stdin gets EPIPE or, past the pipe's buffer,
		// leaves this write blocked until finish closes the pipe.
		if _, err := c.stdinW.Write(stdin); err == nil && feed != nil {
			feed(c.stdinW)
		}
		c.stdinW.Close()
	}()
	for name, r := range map[string]*os.File{"stdout": c.outR, "stderr": c.errR} {
		c.reading.Add(1)
		go func() {
			defer c.reading.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				log.Info(sc.Text(), "stream", name)
			}
			io.Copy(io.Discard, r) // a line over 1 MiB: drain the rest so the child never blocks
		}()
	}
	go func() { c.reading.Wait(); close(c.read) }()
}

// finish reads the child's output to its end, for up to outputGrace once the child's
// process group is gone, then closes the worker's ends.
func (c *childIO) finish(log *slog.Logger) {
	t := time.NewTimer(outputGrace)
	defer t.Stop()
	select {
	case <-c.read:
	case <-t.C:
		log.Warn("a process outside the command's process group still holds its output; no longer reading it")
	}
	c.outR.Close()
	c.errR.Close()
	c.stdinW.Close()
	<-c.read
	c.writing.Wait()
}

// jsonLine is b on one line, ending in a newline.
func jsonLine(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		out.Reset()
		out.Write(bytes.TrimSpace(b))
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// feedEvents writes each event of the job's session to w, one JSON line each: the
// history, then the live events, until the session is deleted, the server refuses the
// stream (an API error), ctx ends (the command has exited) or a write fails (the
// command closed its stdin, or finish closed the pipe). A stream that could not connect
// at all (the server unreachable for a while) is started again after a backoff, from
// the last event written.
func feedEvents(ctx context.Context, job Job, w io.Writer, log *slog.Logger) {
	sessionID := job.Work.Data.ID
	last := ""
	backoff := client.Backoff{Initial: time.Second, Max: 30 * time.Second}
	for attempt := 0; ; attempt++ {
		p := client.StreamEventsParams{
			LastEventID: last,
			History:     last == "",
			OnReconnect: func(err error, wait time.Duration) {
				log.Info("session event stream interrupted; reconnecting", "session_id", sessionID, "err", err, "wait", wait)
			},
		}
		var end error
		for ev, err := range job.Client.StreamEvents(ctx, sessionID, p) {
			if err != nil {
				end = err
				break
			}
			if _, err := w.Write(jsonLine(ev.Raw)); err != nil {
				return
			}
			last = ev.ID
		}
		var apiErr *client.Error
		switch {
		case end == nil || ctx.Err() != nil:
			return // the session was deleted, or the command is done
		case errors.As(end, &apiErr):
			log.Warn("session event stream refused; closing the command's stdin", "session_id", sessionID, "err", end)
			return
		}
		wait := backoff.Delay(attempt)
		log.Warn("session event stream could not connect; trying again", "session_id", sessionID, "err", end, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
