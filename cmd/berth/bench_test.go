package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
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

// berth bench fleet --baseline runs the fleet against the do-nothing server, started as
// a child process of the same binary (berth bench baseline-server) and measured as
// berth serve is, and says that it was the baseline.
func TestBenchFleetBaseline(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	const workers = 20
	out := cli.ok("bench", "fleet", "--baseline", "--workers", strconv.Itoa(workers), "--duration", "500ms", "--json")
	var r bench.FleetResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	if !r.Baseline || !strings.Contains(r.Target, "baseline") {
		t.Fatalf("not reported as the baseline: baseline %v, target %q", r.Baseline, r.Target)
	}
	if r.Errors != 0 || r.Delivered != 0 || r.Connections != workers || r.WorkersPolling != workers || r.WarmupPolls < workers {
		t.Fatalf("fleet against the baseline: %d errors (%q), %d delivered, %d connections, server counts %d workers, %d warm-up polls; want 0, 0, %d, %d, ≥ %d",
			r.Errors, r.ErrorSamples, r.Delivered, r.Connections, r.WorkersPolling, r.WarmupPolls, workers, workers, workers)
	}
	s := r.Server
	if s == nil || s.PID <= 0 || s.PID == os.Getpid() || s.PeakRSSBytes <= 0 {
		t.Fatalf("baseline server process figures: %+v", s)
	}
	if rt := r.ServerRuntime; rt == nil || rt.Goroutines < workers || rt.StackInuseBytes <= 0 {
		t.Fatalf("baseline runtime figures: %+v", rt)
	}
	if err := syscall.Kill(s.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("baseline process %d still there after the bench: kill 0 = %v", s.PID, err)
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
	for _, extra := range [][]string{{"--in-process"}, {"--database-url", "postgres://127.0.0.1:1/x"}, {"--url", "http://127.0.0.1:1", "--token", "x"}} {
		errs = cli.fail(exitLocal, append([]string{"bench", "fleet", "--baseline"}, extra...)...)
		wantContains(t, errs, "--baseline starts its own do-nothing server")
	}
}

// berth bench stream, briefly, against the berth serve it starts: every stream opens,
// every event posted reaches every stream of its session once and in order (checked
// against the history), and the report's figures add up.
func TestBenchStream(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	const sessions, per = 3, 4
	out := cli.ok("bench", "stream", "--sessions", "3", "--streams", "4", "--writers", "2", "--rate", "40", "--duration", "500ms", "--json")
	var r bench.StreamResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	if r.Sessions != sessions || r.StreamsPerSession != per || r.Streams != sessions*per || r.Replicas != 1 {
		t.Fatalf("shape: %d sessions × %d = %d streams, %d replicas", r.Sessions, r.StreamsPerSession, r.Streams, r.Replicas)
	}
	if r.OpenStreams != r.Streams {
		t.Errorf("the server counted %d streams open, want %d", r.OpenStreams, r.Streams)
	}
	if !r.Clean() || r.Missed != 0 || r.Duplicated != 0 || r.WriteErrors != 0 || r.StreamErrors != 0 || len(r.ErrorSamples) != 0 {
		t.Fatalf("missed %d, duplicated %d, out of order %d, unknown %d, not in history %d, write errors %d, stream errors %d: %q",
			r.Missed, r.Duplicated, r.OutOfOrder, r.Unknown, r.NotInHistory, r.WriteErrors, r.StreamErrors, r.ErrorSamples)
	}
	// Round robin over the sessions, every event reaches every stream of its session
	// (none is cut here, but a resumed stream would receive each event once as well).
	if r.Events == 0 || r.Frames != r.Events*per {
		t.Fatalf("%d events posted, %d frames received; want %d frames", r.Events, r.Frames, r.Events*per)
	}
	if r.Latency.Count != int(r.Frames) || r.AfterAnswer.Count != int(r.Frames) || r.Post.Count != int(r.Events) {
		t.Errorf("latencies: %d send → frame, %d answer → frame, %d posts for %d frames of %d events", r.Latency.Count, r.AfterAnswer.Count, r.Post.Count, r.Frames, r.Events)
	}
	if r.Latency.P50 <= 0 || r.Latency.P99 < r.Latency.P50 || r.Latency.Max < r.Latency.P99 {
		t.Errorf("send → frame latency out of order: %+v", r.Latency)
	}
	if s := r.Server; s == nil || s.PID <= 0 || s.PeakRSSBytes <= 0 || s.Seconds <= 0 || !strings.Contains(r.Target, "berth serve process") {
		t.Fatalf("server figures: target %q, %+v", r.Target, s)
	}
}

// --replicas 2 is two berth serve processes on one PostgreSQL database, and --writer-url a
// second external server: without the rest, they are refused before anything starts.
func TestBenchStreamRefusesBadFlags(t *testing.T) {
	t.Parallel()
	cli := &cliRunner{t: t}
	wantContains(t, cli.fail(exitLocal, "bench", "stream", "--replicas", "2"), "--replicas 2", "--database-url")
	wantContains(t, cli.fail(exitLocal, "bench", "stream", "--replicas", "3"), "--replicas is 1 or 2")
	wantContains(t, cli.fail(exitLocal, "bench", "stream", "--writer-url", "http://127.0.0.1:1"), "--writer-url goes with --url")
	wantContains(t, cli.fail(exitLocal, "bench", "stream", "--rate", "-1"), "must not be negative")
}
