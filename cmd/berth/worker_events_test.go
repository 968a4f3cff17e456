package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-sh/berth/client"
)

// agentLoop is a command for `berth worker --events`: it reads the item's line, then
// the session's events, answers each agent.tool_use with a user.tool_result naming it
// (by `berth session send`, with the worker's BERTH_URL and BERTH_TOKEN), and exits at
// a user.interrupt. An event's JSON starts with its id: {"id":"evt_…","type":"…",…}.
const agentLoop = `read -r item
case "$item" in *'"type":"work"'*) ;; *) echo "first line is not the item: $item"; exit 9 ;; esac
while read -r line; do
  id=${line#'{"id":"'}; id=${id%%'"'*}
  case "$line" in
  *'"type":"agent.tool_use"'*)
    echo "tool use $id"
    berth session send "$BERTH_SESSION_ID" --type user.tool_result --tool-use-id "$id" --text "ran $id" >/dev/null || exit 8
    ;;
  *'"type":"user.interrupt"'*)
    echo "interrupted"
    exit 0
    ;;
  esac
done
echo "stdin ended"
exit 7`

// TestWorkerEvents: a real `berth worker --events` runs a shell command that follows its
// session on stdin and answers the agent's tool uses with `berth session send`; the
// history shows the round trips, and a user.interrupt line ends the command.
func TestWorkerEvents(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	// `berth` on the command's PATH is this test binary, as berth (BERTH_TEST_AS_MAIN
	// reaches the command through the worker's environment).
	bin := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(bin, "berth")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sess, err := c.admin.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_test", EnvironmentID: c.env,
		InitialEvents: []any{client.UserMessage("list the files")}})
	if err != nil {
		t.Fatal(err)
	}
	item := c.itemsOf(sess.ID)[0]
	// The worker gets its URL by flag only: the command's BERTH_URL is the worker's.
	w := c.startWorker([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "GORACE=atexit_sleep_ms=0"},
		"--events", "--exec", agentLoop)

	// Two tool uses, one before the command runs and one while it does: each is answered.
	var uses []string
	for i, cmd := range []string{"ls", "cat go.mod"} {
		sent, err := c.admin.SendEvents(ctx, sess.ID, []any{map[string]any{
			"type": "agent.tool_use", "name": "bash", "input": map[string]any{"command": cmd}}})
		if err != nil {
			t.Fatal(err)
		}
		uses = append(uses, sent[0].ID)
		if i == 0 {
			w.waitLog(t, "tool use "+sent[0].ID)
		}
	}
	// Wait for the answers on the session's stream, from the first tool use on.
	answered := map[string]client.Event{}
	streamCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for e, err := range c.admin.StreamEvents(streamCtx, sess.ID, client.StreamEventsParams{LastEventID: uses[0]}) {
		if err != nil {
			t.Fatalf("stream: %v\n%s", err, w.log())
		}
		if e.Type != "user.tool_result" {
			continue
		}
		var r struct {
			ToolUseID string `json:"tool_use_id"`
		}
		json.Unmarshal(e.Raw, &r)
		answered[r.ToolUseID] = e
		if len(answered) == len(uses) {
			break
		}
	}
	for _, id := range uses {
		e, ok := answered[id]
		if !ok || !strings.Contains(string(e.Raw), `"text":"ran `+id+`"`) {
			t.Errorf("tool use %s: answer %s", id, e.Raw)
		}
	}

	// The history holds each round trip in order: the use, then its result.
	var history []client.Event
	for e, err := range c.admin.AllEvents(ctx, sess.ID, client.ListEventsParams{ListParams: client.ListParams{Limit: 1000}}) {
		if err != nil {
			t.Fatal(err)
		}
		history = append(history, e)
	}
	pos := map[string]int{}
	for i, e := range history {
		pos[e.ID] = i
	}
	for _, id := range uses {
		if pos[id] >= pos[answered[id].ID] {
			t.Errorf("tool use %s comes after its result in the history", id)
		}
	}

	// A user.interrupt is a line: this command exits 0 on it.
	if _, err := c.admin.SendEvents(ctx, sess.ID, []any{map[string]any{"type": "user.interrupt"}}); err != nil {
		t.Fatal(err)
	}
	w.waitLog(t, "interrupted")
	done := c.waitState(item.ID, client.StateStopped, time.Minute)
	if done.Metadata["exit_code"] != "0" {
		t.Errorf("exit_code %q, want 0:\n%s", done.Metadata["exit_code"], w.log())
	}
	w.signal(t, os.Interrupt)
	if code := w.exitCode(t, time.Minute); code != 0 {
		t.Errorf("worker exited %d", code)
	}
	if strings.Contains(w.log(), `"level":"ERROR"`) || strings.Contains(w.log(), "session event stream ended") {
		t.Errorf("worker log:\n%s", w.log())
	}
}
