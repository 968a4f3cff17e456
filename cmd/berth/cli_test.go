package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berth-sh/berth/internal/testserver"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/openapi"
)

// cliRunner runs the berth CLI as a process (the test binary as berth) with a fixed
// environment on top of the test's, from which every BERTH_ variable is removed.
type cliRunner struct {
	t   *testing.T
	env []string
	dir string // working directory; the test's when empty
}

func (r *cliRunner) with(env ...string) *cliRunner {
	return &cliRunner{t: r.t, env: append(slices.Clone(r.env), env...), dir: r.dir}
}

// in runs berth in the working directory dir.
func (r *cliRunner) in(dir string) *cliRunner {
	return &cliRunner{t: r.t, env: r.env, dir: dir}
}

// run runs berth with args and returns its stdout, stderr and exit code.
func (r *cliRunner) run(args ...string) (stdout, stderr string, code int) {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = r.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BERTH_") && !strings.HasPrefix(kv, "GORACE=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The race detector's runtime sleeps a second at exit to catch late reports; that
	// second, on every one of the many runs here, is all it would add.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(cmd.Env, "BERTH_TEST_AS_MAIN=1", "GORACE="+gorace)
	cmd.Env = append(cmd.Env, r.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		r.t.Fatalf("berth %q: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// ok runs berth, wants exit 0 and returns stdout.
func (r *cliRunner) ok(args ...string) string {
	r.t.Helper()
	out, errs, code := r.run(args...)
	if code != 0 {
		r.t.Fatalf("berth %q: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

// json runs berth, wants exit 0 and decodes stdout into v, zeroed first (decoding into
// a map would merge).
func (r *cliRunner) json(v any, args ...string) {
	r.t.Helper()
	out := r.ok(args...)
	reflect.ValueOf(v).Elem().SetZero()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		r.t.Fatalf("berth %q: stdout is not the JSON wanted: %v\n%s", args, err, out)
	}
}

// fail runs berth, wants exit code and nothing on stdout, and returns stderr.
func (r *cliRunner) fail(code int, args ...string) string {
	r.t.Helper()
	out, errs, got := r.run(args...)
	if got != code {
		r.t.Fatalf("berth %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, got, code, out, errs)
	}
	if out != "" {
		r.t.Errorf("berth %q failed with output on stdout: %s", args, out)
	}
	if !strings.HasPrefix(errs, "berth: ") {
		r.t.Errorf("berth %q: stderr does not start with \"berth: \": %q", args, errs)
	}
	return errs
}

// apiErrRE is how an API error is printed.
var apiErrRE = regexp.MustCompile(`^berth: .+ \(HTTP (\d{3}) ([a-z_]+), request_id=[^)\s]+\)\n`)

func wantAPIError(t *testing.T, stderr string, status int, typ string) {
	t.Helper()
	m := apiErrRE.FindStringSubmatch(stderr)
	if m == nil || m[1] != fmt.Sprint(status) || m[2] != typ {
		t.Errorf("stderr %q: want berth: <message> (HTTP %d %s, request_id=<id>)", stderr, status, typ)
	}
}

// tableIDs returns the first column of a table's rows (the header left out).
func tableIDs(t *testing.T, table string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("not a table of IDs:\n%s", table)
	}
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0])
	}
	return ids
}

func wantContains(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

// TestCLIAgainstRunningServer drives a real `berth serve` through the CLI only, through
// every API operation, and checks from the server's access log that every route of the
// API was answered with a 2xx at least once.
func TestCLIAgainstRunningServer(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	admin := readAdminToken(t, dir)
	base := p.url("/api/v1/cloud")
	cli := &cliRunner{t: t, env: []string{"BERTH_URL=" + base, "BERTH_TOKEN=" + admin}}

	// --- environments ---
	var env client.Environment
	cli.json(&env, "env", "create", "--name", "cli-env", "--description", "d", "--metadata", "team=a", "--metadata", "tier=gold", "--json")
	if !strings.HasPrefix(env.ID, "env_") || env.Config.Type != client.ConfigSelfHosted || env.Metadata["team"] != "a" || env.Metadata["tier"] != "gold" {
		t.Fatalf("env create: %+v", env)
	}
	out := cli.ok("env", "create", "--name", "cli-cloud", "--type", "cloud")
	ids := tableIDs(t, out)
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "env_") || !strings.Contains(out, "cloud") {
		t.Fatalf("env create table:\n%s", out)
	}
	cloudID := ids[0]
	if ids := tableIDs(t, cli.ok("env", "list")); !slices.Equal(ids, []string{env.ID, cloudID}) {
		t.Errorf("env list: %v, want [%s %s]", ids, env.ID, cloudID)
	}
	var envPage client.Page[client.Environment]
	cli.json(&envPage, "env", "list", "--limit", "1", "--json")
	if len(envPage.Data) != 1 || !envPage.HasMore || envPage.NextPage != env.ID {
		t.Errorf("env list --limit 1 --json: %+v", envPage)
	}
	if _, errs, _ := cli.run("env", "list", "--limit", "1"); !strings.Contains(errs, "--page "+env.ID) {
		t.Errorf("env list --limit 1 gives no hint of the next page: %q", errs)
	}
	var envs []client.Environment
	cli.json(&envs, "env", "list", "--limit", "1", "--all", "--json")
	if len(envs) != 2 || envs[0].ID != env.ID || envs[1].ID != cloudID {
		t.Errorf("env list --all --json: %+v", envs)
	}
	cli.json(&envPage, "env", "list", "--after-id", env.ID, "--json")
	if len(envPage.Data) != 1 || envPage.Data[0].ID != cloudID {
		t.Errorf("env list --after-id: %+v", envPage)
	}
	cli.json(&envPage, "env", "list", "--before-id", cloudID, "--json")
	if len(envPage.Data) != 1 || envPage.Data[0].ID != env.ID {
		t.Errorf("env list --before-id: %+v", envPage)
	}
	wantContains(t, cli.ok("env", "get", env.ID), env.ID, "cli-env", "team=a,tier=gold")
	// A bare server address gets the API's base path.
	wantContains(t, cli.ok("env", "get", env.ID, "--url", "http://"+p.addr), env.ID)
	var got client.Environment
	cli.json(&got, "env", "update", env.ID, "--name", "cli-env-2", "--metadata", "team=", "--unset", "tier", "--metadata", "owner=ops", "--json")
	if got.Name != "cli-env-2" || got.Description != "d" || len(got.Metadata) != 1 || got.Metadata["owner"] != "ops" {
		t.Errorf("env update: %+v", got)
	}
	// The --json output is the API's answer, byte for byte: the same object as get.
	if a, b := strings.TrimSpace(cli.ok("env", "get", env.ID, "--json")), p.rawGet(t, admin, "/api/v1/cloud/environments/"+env.ID); a != b {
		t.Errorf("env get --json:\n%s\nthe API answered:\n%s", a, b)
	}

	// Completion: the script, and environment IDs from the server.
	wantContains(t, cli.ok("completion", "bash"), "__start_berth")
	wantContains(t, cli.ok("__complete", "env", "get", "env_"), env.ID, cloudID)

	// --- sessions ---
	var s1 client.Session
	cli.json(&s1, "session", "create", "-e", env.ID, "--agent", "agent_cli", "--title", "first", "--metadata", "m=1",
		"--message", "hello", "--event", `{"type":"user.interrupt"}`, "--json")
	if !strings.HasPrefix(s1.ID, "sess_") || s1.EnvironmentID != env.ID || s1.Title != "first" || s1.Metadata["m"] != "1" {
		t.Fatalf("session create: %+v", s1)
	}
	out = cli.with("BERTH_ENVIRONMENT_ID="+env.ID).ok("session", "create", "--agent", `{"id":"agent_obj","version":2}`)
	ids = tableIDs(t, out)
	if len(ids) != 1 || !strings.Contains(out, "agent_obj") {
		t.Fatalf("session create table:\n%s", out)
	}
	s2 := ids[0]
	if ids := tableIDs(t, cli.ok("session", "list", "-e", env.ID)); !slices.Equal(ids, []string{s1.ID, s2}) {
		t.Errorf("session list: %v", ids)
	}
	var sessPage client.Page[client.Session]
	cli.json(&sessPage, "session", "list", "--environment", cloudID, "--json")
	if len(sessPage.Data) != 0 {
		t.Errorf("session list of another environment: %+v", sessPage)
	}
	var sess client.Session
	cli.json(&sess, "session", "get", s1.ID, "--json")
	if sess.ID != s1.ID {
		t.Errorf("session get: %+v", sess)
	}
	cli.json(&sess, "session", "update", s1.ID, "--title", "renamed", "--unset", "m", "--metadata", "k=v", "--json")
	if sess.Title != "renamed" || len(sess.Metadata) != 1 || sess.Metadata["k"] != "v" {
		t.Errorf("session update: %+v", sess)
	}
	var evPage client.Page[client.Event]
	cli.json(&evPage, "session", "events", s1.ID, "--json")
	if len(evPage.Data) != 2 || evPage.Data[0].Type != "user.message" || evPage.Data[1].Type != "user.interrupt" {
		t.Errorf("session events (the initial ones, in order): %+v", evPage)
	}
	out = cli.ok("session", "events", s1.ID)
	wantContains(t, out, evPage.Data[0].ID, "hello", "user.interrupt")

	// --- work: a worker's round by hand ---
	var workPage client.Page[client.Work]
	cli.json(&workPage, "work", "list", "-e", env.ID, "--json")
	if len(workPage.Data) != 2 || workPage.Data[0].Data.ID != s1.ID || workPage.Data[1].Data.ID != s2 {
		t.Fatalf("work list: %+v", workPage)
	}
	w1, w2 := workPage.Data[0].ID, workPage.Data[1].ID
	if w := workPage.Data[0]; w.State != client.StateQueued || w.Metadata["m"] != "1" {
		t.Errorf("work item of a new session: %+v", w)
	}
	if ids := tableIDs(t, cli.ok("work", "list", "-e", env.ID, "--state", "queued")); !slices.Equal(ids, []string{w1, w2}) {
		t.Errorf("work list --state queued: %v", ids)
	}
	var stats client.QueueStats
	cli.json(&stats, "work", "stats", "-e", env.ID, "--json")
	if stats.Type != "work_queue_stats" || stats.Depth != 2 || stats.Pending != 0 {
		t.Errorf("work stats: %+v", stats)
	}
	wk := cli.with("BERTH_ENVIRONMENT_ID=" + env.ID)
	var w client.Work
	wk.json(&w, "work", "poll", "--worker-id", "w1", "--block-ms", "50", "--json")
	if w.ID != w1 || w.State != client.StateQueued {
		t.Fatalf("work poll: %+v", w)
	}
	wantAPIError(t, wk.fail(exitConflict, "work", "ack", w1, "--worker-id", "intruder"), 409, "invalid_request_error")
	wantContains(t, wk.ok("work", "ack", w1, "--worker-id", "w1"), w1, "starting")
	var hb client.Heartbeat
	wk.json(&hb, "work", "heartbeat", w1, "--expect", client.NoHeartbeat, "--ttl", "30", "--json")
	if hb.State != client.StateActive || hb.TTLSeconds != 30 || !hb.LeaseExtended || hb.LastHeartbeat == "" {
		t.Fatalf("first heartbeat: %+v", hb)
	}
	var hb2 client.Heartbeat
	wk.json(&hb2, "work", "heartbeat", w1, "--expect", hb.LastHeartbeat, "--json")
	if hb2.State != client.StateActive || hb2.LastHeartbeat == hb.LastHeartbeat || hb2.TTLSeconds != 60 {
		t.Fatalf("second heartbeat, echoing the first: %+v", hb2)
	}
	stale := wk.fail(exitConflict, "work", "heartbeat", w1, "--expect", hb.LastHeartbeat)
	wantAPIError(t, stale, 412, "precondition_failed_error")
	wantContains(t, stale, "current lease: state=active ttl_seconds=60 last_heartbeat="+hb2.LastHeartbeat)
	out = wk.ok("work", "heartbeat", w1) // unconditional
	wantContains(t, out, "LAST_HEARTBEAT", "active")
	wk.json(&w, "work", "update", w1, "--metadata", "progress=50", "--unset", "m", "--json")
	if len(w.Metadata) != 1 || w.Metadata["progress"] != "50" {
		t.Errorf("work update: %+v", w)
	}
	wk.json(&w, "work", "get", w1, "--json")
	if w.ID != w1 || w.State != client.StateActive || w.Metadata["progress"] != "50" || w.StartedAt == nil {
		t.Errorf("work get: %+v", w)
	}
	wantContains(t, wk.ok("work", "get", w1), w1, "active", "progress=50")
	wk.json(&w, "work", "poll", "--worker-id", "w2", "--json")
	if w.ID != w2 {
		t.Fatalf("second poll: %+v", w)
	}
	// Nothing deliverable: null with --json, nothing at all in a table; exit 0 both.
	if out := wk.ok("work", "poll", "--json"); out != "null\n" {
		t.Errorf("poll of an empty queue --json: %q", out)
	}
	if out := wk.ok("work", "poll", "--block-ms", "10"); out != "" {
		t.Errorf("poll of an empty queue: %q", out)
	}
	wantContains(t, wk.ok("work", "poll", "--reclaim-ms", "0", "--worker-id", "w2"), w2) // redelivered
	cli.json(&stats, "work", "stats", "-e", env.ID, "--json")
	if stats.WorkersPolling < 1 || stats.Pending != 1 {
		t.Errorf("work stats after polls: %+v", stats)
	}
	// Stop twice: the operator asks, the worker confirms.
	wk.json(&w, "work", "stop", w1, "--json")
	if w.State != client.StateStopping || w.StopRequestedAt == nil {
		t.Errorf("first stop: %+v", w)
	}
	wantContains(t, wk.ok("work", "stop", w1), w1, "stopped")
	wantAPIError(t, wk.fail(exitConflict, "work", "heartbeat", w1), 409, "invalid_request_error")
	wantAPIError(t, wk.fail(exitConflict, "work", "ack", w1), 409, "invalid_request_error")
	wantAPIError(t, wk.fail(exitNotFound, "work", "get", "work_nope"), 404, "not_found_error")

	// --- sessions: cancel, send, archive, delete ---
	wantContains(t, cli.ok("session", "cancel", s2), s2, "canceling", "stop requested")
	wk.json(&w, "work", "stop", w2, "--force", "--json")
	if w.State != client.StateStopped {
		t.Errorf("work stop --force after cancel: %+v", w)
	}
	var cancel client.SessionCancel
	cli.json(&cancel, "session", "cancel", s1.ID, "--json")
	if cancel.Status != "canceling" {
		t.Errorf("session cancel --json: %+v", cancel)
	}
	wantContains(t, cli.ok("session", "cancel", s1.ID), "none")
	var sent struct{ Data []client.Event }
	cli.json(&sent, "session", "send", s1.ID, "--event", `{"type":"user.interrupt"}`, "--message", "wake up", "--json")
	if len(sent.Data) != 2 || sent.Data[0].Type != "user.interrupt" || sent.Data[1].Type != "user.message" {
		t.Errorf("session send (in flag order): %+v", sent.Data)
	}
	wantContains(t, cli.ok("session", "send", s1.ID, "--message", "and again"), "user.message", "and again")
	// The user.message woke the dormant session: a new item is queued for it.
	cli.json(&workPage, "work", "list", "-e", env.ID, "--state", "queued", "--json")
	if len(workPage.Data) != 1 || workPage.Data[0].Data.ID != s1.ID {
		t.Errorf("queued work after a message to a dormant session: %+v", workPage)
	}
	cli.fail(exitLocal, "session", "send", s1.ID)

	wantAPIError(t, cli.fail(exitConflict, "env", "delete", env.ID), 409, "conflict_error")
	cli.json(&sess, "session", "archive", s1.ID, "--json")
	if sess.ArchivedAt == nil {
		t.Errorf("session archive: %+v", sess)
	}
	var del client.Deleted
	cli.json(&del, "session", "delete", s1.ID, "--json")
	if del.ID != s1.ID || del.Type != "session_deleted" {
		t.Errorf("session delete: %+v", del)
	}
	wantContains(t, cli.ok("session", "delete", s2), s2, "session_deleted")
	wantAPIError(t, cli.fail(exitNotFound, "session", "get", s1.ID), 404, "not_found_error")

	// --- environments: archive, delete ---
	cli.json(&got, "env", "archive", env.ID, "--json")
	if got.ArchivedAt == nil {
		t.Errorf("env archive: %+v", got)
	}
	if strings.Contains(cli.ok("env", "list"), env.ID) || !strings.Contains(cli.ok("env", "list", "--include-archived"), env.ID) {
		t.Errorf("env list shows the archived environment, or --include-archived does not")
	}
	wantAPIError(t, cli.fail(exitAPI, "session", "create", "-e", env.ID, "--agent", "a"), 400, "invalid_request_error")
	cli.json(&del, "env", "delete", env.ID, "--json")
	if del.ID != env.ID || del.Type != "environment_deleted" {
		t.Errorf("env delete: %+v", del)
	}
	wantContains(t, cli.ok("env", "delete", cloudID), cloudID, "environment_deleted")
	wantAPIError(t, cli.fail(exitNotFound, "env", "get", env.ID), 404, "not_found_error")

	// --- tokens over the API (--url; BERTH_URL) ---
	noURL := &cliRunner{t: t, env: []string{"BERTH_TOKEN=" + admin}}
	var tok client.Token
	noURL.json(&tok, "token", "create", "--url", base, "--name", "cli-member", "--role", "member", "--json")
	if !strings.HasPrefix(tok.ID, "tok_") || !strings.HasPrefix(tok.Secret, "pt-") || tok.Role != "member" {
		t.Fatalf("token create --url --json: %+v", tok)
	}
	out, errs, code := noURL.run("token", "create", "--url", "http://"+p.addr, "--name", "cli-member-2", "--role", "member")
	if code != 0 || !regexp.MustCompile(`^pt-[0-9A-Za-z]{40,}\n$`).MatchString(out) || !strings.HasPrefix(errs, "created tok_") {
		t.Errorf("token create --url: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	wantContains(t, noURL.ok("token", "list", "--url", base), tok.ID, "cli-member", "cli-member-2")
	var toks []client.Token
	cli.json(&toks, "token", "list", "--all", "--limit", "1", "--json") // BERTH_URL
	if len(toks) != 3 || toks[1].ID != tok.ID || toks[1].Secret != "" {
		t.Errorf("token list --all --json over the API: %+v", toks)
	}
	// An explicit --data-dir works on the database even with BERTH_URL set.
	var offline client.Page[client.Token]
	cli.json(&offline, "token", "list", "--data-dir", dir, "--json")
	if len(offline.Data) != 3 || offline.Data[1].ID != tok.ID {
		t.Errorf("token list --data-dir with BERTH_URL set: %+v", offline)
	}
	cli.fail(exitLocal, "token", "list", "--data-dir", dir, "--url", base)
	member := cli.with("BERTH_TOKEN=" + tok.Secret)
	member.ok("env", "list")
	wantAPIError(t, member.fail(exitAuth, "token", "list"), 403, "permission_error")
	wantContains(t, noURL.ok("token", "revoke", tok.ID, "--url", base), "revoked "+tok.ID)
	wantAPIError(t, member.fail(exitAuth, "env", "list"), 401, "authentication_error")
	wantAPIError(t, cli.fail(exitNotFound, "token", "revoke", "tok_nope"), 404, "not_found_error")

	// --- webhooks (more in cli_webhook_test.go) ---
	var whEnv client.Environment
	cli.json(&whEnv, "env", "create", "--name", "hooks", "--json")
	var wh client.Webhook
	cli.json(&wh, "webhook", "create", whEnv.ID, "--url", "http://"+closedAddr(t)+"/hook", "--json")
	if !strings.HasPrefix(wh.Secret, "whsec_") {
		t.Errorf("webhook create --json: %+v", wh)
	}
	if ids := tableIDs(t, cli.ok("webhook", "list", whEnv.ID)); !slices.Equal(ids, []string{wh.ID}) {
		t.Errorf("webhook list: %v", ids)
	}
	cli.ok("webhook", "deliveries", whEnv.ID, wh.ID)
	wantContains(t, cli.ok("webhook", "delete", whEnv.ID, wh.ID), "webhook_deleted")

	// --- exit codes of failures that are not the server's answer to a good request ---
	wantAPIError(t, cli.fail(exitAuth, "env", "list", "--token", "pt-bad"), 401, "authentication_error")
	wantAPIError(t, cli.fail(exitAPI, "env", "list", "--limit", "-1"), 400, "invalid_request_error")
	cli.fail(exitLocal, "env", "list", "--bogus")
	cli.fail(exitLocal, "env", "get")
	cli.fail(exitLocal, "session", "create", "--agent", "a") // no environment
	cli.fail(exitLocal, "env", "create", "--name", "x", "--metadata", "novalue")
	cli.fail(exitServer, "env", "list", "--url", "http://"+closedAddr(t))

	// A URL where the server has no API (it answers 404 "No such route." to every path) is
	// the URL's fault, not the token's nor a missing object's: exit 1, naming the URL.
	for _, args := range [][]string{
		{"env", "list"},
		{"session", "get", s1.ID},
		{"work", "poll", "-e", env.ID},
		{"token", "list"},
	} {
		errs := cli.fail(exitLocal, append(args, "--url", "http://"+p.addr+"/api/v1")...)
		wantContains(t, errs, "berth: no berth API at http://"+p.addr+"/api/v1/ (the server answered 404 \"No such route.\"): check --url or BERTH_URL")
	}
	// A URL without its scheme is refused before anything is sent, with the fix.
	wantContains(t, cli.fail(exitLocal, "env", "list", "--url", p.addr),
		"berth: --url (or BERTH_URL): URL \""+p.addr+"\" has no scheme: write http://"+p.addr)

	// Every route of the API was answered with a 2xx, through the CLI alone.
	checkRoutesCovered(t, p)
}

// rawGet is the body of a GET, as the server sent it.
func (p *proc) rawGet(t *testing.T, token, path string) string {
	t.Helper()
	code, body := request(t, "GET", p.url(path), token, "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return strings.TrimSpace(string(body))
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var accessLogRE = regexp.MustCompile(`msg=request .*?method=(\S+) path=(\S+) status=(\d+)`)

// checkRoutesCovered reads the server's access log and fails for every API route that
// no request answered with a 2xx. The service endpoints (/healthz, /readyz, /metrics,
// /openapi.json) are left out; the test's own requests (rawGet) are GETs of an
// environment, which the CLI reaches anyway.
func checkRoutesCovered(t *testing.T, p *proc) {
	t.Helper()
	type route struct{ method, pattern string }
	var routes []route
	for _, rt := range api.New(api.Config{}).Routes() {
		if rt.Access != api.Public {
			routes = append(routes, route{rt.Method, rt.Pattern})
		}
	}
	// The server's table and the OpenAPI document agree, so both are covered.
	var doc []route
	for _, rt := range openapi.Routes() {
		if strings.HasPrefix(rt.Path, api.BasePath) {
			doc = append(doc, route{rt.Method, rt.Path})
		}
	}
	if len(doc) != len(routes) {
		t.Errorf("the server has %d API routes, the OpenAPI document %d", len(routes), len(doc))
	}
	// The most specific pattern wins, as in net/http: fewer wildcards first.
	wild := regexp.MustCompile(`\{[^}]+\}`)
	slices.SortStableFunc(routes, func(a, b route) int {
		return len(wild.FindAllString(a.pattern, -1)) - len(wild.FindAllString(b.pattern, -1))
	})
	res := make([]*regexp.Regexp, len(routes))
	for i, rt := range routes {
		res[i] = regexp.MustCompile("^" + wild.ReplaceAllString(rt.pattern, `[^/]+`) + "$")
	}
	var missing []string
	deadline := time.Now().Add(testserver.HangGuard)
	for {
		hit := map[route]bool{}
		for _, m := range accessLogRE.FindAllStringSubmatch(p.log(), -1) {
			if m[3][0] != '2' {
				continue
			}
			for i, rt := range routes {
				if rt.method == m[1] && res[i].MatchString(m[2]) {
					hit[rt] = true
					break
				}
			}
		}
		missing = missing[:0]
		for _, rt := range routes {
			if !hit[rt] {
				missing = append(missing, rt.method+" "+rt.pattern)
			}
		}
		// The access log line is written as the answer goes out: wait for the last ones.
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("API routes the CLI never reached with a 2xx answer:\n  %s", strings.Join(missing, "\n  "))
	}
}

// TestCLICommandsHaveExamples checks that every command of the CLI has an Example for
// its --help, and that the exit codes are in berth --help.
func TestCLICommandsHaveExamples(t *testing.T) {
	t.Parallel()
	root := rootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	for _, name := range []string{"env", "session", "work", "webhook", "token", "exit-codes"} {
		c, _, err := root.Find([]string{name})
		if err != nil || c.Name() != name {
			t.Fatalf("no command %q: %v", name, err)
		}
		walk(c)
	}
	var help bytes.Buffer
	root.SetOut(&help)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	wantContains(t, help.String(), "berth exit-codes", "3 not found", "6 server/network")
}

func TestCLIExitCode(t *testing.T) {
	t.Parallel()
	apiErr := func(status int) error { return &client.Error{StatusCode: status} }
	for _, tc := range []struct {
		err  error
		sent bool
		want int
	}{
		{apiErr(400), true, exitAPI},
		{apiErr(405), true, exitAPI},
		{apiErr(429), true, exitAPI},
		{apiErr(404), true, exitNotFound},
		{fmt.Errorf("wrapped: %w", apiErr(404)), true, exitNotFound},
		{apiErr(409), true, exitConflict},
		{apiErr(412), true, exitConflict},
		{apiErr(401), true, exitAuth},
		{apiErr(403), true, exitAuth},
		{apiErr(500), true, exitServer},
		{apiErr(503), true, exitServer},
		{errors.New("decode response: unexpected end of JSON input"), true, exitServer},
		{errors.New("--name is required"), false, exitLocal},
		{localError{errors.New("write /dev/stdout: broken pipe")}, true, exitLocal},
	} {
		if got := exitCode(tc.err, tc.sent); got != tc.want {
			t.Errorf("exitCode(%v, sent=%v) = %d, want %d", tc.err, tc.sent, got, tc.want)
		}
	}
	e := &client.Error{StatusCode: 412, Type: "precondition_failed_error", Message: "mismatch", RequestID: "r1",
		CurrentState: &client.HeartbeatState{State: client.StateActive, TTLSeconds: 60}}
	want := "berth: mismatch (HTTP 412 precondition_failed_error, request_id=r1)\nberth: current lease: state=active ttl_seconds=60 last_heartbeat=-"
	if got := errorText(e, false); got != want {
		t.Errorf("errorText:\n%s\nwant\n%s", got, want)
	}
	if got := errorText(&client.Error{StatusCode: 502, Message: "Bad Gateway"}, false); got != "berth: Bad Gateway (HTTP 502)" {
		t.Errorf("errorText of a non-envelope answer: %q", got)
	}
}

func TestCLIFlagParsing(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":                 "http://127.0.0.1:8080/api/v1/cloud",
		"http://127.0.0.1:8080/":                "http://127.0.0.1:8080/api/v1/cloud",
		"https://b.example.com/api/v1/cloud":    "https://b.example.com/api/v1/cloud",
		"https://b.example.com/prefix/v1/cloud": "https://b.example.com/prefix/v1/cloud",
	} {
		if got, err := apiBaseURL(in); got != want || err != nil {
			t.Errorf("apiBaseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := apiBaseURL("127.0.0.1:8080"); err == nil || !strings.Contains(err.Error(), "--url (or BERTH_URL): ") ||
		!strings.Contains(err.Error(), "http://127.0.0.1:8080") {
		t.Errorf("apiBaseURL of an address without a scheme: %v", err)
	}

	md := metadataFlags{set: []string{"a=1", "b=", "c=x=y"}, unset: []string{"d"}}
	patch, err := md.patch()
	if err != nil || len(patch) != 4 || *patch["a"] != "1" || patch["b"] != nil || *patch["c"] != "x=y" || patch["d"] != nil {
		t.Errorf("patch: %v %v", patch, err)
	}
	created, err := (&metadataFlags{set: []string{"a=1", "b="}}).create()
	if err != nil || len(created) != 2 || created["b"] != "" {
		t.Errorf("create: %v %v", created, err)
	}
	for _, bad := range []string{"novalue", "=v"} {
		if _, err := (&metadataFlags{set: []string{bad}}).create(); err == nil {
			t.Errorf("--metadata %q accepted", bad)
		}
	}

	var events []any
	cmd := &cobra.Command{Use: "x", Run: func(*cobra.Command, []string) {}}
	addEventFlags(cmd, &events, "")
	if err := cmd.ParseFlags([]string{"--message", "one", "--event", `{"type":"user.interrupt"}`, "--message", "two"}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(events)
	want := `[{"content":[{"text":"one","type":"text"}],"type":"user.message"},{"type":"user.interrupt"},{"content":[{"text":"two","type":"text"}],"type":"user.message"}]`
	if string(b) != want {
		t.Errorf("events:\n%s\nwant\n%s", b, want)
	}
	for _, bad := range []string{`[]`, `{"no":"type"}`, `not json`} {
		if err := cmd.ParseFlags([]string{"--event", bad}); err == nil {
			t.Errorf("--event %s accepted", bad)
		}
	}
}
