package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-sh/berth/client"
)

// TestCLISessionSendAndFollow: session send builds one event from --type, --text, --body
// and --tool-use-id (a worker token may send its types, not the agent's), and session
// events --follow prints the history, then live events, from the start or after
// --after, until the session is deleted.
func TestCLISessionSendAndFollow(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	admin := readAdminToken(t, dir)
	base := p.url("/api/v1/cloud")
	cli := &cliRunner{t: t, env: []string{"BERTH_URL=" + base, "BERTH_TOKEN=" + admin}}
	var env client.Environment
	cli.json(&env, "env", "create", "--name", "agents", "--json")
	var sess client.Session
	cli.json(&sess, "session", "create", "-e", env.ID, "--agent", "agent_x", "--message", "list the files", "--json")
	var tok client.Token
	cli.json(&tok, "token", "create", "--name", "w", "--role", "worker", "--environment-id", env.ID, "--json")
	worker := cli.with("BERTH_TOKEN=" + tok.Secret)

	// From the start, in JSON Lines.
	all := cli.start("session", "events", sess.ID, "--follow", "--json")
	first := decodeEvent(t, all.line(t))
	if first.Type != "user.message" {
		t.Fatalf("first line %s", first.Raw)
	}

	var sent struct{ Data []client.Event }
	cli.json(&sent, "session", "send", sess.ID, "--type", "agent.tool_use", "--body", `{"name":"bash","input":{"command":"ls"}}`, "--json")
	use := sent.Data[0]
	var body struct {
		Name  string         `json:"name"`
		Input map[string]any `json:"input"`
	}
	if json.Unmarshal(use.Raw, &body); use.Type != "agent.tool_use" || body.Name != "bash" || body.Input["command"] != "ls" {
		t.Fatalf("sent %s", use.Raw)
	}
	// Only after the first event: the table.
	after := cli.start("session", "events", sess.ID, "-f", "--after", first.ID)
	if h := after.line(t); !strings.HasPrefix(h, "ID ") || !strings.Contains(h, "TYPE") {
		t.Fatalf("table header %q", h)
	}
	if l := after.line(t); !strings.HasPrefix(l, use.ID+"  agent.tool_use ") {
		t.Fatalf("row %q, want %s agent.tool_use", l, use.ID)
	}

	// The worker answers the tool use by its id.
	worker.json(&sent, "session", "send", sess.ID, "--type", "user.tool_result", "--tool-use-id", use.ID, "--text", "README.md", "--json")
	result := sent.Data[0]
	var res struct {
		ToolUseID string `json:"tool_use_id"`
		Content   []struct{ Type, Text string }
	}
	if json.Unmarshal(result.Raw, &res); res.ToolUseID != use.ID || len(res.Content) != 1 || res.Content[0].Text != "README.md" {
		t.Fatalf("tool result %s", result.Raw)
	}
	// The agent's side is not the worker's to send.
	wantAPIError(t, worker.fail(exitAuth, "session", "send", sess.ID, "--type", "agent.message", "--text", "hi"), 403, "permission_error")
	// Bad combinations are usage errors, before anything is sent.
	cli.fail(exitLocal, "session", "send", sess.ID, "--text", "no type")
	cli.fail(exitLocal, "session", "send", sess.ID, "--type", "user.message", "--message", "two ways")
	cli.fail(exitLocal, "session", "send", sess.ID, "--type", "agent.tool_use", "--body", "[1]")
	cli.fail(exitLocal, "session", "send", sess.ID, "--type", "user.message", "--body", `{"type":"agent.message"}`)
	cli.fail(exitLocal, "session", "events", sess.ID, "--follow", "--all")
	// A stream that is refused exits as any API error does.
	wantAPIError(t, cli.fail(exitNotFound, "session", "events", "sess_0000000000000000000000000000000f", "-f"), 404, "not_found_error")

	for _, want := range []client.Event{use, result} {
		if e := decodeEvent(t, all.line(t)); e.ID != want.ID || string(e.Raw) != string(want.Raw) {
			t.Fatalf("--follow --json printed %s, want %s", e.Raw, want.Raw)
		}
	}
	if l := after.line(t); !strings.HasPrefix(l, result.ID+"  user.tool_result ") || !strings.HasSuffix(l, "README.md") {
		t.Fatalf("row %q", l)
	}
	if _, err := mustClient(t, base, admin).DeleteSession(context.Background(), sess.ID); err != nil {
		t.Fatal(err)
	}
	if e := decodeEvent(t, all.line(t)); e.Type != "session.deleted" {
		t.Fatalf("after the delete: %s", e.Raw)
	}
	if l := after.line(t); !strings.Contains(l, " session.deleted ") {
		t.Fatalf("after the delete: %q", l)
	}
	for _, f := range []*cliProc{all, after} {
		if code := f.exit(t); code != 0 {
			t.Errorf("berth %q exited %d; stderr:\n%s", f.cmd.Args[1:], code, f.stderr)
		}
	}
}

func decodeEvent(t *testing.T, line string) client.Event {
	t.Helper()
	var e client.Event
	if err := json.Unmarshal([]byte(line), &e); err != nil {
		t.Fatalf("not an event: %q: %v", line, err)
	}
	return e
}

func mustClient(t *testing.T, base, token string) *client.Client {
	t.Helper()
	c, err := client.New(base, token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
