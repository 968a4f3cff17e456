package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/store/sqlite"
)

// No command's --help prints a secret taken from the environment: with BERTH_TOKEN and
// BERTH_DATABASE_URL (a password in it) set, every command's help says that the variable
// is used, never its value.
func TestHelpNeverShowsSecrets(t *testing.T) {
	const token = "pt-HelpMustNeverShowThisSecretToken0123456789ab"
	const password = "help-must-never-show-this-password"
	t.Setenv("BERTH_TOKEN", token)
	t.Setenv("BERTH_DATABASE_URL", "postgres://berth:"+password+"@db.example.com/berth")
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			walk(sub, append(path[:len(path):len(path)], sub.Name()))
		}
	}
	walk(rootCmd(), nil)
	withToken := 0
	for _, path := range paths {
		root := rootCmd() // reads the environment as a real run does
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(path, "--help"))
		if err := root.Execute(); err != nil {
			t.Errorf("berth %s --help: %v", strings.Join(path, " "), err)
		}
		help := out.String()
		if strings.Contains(help, token) || strings.Contains(help, password) {
			t.Errorf("berth %s --help shows a secret:\n%s", strings.Join(path, " "), help)
		}
		if strings.Contains(help, "--token string") {
			withToken++
			wantContains(t, help, "$BERTH_TOKEN, set, value not shown")
		}
	}
	if withToken < 10 {
		t.Errorf("only %d commands have --token in their help: the walk missed commands", withToken)
	}

	// The same through a real process, for the worker and an API command.
	cli := (&cliRunner{t: t}).with("BERTH_TOKEN="+token, "BERTH_DATABASE_URL=postgres://u:"+password+"@h/db")
	for _, args := range [][]string{{"worker", "--help"}, {"env", "get", "--help"}, {"token", "list", "--help"}, {"serve", "--help"}} {
		out := cli.ok(args...)
		if strings.Contains(out, token) || strings.Contains(out, password) {
			t.Errorf("berth %s shows a secret:\n%s", strings.Join(args, " "), out)
		}
	}
}

// A mistyped subcommand is a usage error (exit 1) that names it and suggests the nearest
// ones, in every command group and at the root; a group alone prints its help.
func TestUnknownSubcommandIsAnError(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	for _, tc := range []struct {
		args                    []string
		group, word, suggestion string
	}{
		{[]string{"env", "gte", "x"}, "berth env", "gte", "get"},
		{[]string{"session", "craete"}, "berth session", "craete", "create"},
		{[]string{"work", "pol"}, "berth work", "pol", "poll"},
		{[]string{"token", "lsit"}, "berth token", "lsit", "list"},
		{[]string{"bench", "lifecyle"}, "berth bench", "lifecyle", "lifecycle"},
		{[]string{"completion", "bsh"}, "berth completion", "bsh", "bash"},
		{[]string{"serv"}, "berth", "serv", "serve"},
		{[]string{"nonsense"}, "berth", "nonsense", ""},
	} {
		errs := cli.fail(exitLocal, tc.args...)
		wantContains(t, errs, `unknown command "`+tc.word+`" for "`+tc.group+`"`)
		if tc.suggestion != "" {
			wantContains(t, errs, "Did you mean this?\n", "\t"+tc.suggestion+"\n")
		}
	}
	for _, group := range []string{"env", "session", "work", "token", "bench"} {
		wantContains(t, cli.ok(group), "Available Commands:")
	}
}

// berth token works on an existing database only: in a directory without one it fails,
// naming the file it looked for and the ways to the right one, and creates nothing.
func TestTokenRefusesToCreateADatabase(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "not-the-data-dir")
	cli := &cliRunner{t: t}
	want := "berth: no database at " + filepath.Join(dir, sqlite.FileName) + ": berth token works on an existing database"
	for _, args := range [][]string{
		{"token", "list", "--data-dir", dir},
		{"token", "create", "--name", "ci", "--data-dir", dir},
		{"token", "revoke", "tok_019f3be4fd2475d9a784bf2c739e1194", "--data-dir", dir},
	} {
		errs := cli.fail(exitLocal, args...)
		wantContains(t, errs, want, "--data-dir", "--url")
	}
	// The default data directory, ./berth-data, relative to where berth runs.
	cwd := t.TempDir()
	out, errs, code := cli.in(cwd).run("token", "list")
	if code != exitLocal || out != "" || !strings.Contains(errs, "no database at "+filepath.Join(cwd, "berth-data", sqlite.FileName)) {
		t.Errorf("token list in a directory without berth-data: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, d := range []string{dir, filepath.Join(cwd, "berth-data")} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s exists after the failed token commands: %v", d, err)
		}
	}
}

// Offline, token list --json prints what GET /tokens answers, byte for byte (never a
// hash), and create and revoke --json print the API's token objects.
func TestOfflineTokenJSONIsTheAPIs(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, dir)
	admin := readAdminToken(t, dir)
	cli := (&cliRunner{t: t}).with("BERTH_DATA_DIR=" + dir)

	var created map[string]any
	cli.json(&created, "token", "create", "--name", "offline", "--role", "member", "--json")
	online := map[string]any{}
	code, body := request(t, "POST", p.url("/api/v1/cloud/tokens"), admin, `{"name":"online","role":"member"}`)
	if code != 201 || json.Unmarshal(body, &online) != nil {
		t.Fatalf("POST /tokens: %d %s", code, body)
	}
	if keys(created) != keys(online) || !strings.HasPrefix(created["secret"].(string), "pt-") || created["type"] != "token" {
		t.Errorf("token create --json offline:\n%v\nPOST /tokens:\n%v", created, online)
	}
	var revoked map[string]any
	cli.json(&revoked, "token", "revoke", online["id"].(string), "--json")
	delete(online, "secret")
	if keys(revoked) != keys(online) || revoked["revoked_at"] == nil || revoked["id"] != online["id"] {
		t.Errorf("token revoke --json offline: %v", revoked)
	}

	// GET /tokens before and after the offline list: the admin token's last_used_at may
	// move (at most once a minute) between two reads; when the two GETs agree, nothing
	// moved, and the offline list must be the same bytes.
	for {
		before := p.rawGet(t, admin, "/api/v1/cloud/tokens?limit=100")
		listed := strings.TrimSpace(cli.ok("token", "list", "--json"))
		after := p.rawGet(t, admin, "/api/v1/cloud/tokens?limit=100")
		if before != after {
			continue
		}
		if listed != before {
			t.Errorf("token list --json offline:\n%s\nGET /tokens:\n%s", listed, before)
		}
		break
	}
	var all []map[string]any
	cli.json(&all, "token", "list", "--all", "--json")
	if len(all) != 3 || keys(all[0]) != keys(online) {
		t.Errorf("token list --all --json offline: %v", all)
	}
	table := cli.ok("token", "list")
	wantContains(t, table, "ID", "ROLE", created["id"].(string), "offline", "member")
}

// keys returns the object's keys, sorted, as one string.
func keys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}

// serve and worker take --log-level (BERTH_LOG_LEVEL); a bad value is a usage error.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := newLogger(&buf, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("quiet")
	log.Warn("loud")
	if out := buf.String(); strings.Contains(out, "quiet") || !strings.Contains(out, "loud") {
		t.Errorf("--log-level warn logged:\n%s", out)
	}
	buf.Reset()
	log, _ = newLogger(&buf, "json", "debug")
	log.Debug("detail")
	wantContains(t, buf.String(), `"level":"DEBUG"`, `"msg":"detail"`)

	cli := &cliRunner{t: t}
	data := filepath.Join(t.TempDir(), "data")
	wantContains(t, cli.fail(exitLocal, "serve", "--log-level", "loud", "--data-dir", data),
		`--log-level (or BERTH_LOG_LEVEL) must be debug, info, warn or error, not "loud"`)
	wantContains(t, cli.with("BERTH_LOG_LEVEL=verbose").fail(exitLocal, "worker", "--token", "pt-x", "--environment", "env_x", "--exec", "true"),
		`not "verbose"`)
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("serve with a bad --log-level made its data directory: %v", err)
	}
}

// berth serve logs where its dashboard is, with its address; not when the dashboard is off.
func TestServeLogsTheDashboardURL(t *testing.T) {
	t.Parallel()
	p := startServe(t, filepath.Join(t.TempDir(), "data"))
	wantContains(t, p.log(), " dashboard=http://"+p.addr+"/\n")
	p2, addrc := launchServe(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--no-dashboard")
	awaitServe(t, p2, addrc)
	if strings.Contains(p2.log(), "dashboard=") {
		t.Errorf("--no-dashboard, yet the log names a dashboard:\n%s", p2.log())
	}
	for addr, want := range map[string]string{
		"0.0.0.0:8080":   "http://127.0.0.1:8080/",
		"[::]:9000":      "http://127.0.0.1:9000/",
		"127.0.0.1:8080": "http://127.0.0.1:8080/",
		"[::1]:8080":     "http://[::1]:8080/",
		"10.1.2.3:80":    "http://10.1.2.3:80/",
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := dashboardURL(tcp); got != want {
			t.Errorf("dashboardURL(%s) = %s, want %s", addr, got, want)
		}
	}
}
