package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/bench"
)

func benchCmd() *cobra.Command {
	var o bench.Options
	var asJSON bool
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure berth: lifecycle, ceiling, pickup, scale",
		Long: `Measure berth against a server started in-process on a temporary database (the
default; --database-url for PostgreSQL) or an external one (--url and --token).

  lifecycle  W workers each: create session → poll → ack → heartbeat → stop → stop;
             items/s, requests/s, p50/p99/max per call, and the ratio to the
             loopback ceiling measured right after (items/s × 6 ÷ ceiling req/s).
             The ceiling pass takes --duration too: a lifecycle run takes about
             twice --duration (or --items, then --duration)
  ceiling    the same client load against a no-op handler: this machine's limit now
  pickup     P parked long-pollers; sessions created one at a time; enqueue → poll
             response latency
  scale      fill the store with N items (mixed states); p50 of poll, ack, heartbeat
             and list at N against the same at 1,000 items`,
		Example: `  berth bench lifecycle --workers 8 --duration 10s
  berth bench pickup --pollers 1000
  berth bench scale --scale-items 1000000 --json
  berth bench lifecycle --url http://127.0.0.1:8080/api/v1/cloud --token "$(cat berth-data/admin-token)"`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.URL, "url", "", "external server: http://host:port or its API base URL (default: start one in-process)")
	f.StringVar(&o.Token, "token", "", secretUsage("token for --url", "BERTH_TOKEN"))
	f.StringVar(&o.DatabaseURL, "database-url", "", "in-process server on this PostgreSQL database")
	f.StringVar(&o.DataDir, "data-dir", "", "in-process SQLite directory (default: a temporary one)")
	f.IntVar(&o.Workers, "workers", 8, "lifecycle/ceiling: concurrent workers")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "lifecycle/ceiling: how long each pass runs (lifecycle runs two: itself, then the ceiling)")
	f.IntVar(&o.Items, "items", 0, "lifecycle: stop after this many items instead of --duration")
	f.IntVar(&o.Pollers, "pollers", 100, "pickup: parked long-pollers")
	f.IntVar(&o.Samples, "samples", 200, "pickup: sessions measured; scale: rounds per size")
	f.IntVar(&o.ScaleItems, "scale-items", 1_000_000, "scale: items stored")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (server included when in-process) to this file")

	run := func(name string, fn func(context.Context, bench.Options) (any, error)) *cobra.Command {
		return &cobra.Command{
			Use:  name,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o := o
				o.Token = secretFromEnv(cmd, "token", "BERTH_TOKEN", o.Token)
				if o.URL != "" {
					base, err := apiBaseURL(o.URL)
					if err != nil {
						return err
					}
					o.URL = base
					if o.Token == "" {
						return fmt.Errorf("--url needs --token (or BERTH_TOKEN)")
					}
				}
				if !asJSON && isatty.IsTerminal(os.Stderr.Fd()) {
					o.Progress = os.Stderr
				}
				if cpuProfile != "" {
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
				res, err := fn(cmd.Context(), o)
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
	cmd.AddCommand(
		lifecycle,
		withShort(run("ceiling", func(ctx context.Context, o bench.Options) (any, error) { return bench.Ceiling(ctx, o) }), "The loopback ceiling: the same client load against a no-op handler"),
		withShort(run("pickup", func(ctx context.Context, o bench.Options) (any, error) { return bench.Pickup(ctx, o) }), "Enqueue → poll response latency with parked long-pollers"),
		withShort(run("scale", func(ctx context.Context, o bench.Options) (any, error) { return bench.Scale(ctx, o) }), "Hot-call p50 at N stored items against 1,000"),
	)
	return cmd
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

func printResult(res any) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	switch r := res.(type) {
	case *bench.LifecycleResult:
		fmt.Fprintf(w, "lifecycle on %s, %d workers, %.1f s\n", r.Target, r.Workers, r.Seconds)
		fmt.Fprintf(w, "items\t%d\nitems/s\t%.0f\nrequests/s\t%.0f\nerrors\t%d\n", r.Items, r.ItemsPerSec, r.ReqPerSec, r.Errors)
		printLatencies(w, r.Calls)
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
