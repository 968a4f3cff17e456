package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/bench"
)

func benchCmd() *cobra.Command {
	var o bench.Options
	var asJSON, inProcess bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure berth: lifecycle, ceiling, pickup, scale, fleet, stream",
		Long: `Measure berth against a server the bench starts: by default a 'berth serve' child
process of this same binary, on a temporary SQLite database (--database-url for
PostgreSQL), stopped with SIGTERM at the end; its CPU time and peak memory over the
measured window are reported. --in-process runs the server inside the bench's own
process instead, and --url with --token measures an external server. scale always
runs in-process: it fills the store directly.

  lifecycle  W workers each: create session → poll → ack → heartbeat → stop → stop;
             items/s, requests/s, p50/p99/max per call, and the ratio to the
             loopback ceiling measured right after (items/s × 6 ÷ ceiling req/s).
             The ceiling pass takes --duration too: a lifecycle run takes about
             twice --duration (or --items, then --duration)
  ceiling    the same client load against a no-op handler: this machine's limit now
  pickup     P parked long-pollers; sessions created one at a time; enqueue → poll
             response latency
  scale      fill the store with N items (mixed states); p50 of poll, ack, heartbeat
             and list at N against the same at 1,000 items
  fleet      N idle workers (default 10,000), each on its own connection, polling an
             empty queue as the SDK workers do (block_ms=999, then a pause of 1–3 s);
             polls/s, errors, latency beyond the block, the server's CPU and RSS
  stream     S sessions × M event streams each (default 100 × 10) while writers post
             events at a rate; commit → frame latency p50/p99/max, events/s, slow
             readers cut, missed or duplicated events, the server's CPU and RSS

CPU is reported in cores: CPU seconds (user + system, /proc/<pid>/stat) ÷ wall seconds
over the measured window; peak RSS is the process's VmHWM. The load generator's own
figures (this process) are reported too, so that a reader can tell whether it was the
bottleneck.`,
		Example: `  berth bench lifecycle --workers 8 --duration 10s
  berth bench pickup --pollers 1000
  berth bench fleet --workers 10000 --duration 60s
  berth bench fleet --database-url postgres://…
  berth bench stream --sessions 100 --streams 10 --rate 200 --duration 30s
  berth bench stream --database-url postgres://… --replicas 2
  berth bench scale --scale-items 1000000 --json
  berth bench lifecycle --url http://127.0.0.1:8080/api/v1/cloud --token "$(cat berth-data/admin-token)"`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.URL, "url", "", "external server: http://host:port or its API base URL (default: start one)")
	f.StringVar(&o.Token, "token", "", secretUsage("token for --url", "BERTH_TOKEN"))
	f.BoolVar(&inProcess, "in-process", false, "run the server in the bench's own process instead of a 'berth serve' child process")
	f.StringVar(&o.DatabaseURL, "database-url", "", "the server started uses this PostgreSQL database")
	f.StringVar(&o.DataDir, "data-dir", "", "SQLite directory of the server started (default: a temporary one)")
	f.IntVar(&o.Workers, "workers", 0, "lifecycle/ceiling: concurrent workers (default 8); fleet: idle workers (default 10000)")
	f.DurationVar(&o.Duration, "duration", 0, "lifecycle/ceiling: how long each pass runs (default 10s; lifecycle runs two: itself, then the ceiling); fleet: the measured window after the warm-up (default 60s); stream: how long the writers post (default 30s)")
	f.IntVar(&o.Items, "items", 0, "lifecycle: stop after this many items instead of --duration")
	f.IntVar(&o.Pollers, "pollers", 100, "pickup: parked long-pollers")
	f.IntVar(&o.Samples, "samples", 200, "pickup: sessions measured; scale: rounds per size")
	f.IntVar(&o.ScaleItems, "scale-items", 1_000_000, "scale: items stored")
	f.IntVar(&o.Sessions, "sessions", 0, "stream: sessions (default 100)")
	f.IntVar(&o.StreamsPerSession, "streams", 0, "stream: event streams open on each session (default 10)")
	f.IntVar(&o.Writers, "writers", 0, "stream: concurrent writers posting events (default 16)")
	f.Float64Var(&o.Rate, "rate", 0, "stream: events/s posted over all sessions (default 200)")
	f.IntVar(&o.Replicas, "replicas", 1, "stream: 2 starts a second server on --database-url; the streams read from one, the writers post to the other")
	f.StringVar(&o.WriterURL, "writer-url", "", "stream: with --url, a second external server (same database) for the writers")
	f.StringArrayVar(&o.ServerEnv, "server-env", nil, "NAME=VALUE added to the environment of the server child process (GOGC, GOMEMLIMIT, GOMAXPROCS…); repeatable")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file: of the server child process (written when it stops), or of the whole run when in-process")

	run := func(name string, fn func(context.Context, bench.Options) (any, error)) *cobra.Command {
		return &cobra.Command{
			Use:  name,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o := o
				o.Token = secretFromEnv(cmd, "token", "BERTH_TOKEN", o.Token)
				if o.URL != "" {
					if inProcess {
						return fmt.Errorf("--in-process starts a server; --url measures an external one: give one of them")
					}
					base, err := apiBaseURL(o.URL)
					if err != nil {
						return err
					}
					o.URL = base
					if o.Token == "" {
						return fmt.Errorf("--url needs --token (or BERTH_TOKEN)")
					}
				}
				if o.WriterURL != "" {
					if o.URL == "" {
						return fmt.Errorf("--writer-url goes with --url: both external servers")
					}
					base, err := apiBaseURL(o.WriterURL)
					if err != nil {
						return err
					}
					o.WriterURL = base
				}
				if o.Workers < 0 || o.Duration < 0 || o.Items < 0 || o.Pollers < 0 || o.Samples < 0 || o.ScaleItems < 0 ||
					o.Sessions < 0 || o.StreamsPerSession < 0 || o.Writers < 0 || o.Rate < 0 {
					return fmt.Errorf("--workers, --duration, --items, --pollers, --samples, --scale-items, --sessions, --streams, --writers and --rate must not be negative")
				}
				if o.Replicas < 1 || o.Replicas > 2 {
					return fmt.Errorf("--replicas is 1 or 2")
				}
				if o.Replicas == 2 && (o.DatabaseURL == "" || o.URL != "" || inProcess) {
					return fmt.Errorf("--replicas 2 starts two berth serve processes on one PostgreSQL database: it needs --database-url, and neither --url nor --in-process")
				}
				// scale seeds the store directly, and ceiling starts no server.
				o.Spawn = o.URL == "" && !inProcess && name != "scale" && name != "ceiling"
				if o.Baseline && (!o.Spawn || o.DatabaseURL != "") {
					return fmt.Errorf("--baseline starts its own do-nothing server in a process of its own: not with --url, --in-process or --database-url")
				}
				for _, kv := range o.ServerEnv {
					if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
						return fmt.Errorf("--server-env takes NAME=VALUE, not %q", kv)
					}
				}
				if len(o.ServerEnv) > 0 && !o.Spawn {
					return fmt.Errorf("--server-env is for the server the bench starts in its own process (not with --url, --in-process, scale or ceiling)")
				}
				if !asJSON && isatty.IsTerminal(os.Stderr.Fd()) {
					o.Progress = os.Stderr
				}
				if cpuProfile != "" && o.Spawn {
					abs, err := filepath.Abs(cpuProfile)
					if err != nil {
						return err
					}
					o.ServerArgs = append(o.ServerArgs, "--cpuprofile", abs)
				} else if cpuProfile != "" {
					pf, err := os.Create(cpuProfile)
					if err != nil {
						return err
					}
					defer pf.Close()
					if err := pprof.StartCPUProfile(pf); err != nil {
						return err
					}
					defer pprof.StopCPUProfile()
				}
				// Interrupted, the scenario ends and stops the server it started.
				ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				res, err := fn(ctx, o)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(os.Stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(res)
				}
				printResult(res)
				return nil
			},
		}
	}
	lifecycle := withShort(run("lifecycle", func(ctx context.Context, o bench.Options) (any, error) { return bench.Lifecycle(ctx, o) }), "Full item lifecycles against berth, and the ratio to the loopback ceiling")
	lifecycle.Long = `Full item lifecycles against berth: --workers workers each create a session, poll,
ack, heartbeat and stop twice, for --duration (or until --items items). Then a ceiling
pass (the same client load against a no-op handler) runs for --duration too, for the
ratio items/s × 6 ÷ ceiling req/s: the whole run takes about twice --duration.`
	fleet := withShort(run("fleet", func(ctx context.Context, o bench.Options) (any, error) { return bench.Fleet(ctx, o) }), "Many idle workers long-polling an empty queue: what they cost the server")
	fleet.Long = `--workers idle workers (default 10,000) poll an empty queue the way the SDK workers do
when idle: each with its own Worker-ID and its own keep-alive connection, a long poll
GET …/work/poll?block_ms=999, then a pause of 1–3 s (uniformly at random) after every
answer, again and again; nothing is ever queued.

The workers start one after the other, evenly spread over N/2,000 s (at most 5 s), so
that they do not poll in lockstep, and the random pauses keep them apart. The measured
window (--duration, default 60 s) starts once every worker has had its first answer and
one longest cycle (1 s of block and 3 s of pause) has passed since the last one started.

Reported: polls answered per second, errors (any answer but 200, or a transport error),
each poll's latency beyond its block (p50/p99), the connections opened, the server's CPU
in cores and its peak RSS against the targets (≤ 0.25 of a core, ≤ 200 MiB), and the
load generator's own CPU. The server's own figures need it in its own process (the
default): with --in-process only the whole process's are known.

--baseline runs the same fleet against a do-nothing net/http server instead of berth (a
hidden 'berth bench baseline-server' child process with berth serve's settings, whose
poll only waits block_ms and answers null): what HTTP alone costs on this machine, to
read berth's figures and the targets against.

Each worker holds one connection, and so does the server for each: 10,000 workers need
about 10,300 open files in the bench (twice that --in-process). The bench raises its
limit where it may, and says so where it may not.`
	stream := withShort(run("stream", func(ctx context.Context, o bench.Options) (any, error) { return bench.Stream(ctx, o) }), "Session event streams while writers post: commit → frame latency, RSS, no event missed")
	stream.Long = `--sessions sessions (default 100) with --streams event streams each (default 10: 1,000
streams), each on its own connection, opened tail-only as a live follower opens them.
Once every stream is open, --writers writers (default 16) post one agent.message event
at a time, --rate events/s over all sessions (default 200), round robin, for --duration
(default 30 s). Each event carries the time just before its POST was sent; each stream
reader compares it with the frame's arrival: the latency, p50/p99/max over every frame
of every stream, includes the POST up to its commit. A stream that ends early (a slow
reader cut, a failure) resumes with Last-Event-ID, as the official clients do.

After the writers stop, every stream must receive its session's last event; then each
stream's events are checked against the session's history (GET …/events): every event
after the stream's start, each once, in order. Missed, duplicated, out-of-order and
unknown events must all be 0.

Reported: events/s posted, POST latency, frames received, the latency against the
target (p99 ≤ 10 ms on one server, ≤ 50 ms across replicas), slow readers cut (the
server's berth_event_stream_slow_readers_total) and streams resumed, the check, and the
server's CPU and peak RSS against ≤ 200 MiB.

--replicas 2 (with --database-url) starts two berth serve processes on the database:
the streams read from the first, the writers post to the second, so that every event
reaches its streams through PostgreSQL's LISTEN/NOTIFY. --url with --writer-url does the
same with two external servers.`
	fleet.Flags().BoolVar(&o.Baseline, "baseline", false, "run the fleet against a do-nothing net/http server (berth serve's settings, a poll that only waits block_ms) instead of berth: what HTTP alone costs on this machine")
	cmd.AddCommand(
		lifecycle,
		withShort(run("ceiling", func(ctx context.Context, o bench.Options) (any, error) { return bench.Ceiling(ctx, o) }), "The loopback ceiling: the same client load against a no-op handler"),
		withShort(run("pickup", func(ctx context.Context, o bench.Options) (any, error) { return bench.Pickup(ctx, o) }), "Enqueue → poll response latency with parked long-pollers"),
		withShort(run("scale", func(ctx context.Context, o bench.Options) (any, error) { return bench.Scale(ctx, o) }), "Hot-call p50 at N stored items against 1,000 (always in-process)"),
		fleet,
		stream,
		baselineServerCmd(&o.DataDir, &cpuProfile),
	)
	return cmd
}

// baselineServerCmd is `berth bench baseline-server`, hidden: the do-nothing server that
// `berth bench fleet --baseline` starts as its child process (bench.Baseline). It logs
// the line the bench waits for, as berth serve does, and stops on SIGTERM or SIGINT.
func baselineServerCmd(dataDir, cpuProfile *string) *cobra.Command {
	var addr string
	c := &cobra.Command{
		Use:    "baseline-server",
		Short:  "A do-nothing HTTP server for berth bench fleet --baseline",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if *dataDir == "" {
				return fmt.Errorf("--data-dir is required")
			}
			if *cpuProfile != "" {
				stop, err := startCPUProfile(*cpuProfile)
				if err != nil {
					return err
				}
				defer stop()
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			hs := newHTTPServer(nil, defaultReadHeaderTimeout, defaultReadTimeout, log)
			return bench.ServeBaseline(ctx, ln, hs, *dataDir, func() {
				log.Info("berth serving", "addr", ln.Addr().String(), "baseline", true)
			})
		},
	}
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:0", "address to listen on")
	return c
}

func withShort(c *cobra.Command, short string) *cobra.Command {
	c.Short = short
	return c
}

func printLatencies(w *tabwriter.Writer, calls map[string]bench.Latency) {
	names := make([]string, 0, len(calls))
	for k := range calls {
		names = append(names, k)
	}
	slices.Sort(names)
	fmt.Fprintln(w, "call\tcount\tp50 ms\tp99 ms\tmax ms")
	for _, n := range names {
		l := calls[n]
		fmt.Fprintf(w, "%s\t%d\t%.3f\t%.3f\t%.3f\n", n, l.Count, l.P50, l.P99, l.Max)
	}
}

// printProcs prints what the server process (when spawned) and this process cost.
func printProcs(w *tabwriter.Writer, server, self *bench.ProcStats) {
	if server != nil {
		fmt.Fprintf(w, "server (pid %d) CPU\t%.3f cores (%.1f CPU s in %.1f s)\n", server.PID, server.CPUCores, server.CPUSeconds, server.Seconds)
		fmt.Fprintf(w, "server peak RSS\t%.1f MiB (now %.1f MiB)\n", bench.MiB(server.PeakRSSBytes), bench.MiB(server.RSSBytes))
	}
	if self != nil {
		who := "load generator"
		if server == nil {
			who = "bench process (load generator and any in-process server)"
		}
		fmt.Fprintf(w, "%s CPU\t%.3f cores\n", who, self.CPUCores)
		fmt.Fprintf(w, "%s peak RSS\t%.1f MiB\n", who, bench.MiB(self.PeakRSSBytes))
	}
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

func printResult(res any) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	switch r := res.(type) {
	case *bench.LifecycleResult:
		fmt.Fprintf(w, "lifecycle on %s, %d workers, %.1f s\n", r.Target, r.Workers, r.Seconds)
		fmt.Fprintf(w, "items\t%d\nitems/s\t%.0f\nrequests/s\t%.0f\nerrors\t%d\n", r.Items, r.ItemsPerSec, r.ReqPerSec, r.Errors)
		printLatencies(w, r.Calls)
		printProcs(w, r.Server, r.LoadGenerator)
		if r.Ceiling != nil {
			fmt.Fprintf(w, "ceiling req/s\t%.0f\nratio (items/s × 6 ÷ ceiling)\t%.2f\n", r.Ceiling.ReqPerSec, r.Ratio)
		}
	case *bench.CeilingResult:
		fmt.Fprintf(w, "ceiling, %d workers, %.1f s\nrequests/s\t%.0f\n", r.Workers, r.Seconds, r.ReqPerSec)
		printLatencies(w, map[string]bench.Latency{"noop": r.Calls})
	case *bench.PickupResult:
		fmt.Fprintf(w, "pickup on %s, %d parked pollers\n", r.Target, r.Pollers)
		printLatencies(w, map[string]bench.Latency{"pickup": r.Pickup})
		if r.Missed > 0 {
			fmt.Fprintf(w, "missed (no pickup within 2 s)\t%d\n", r.Missed)
		}
		printProcs(w, r.Server, r.LoadGenerator)
	case *bench.FleetResult:
		fmt.Fprintf(w, "fleet on %s: %d idle workers, block_ms=%d, pause %d–%d ms\n", r.Target, r.Workers, r.BlockMS, r.PauseMS[0], r.PauseMS[1])
		fmt.Fprintf(w, "warm-up\t%.1f s (ramp %.1f s), %d polls\n", r.WarmupSeconds, r.RampSeconds, r.WarmupPolls)
		fmt.Fprintf(w, "measured\t%.1f s\n", r.Seconds)
		fmt.Fprintf(w, "polls answered\t%d (%.0f/s)\n", r.Polls, r.PollsPerSec)
		fmt.Fprintf(w, "errors\t%d\n", r.Errors)
		for _, e := range r.ErrorSamples {
			fmt.Fprintf(w, "  error\t%s\n", e)
		}
		if r.Delivered > 0 {
			fmt.Fprintf(w, "items delivered (none expected)\t%d\n", r.Delivered)
		}
		fmt.Fprintf(w, "latency beyond the block\tp50 %.3f ms, p99 %.3f ms, max %.3f ms\n", r.BeyondBlock.P50, r.BeyondBlock.P99, r.BeyondBlock.Max)
		fmt.Fprintf(w, "connections opened\t%d\n", r.Connections)
		fmt.Fprintf(w, "workers polling (server's count)\t%d\n", r.WorkersPolling)
		printProcs(w, r.Server, r.LoadGenerator)
		if rt := r.ServerRuntime; rt != nil {
			fmt.Fprintf(w, "server runtime at the end\t%d goroutines, heap in use %.1f MiB, stacks %.1f MiB, %d polls parked\n",
				rt.Goroutines, bench.MiB(rt.HeapInuseBytes), bench.MiB(rt.StackInuseBytes), rt.ParkedPolls)
		}
		if s := r.Server; s != nil {
			// The baseline is not berth: its figures are set against berth's targets
			// only to show what HTTP alone leaves of them.
			label := "target"
			if r.Baseline {
				label = "baseline against berth's target"
			}
			fmt.Fprintf(w, "%s: server CPU ≤ %.2f core\t%s\n", label, bench.FleetTargetCores, metOrNot(s.CPUCores <= bench.FleetTargetCores))
			fmt.Fprintf(w, "%s: server RSS ≤ %d MiB\t%s\n", label, bench.FleetTargetRSSMiB, metOrNot(bench.MiB(s.PeakRSSBytes) <= bench.FleetTargetRSSMiB))
		}
	case *bench.StreamResult:
		fmt.Fprintf(w, "stream on %s\n", r.Target)
		fmt.Fprintf(w, "streams\t%d (%d sessions × %d), opened in %.1f s; server counts %d open\n", r.Streams, r.Sessions, r.StreamsPerSession, r.OpenSeconds, r.OpenStreams)
		fmt.Fprintf(w, "writers\t%d, asked %.0f events/s for %.1f s\n", r.Writers, r.Rate, r.Seconds)
		fmt.Fprintf(w, "events posted\t%d (%.0f/s), %d errors, %d sends late\n", r.Events, r.EventsPerSec, r.WriteErrors, r.Late)
		fmt.Fprintf(w, "frames received\t%d (%.0f/s), drain %.3f s\n", r.Frames, r.FramesPerSec, r.DrainSeconds)
		printLatencies(w, map[string]bench.Latency{"post events": r.Post, "send → frame": r.Latency, "POST answer → frame": r.AfterAnswer})
		fmt.Fprintf(w, "slow readers cut (server)\t%d\nstreams resumed\t%d\nstream errors\t%d\n", r.SlowCut, r.Reconnects, r.StreamErrors)
		fmt.Fprintf(w, "missed / duplicated / out of order / unknown\t%d / %d / %d / %d\n", r.Missed, r.Duplicated, r.OutOfOrder, r.Unknown)
		if r.NotInHistory > 0 {
			fmt.Fprintf(w, "posted but not in the history\t%d\n", r.NotInHistory)
		}
		for _, e := range r.ErrorSamples {
			fmt.Fprintf(w, "  error\t%s\n", e)
		}
		printProcs(w, r.Server, r.LoadGenerator)
		if s := r.WriterServer; s != nil {
			fmt.Fprintf(w, "writers' server (pid %d) CPU\t%.3f cores\nwriters' server peak RSS\t%.1f MiB\n", s.PID, s.CPUCores, bench.MiB(s.PeakRSSBytes))
		}
		if rt := r.ServerRuntime; rt != nil {
			fmt.Fprintf(w, "server runtime at the end\t%d goroutines, heap in use %.1f MiB, stacks %.1f MiB\n", rt.Goroutines, bench.MiB(rt.HeapInuseBytes), bench.MiB(rt.StackInuseBytes))
		}
		fmt.Fprintf(w, "target: p99 ≤ %.0f ms\t%s\n", r.TargetP99MS(), metOrNot(r.Latency.P99 <= r.TargetP99MS()))
		if s := r.Server; s != nil {
			fmt.Fprintf(w, "target: server RSS ≤ %d MiB\t%s\n", bench.StreamTargetRSSMiB, metOrNot(bench.MiB(s.PeakRSSBytes) <= bench.StreamTargetRSSMiB))
		}
		fmt.Fprintf(w, "every event once, in order\t%s\n", map[bool]string{true: "yes", false: "NO"}[r.Clean()])
	case *bench.ScaleResult:
		fmt.Fprintf(w, "scale on %s: %d against %d items (seeding took %.1f s)\n", r.Target, r.Large, r.Small, r.SeedSeconds)
		fmt.Fprintln(w, "call\tp50 ms at small\tp50 ms at large\tratio")
		names := make([]string, 0, len(r.Ratio))
		for k := range r.Ratio {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(w, "%s\t%.3f\t%.3f\t%.2f\n", n, r.AtSmall[n].P50, r.AtLarge[n].P50, r.Ratio[n])
		}
	}
}
