package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/testserver"
)

// pollsAnswered is how many polls the server has answered 200 (an item or null), from its
// /metrics.
func (c *cluster) pollsAnswered() int {
	c.t.Helper()
	_, body := request(c.t, "GET", c.srv.url("/metrics"), "", "")
	re := regexp.MustCompile(`(?m)^berth_http_requests_total\{code="200",method="GET",route="[^"]*/work/poll"\} (\d+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// berth worker --exit-when-idle keeps polling while an item runs, even through null
// polls (it takes an item queued then), and exits 0 by itself at the first null poll once
// nothing runs, each item stopped with its exit code.
func TestWorkerExitWhenIdle(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	dir := t.TempDir()
	first := c.session()
	// Each run marks that it started, then waits for the test's go-ahead.
	script := `touch "` + dir + `/started-$BERTH_WORK_ID"; while [ ! -e "` + dir + `/go" ]; do sleep 0.02; done`
	w := c.startWorker(nil, "--exit-when-idle", "--capacity", "2", "--exec", script)
	started := func(id string) func() bool {
		return func() bool { _, err := os.Stat(filepath.Join(dir, "started-"+id)); return err == nil }
	}
	testserver.WaitFor(t, "the first item's run", started(first.ID))

	// Two more answered polls: at least one began after the item started, and with the
	// queue empty it answered null while the item ran.
	base := c.pollsAnswered()
	testserver.WaitFor(t, "a null poll while the item runs", func() bool { return c.pollsAnswered() >= base+2 })
	second := c.session()
	testserver.WaitFor(t, "the second item's run (the worker went on polling)", started(second.ID))

	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := w.exitCode(t, testserver.HangGuard); code != 0 {
		t.Fatalf("worker exit code %d, want 0:\n%s", code, w.log())
	}
	if !strings.Contains(w.log(), "idle: nothing to poll and nothing running; exiting") {
		t.Errorf("the worker did not say why it exited:\n%s", w.log())
	}
	for _, id := range []string{first.ID, second.ID} {
		if it := c.get(id); it.State != client.StateStopped || it.Metadata["exit_code"] != "0" {
			t.Errorf("item %s: %s, exit_code %q; want stopped with exit_code 0", id, it.State, it.Metadata["exit_code"])
		}
	}
}

// On an empty queue a worker with BERTH_EXIT_WHEN_IDLE=1 exits 0 after its first poll;
// a value that is no boolean is refused.
func TestWorkerExitWhenIdleOnEmptyQueue(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	w := c.startWorker([]string{"BERTH_EXIT_WHEN_IDLE=1"}, "--exec", "true")
	if code := w.exitCode(t, testserver.HangGuard); code != 0 {
		t.Fatalf("worker exit code %d, want 0:\n%s", code, w.log())
	}
	if n := c.pollsAnswered(); n != 1 {
		t.Errorf("the server answered %d polls, want 1", n)
	}
	bad := c.startWorker([]string{"BERTH_EXIT_WHEN_IDLE=maybe"}, "--exec", "true")
	if code := bad.exitCode(t, testserver.HangGuard); code != 1 || !strings.Contains(bad.log(), "BERTH_EXIT_WHEN_IDLE") {
		t.Errorf("BERTH_EXIT_WHEN_IDLE=maybe: exit code %d, want 1 naming the variable:\n%s", code, bad.log())
	}
}
