package worker_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// processGone reports whether pid has ended: it no longer exists, or is a zombie (dead,
// waiting for a parent that may never reap it: PID 1 in some containers does not).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return os.IsNotExist(err)
	}
	i := bytes.LastIndexByte(stat, ')')
	f := bytes.Fields(stat[i+1:])
	return len(f) > 0 && (string(f[0]) == "Z" || string(f[0]) == "X")
}

// When the command exits, its item ends at once with the command's exit code, whatever
// the command started in the background: processes left in its process group get
// SIGTERM, and SIGKILL after the kill grace, and none outlives the item. One that holds
// the command's stdout (`sleep 600 & exit 7`) no longer holds the item until it closes
// it; one that does not (`… >/dev/null 2>&1 &`) no longer lives on after it.
func TestCommandExitEndsItsItemAndWhatItLeftBehind(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	cases := []struct {
		name, script, exitCode string
	}{
		{"holds stdout", `sleep 600 & echo $! > "$DIR/$BERTH_SESSION_ID.bg"; exit 7`, "7"},
		{"detached from stdout", `sleep 600 >/dev/null 2>&1 & echo $! > "$DIR/$BERTH_SESSION_ID.bg"; exit 0`, "0"},
		// The child writes its PID once it ignores SIGTERM; the command waits for that.
		{"ignores SIGTERM", `sh -c 'trap "" TERM; echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec sleep 600' "$DIR/$BERTH_SESSION_ID.bg" &
while [ ! -e "$DIR/$BERTH_SESSION_ID.bg" ]; do sleep 0.01; done; exit 5`, "5"},
	}
	type started struct {
		sess, item string
	}
	var items []started
	for _, c := range cases {
		s, w := b.session(map[string]string{"case": c.name})
		items = append(items, started{s.ID, w.ID})
		if err := os.WriteFile(filepath.Join(dir, s.ID+".sh"), []byte(c.script+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := b.start(worker.Config{Capacity: len(cases), Handler: &worker.Exec{
		Command: `. "$DIR/$BERTH_SESSION_ID.sh"`, KillGrace: 200 * time.Millisecond, Env: []string{"DIR=" + dir}}})
	for i, c := range cases {
		w := b.waitState(items[i].item, client.StateStopped)
		if w.Metadata["exit_code"] != c.exitCode {
			t.Errorf("%s: exit_code %q, want %s", c.name, w.Metadata["exit_code"], c.exitCode)
		}
		pid := readPID(t, filepath.Join(dir, items[i].sess+".bg"))
		if !processGone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s: background process %d outlived its item", c.name, pid)
		}
	}
	log := run.log.String()
	if n := strings.Count(log, "the command left processes running in its process group; terminating them"); n != len(cases) {
		t.Errorf("%d items logged leftover processes, want %d:\n%s", n, len(cases), log)
	}
	if !strings.Contains(log, "outlived the kill grace; killing them") {
		t.Errorf("the process ignoring SIGTERM was not killed after the grace:\n%s", log)
	}
}

// A process that leaves the command's process group (setsid, as daemons do) is beyond the
// worker's reach, but when it keeps the command's stdout open it still does not hold the
// item: once the group is gone, the worker stops reading the output.
func TestProcessOutsideTheGroupDoesNotHoldTheItem(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	_, item := b.session(nil)
	// The daemon writes its PID once it has left the group; the command waits for that.
	daemon := `setsid sh -c 'echo $$ > "$DIR/daemon.tmp"; mv "$DIR/daemon.tmp" "$DIR/daemon"; exec sleep 600' &
while [ ! -e "$DIR/daemon" ]; do sleep 0.01; done; echo "started"; exit 4`
	run := b.start(worker.Config{Handler: &worker.Exec{Command: daemon, Env: []string{"DIR=" + dir}}})
	w := b.waitState(item.ID, client.StateStopped)
	pid := readPID(t, filepath.Join(dir, "daemon"))
	syscall.Kill(pid, syscall.SIGKILL)
	if w.Metadata["exit_code"] != "4" {
		t.Errorf("exit_code %q, want 4", w.Metadata["exit_code"])
	}
	run.log.waitFor(t, "a process outside the command's process group still holds its output")
}

// A graceful stop records the command's own exit code, not that of the shell that runs
// it: `--exec ./job.sh`, where job.sh traps SIGTERM and exits 3, records 3 (it recorded
// 143, the shell's death by the signal), with no `exec` in front. A compound command
// records the code of the command it was running, and runs nothing after it.
func TestGracefulStopRecordsTheCommandsOwnExitCode(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	job := filepath.Join(dir, "job.sh")
	// Its background process says when it runs: a SIGTERM that comes between its fork
	// and its exec is lost (dash catches it, then resets the handler).
	script := `#!/bin/sh
trap 'echo "job got TERM"; exit 3' TERM
sh -c 'echo $$ > "$0.tmp"; mv "$0.tmp" "$0"; exec sleep 600' "$DIR/bg.$BERTH_WORK_ID" &
while [ ! -e "$DIR/bg.$BERTH_WORK_ID" ]; do sleep 0.01; done
echo "ready $BERTH_WORK_ID"
wait
`
	if err := os.WriteFile(job, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	commands := []string{
		job,
		`cd "$DIR" && ./job.sh; echo "after the job"`,
	}
	var ids []string
	for _, c := range commands {
		_, w := b.session(map[string]string{"command": c})
		ids = append(ids, w.ID)
	}
	var times handlerTimes
	exec := func(command string) *worker.Exec {
		return &worker.Exec{Command: command, KillGrace: time.Minute, Env: []string{"DIR=" + dir}, Logger: b.logger}
	}
	run := b.start(worker.Config{Capacity: len(commands), TTL: 10, HeartbeatInterval: 50 * time.Millisecond,
		Handler: times.wrap(worker.HandlerFunc(func(ctx context.Context, j worker.Job) (int, error) {
			return exec(j.Work.Metadata["command"]).Handle(ctx, j)
		}))})
	for i, id := range ids {
		run.log.waitFor(t, "ready "+id)
		if _, err := b.admin.StopWork(context.Background(), b.env, id, false); err != nil {
			t.Fatal(err)
		}
		w := b.waitState(id, client.StateStopped)
		if w.Metadata["exit_code"] != "3" {
			t.Errorf("%q: exit_code %q, want 3, job.sh's own", commands[i], w.Metadata["exit_code"])
		}
		if ended, _ := times.get(id); !isErr(ended.cause, worker.ErrStopRequested) {
			t.Errorf("%q: handler cancelled with %v, want ErrStopRequested", commands[i], ended.cause)
		}
	}
	log := run.log.String()
	if n := strings.Count(log, `"msg":"job got TERM"`); n != len(commands) {
		t.Errorf("job.sh got SIGTERM %d times, want %d:\n%s", n, len(commands), log)
	}
	if strings.Contains(log, "after the job") {
		t.Errorf("the compound command went on after the stop:\n%s", log)
	}
}

// A process the command starts after a graceful stop's SIGTERM (here from its trap) does
// not outlive the item either: it gets SIGKILL when the kill grace ends. It gets no
// SIGTERM of its own, since the group's processes have had theirs, and a second one may
// cut a graceful exit short.
func TestProcessStartedAfterTheStopIsKilledAfterTheGrace(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	dir := t.TempDir()
	_, item := b.session(nil)
	script := `trap 'sleep 600 & echo $! > "$DIR/late"; exit 3' TERM; sleep 600 & echo "ready $BERTH_WORK_ID"; wait`
	run := b.start(worker.Config{TTL: 10, HeartbeatInterval: 50 * time.Millisecond, Handler: &worker.Exec{
		Command: script, KillGrace: 200 * time.Millisecond, Env: []string{"DIR=" + dir}}})
	run.log.waitFor(t, "ready "+item.ID)
	if _, err := b.admin.StopWork(context.Background(), b.env, item.ID, false); err != nil {
		t.Fatal(err)
	}
	w := b.waitState(item.ID, client.StateStopped)
	if w.Metadata["exit_code"] != "3" {
		t.Errorf("exit_code %q, want 3", w.Metadata["exit_code"])
	}
	if pid := readPID(t, filepath.Join(dir, "late")); !processGone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("process %d, started after the stop, outlived the item", pid)
	}
	run.log.waitFor(t, "outlived the kill grace; killing them")
	if strings.Contains(run.log.String(), "the command left processes running") {
		t.Errorf("a second SIGTERM after the stop's:\n%s", run.log)
	}
}
