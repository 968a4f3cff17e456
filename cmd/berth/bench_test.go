package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-sh/berth/internal/bench"
)

// berth bench starts the server as a `berth serve` child process of its own binary by
// default, measures that process's CPU time and memory over the run, and stops it
// cleanly (a server that does not exit 0 fails the bench). On a database whose
// admin-token file is gone it makes a token of its own with berth token create, and
// revokes it at the end.
func TestBenchSpawnsServer(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	dir := filepath.Join(t.TempDir(), "data")
	run := func() *bench.LifecycleResult {
		t.Helper()
		out := cli.ok("bench", "lifecycle", "--items", "200", "--workers", "4", "--duration", "100ms", "--data-dir", dir, "--json")
		var r bench.LifecycleResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bench output: %v\n%s", err, out)
		}
		if r.Items < 200 || r.Errors != 0 {
			t.Fatalf("lifecycle against the spawned server: %d items, %d errors", r.Items, r.Errors)
		}
		s := r.Server
		if s == nil || !strings.Contains(r.Target, "berth serve process") {
			t.Fatalf("no server process reported: target %q, server %+v", r.Target, s)
		}
		if s.PID <= 0 || s.PID == os.Getpid() || s.CPUSeconds <= 0 || s.CPUCores <= 0 || s.Seconds <= 0 || s.PeakRSSBytes <= 0 || s.RSSBytes <= 0 {
			t.Fatalf("server figures: %+v", s)
		}
		if r.LoadGenerator == nil || r.LoadGenerator.PID == s.PID {
			t.Fatalf("load generator figures: %+v", r.LoadGenerator)
		}
		// The bench has waited for its child to exit: the process is gone.
		if err := syscall.Kill(s.PID, 0); !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("server process %d still there after the bench: kill 0 = %v", s.PID, err)
		}
		return &r
	}
	run()
	// The server wrote the admin token the bench used into the data directory.
	if _, err := os.Stat(filepath.Join(dir, AdminTokenFile)); err != nil {
		t.Fatal(err)
	}
	// Without it, on a database that has tokens, the bench creates one, and revokes it
	// at the end.
	if err := os.Remove(filepath.Join(dir, AdminTokenFile)); err != nil {
		t.Fatal(err)
	}
	run()
	var toks struct {
		Data []struct {
			Name      string  `json:"name"`
			RevokedAt *string `json:"revoked_at"`
		} `json:"data"`
	}
	out := cli.ok("token", "list", "--data-dir", dir, "--json")
	if err := json.Unmarshal([]byte(out), &toks); err != nil {
		t.Fatalf("token list: %v\n%s", err, out)
	}
	var bench, revoked int
	for _, tok := range toks.Data {
		if tok.Name == "bench" {
			bench++
			if tok.RevokedAt != nil {
				revoked++
			}
		}
	}
	if bench != 1 || revoked != 1 {
		t.Fatalf("after the bench: %d tokens named bench, %d of them revoked; want 1 and 1\n%s", bench, revoked, out)
	}
}

// Flags that contradict each other or are malformed are refused before anything starts.
func TestBenchRefusesBadFlags(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	errs := cli.fail(exitLocal, "bench", "pickup", "--in-process", "--url", "http://127.0.0.1:1", "--token", "x")
	wantContains(t, errs, "--in-process", "--url")
	errs = cli.fail(exitLocal, "bench", "fleet", "--server-env", "GOGC")
	wantContains(t, errs, "--server-env takes NAME=VALUE", `"GOGC"`)
	errs = cli.fail(exitLocal, "bench", "fleet", "--in-process", "--server-env", "GOGC=50")
	wantContains(t, errs, "--server-env is for the server the bench starts in its own process")
	errs = cli.fail(exitLocal, "bench", "fleet", "--workers", "-3")
	wantContains(t, errs, "must not be negative")
}
