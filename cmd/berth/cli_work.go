package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
)

func workCmd() *cobra.Command {
	a := &apiConn{}
	var env string
	cmd := &cobra.Command{
		Use:   "work",
		Short: "List, poll, ack, heartbeat, stop and update work items (API)",
		Long: `Work items of a self_hosted environment (--environment, or BERTH_ENVIRONMENT_ID), by hand:
what a worker does (poll, ack, heartbeat, stop) and what an operator looks at (list,
stats, get). A heartbeat whose --expect does not match exits 4 and prints who holds the
lease.` + groupLong,
		Example: `  export BERTH_ENVIRONMENT_ID=env_…
  WORK=$(berth work poll --block-ms 999 --worker-id me --json | jq -r .id)
  berth work ack "$WORK" --worker-id me
  LAST=$(berth work heartbeat "$WORK" --expect NO_HEARTBEAT --json | jq -r .last_heartbeat)
  berth work heartbeat "$WORK" --expect "$LAST"
  berth work stop "$WORK"`,
	}
	a.addConnFlags(cmd, envDefault("BERTH_URL", client.DefaultBaseURL), urlHelp, true)
	environmentFlag(cmd.PersistentFlags(), &env, "the work items' environment (required)")
	// needEnv wraps a command body that needs --environment.
	needEnv := func(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
		return a.run(func(ctx context.Context, args []string) error {
			if env == "" {
				return errors.New("--environment (or BERTH_ENVIRONMENT_ID) is required")
			}
			return fn(ctx, args)
		})
	}
	complete := completeIDs(a, 1, func(ctx context.Context, c *client.Client, _ *cobra.Command, yield func(id, desc string) bool) error {
		if env == "" {
			return nil
		}
		for w, err := range c.AllWork(ctx, env, client.ListWorkParams{ListParams: client.ListParams{Limit: 100}}) {
			if err != nil || !yield(w.ID, string(w.State)+" "+w.Data.ID) {
				return err
			}
		}
		return nil
	})
	cmd.AddCommand(
		workListCmd(a, &env, needEnv),
		workPollCmd(a, &env, needEnv),
		workStatsCmd(a, &env, needEnv),
		workGetCmd(a, &env, needEnv, complete),
		workUpdateCmd(a, &env, needEnv, complete),
		workAckCmd(a, &env, needEnv, complete),
		workHeartbeatCmd(a, &env, needEnv, complete),
		workStopCmd(a, &env, needEnv, complete),
	)
	return cmd
}

type workRunFn = func(func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error

var workCols = []string{"ID", "STATE", "SESSION", "CREATED", "LAST_HEARTBEAT", "METADATA"}

func workRow(w client.Work) []string {
	return []string{w.ID, string(w.State), w.Data.ID, cliTime(w.CreatedAt), w.LatestHeartbeatAtRaw, metadataCell(w.Metadata)}
}

func workTable(w *client.Work) func(io.Writer) {
	return func(tw io.Writer) {
		tableHeader(tw, workCols...)
		tableRow(tw, workRow(*w)...)
	}
}

func workListCmd(a *apiConn, env *string, run workRunFn) *cobra.Command {
	var l listFlags
	var states []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an environment's work items in queue order, all states unless --state",
		Example: `  berth work list -e env_…
  berth work list --state queued,starting --all
  berth work list --state stopped --all --json | jq -c '.[] | {id, metadata}'`,
		Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, _ []string) error {
			p := client.ListWorkParams{}
			for _, s := range states {
				p.States = append(p.States, client.State(s))
			}
			return cliList(ctx, a, &l, workCols, workRow, func(ctx context.Context, lp client.ListParams) (*client.Page[client.Work], error) {
				p.ListParams = lp
				return a.c.ListWork(ctx, *env, p)
			})
		}),
	}
	l.add(cmd)
	cmd.Flags().StringSliceVar(&states, "state", nil, "only these states: queued, starting, active, stopping, stopped (comma-separated or repeated)")
	return cmd
}

func workPollCmd(a *apiConn, env *string, run workRunFn) *cobra.Command {
	var p client.PollParams
	var reclaim int
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "poll",
		Short: "Claim the oldest deliverable work item; prints nothing (--json: null) when there is none",
		Long: `Claim the oldest deliverable item, waiting up to --block-ms for one. The item stays queued
until acknowledged (work ack); unacknowledged, it is deliverable again after --reclaim-ms.
With no item, nothing is printed (with --json: null) and the exit code is still 0.`,
		Example: `  berth work poll --block-ms 999 --worker-id "$(hostname)"
  WORK=$(berth work poll --block-ms 999 --json | jq -r '.id // empty')`,
		Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, _ []string) error {
			if cmd.Flags().Changed("reclaim-ms") {
				p.ReclaimOlderThanMS = &reclaim
			}
			w, err := a.c.PollWork(ctx, *env, p)
			if err != nil {
				return err
			}
			if w == nil {
				if a.asJSON {
					return a.printJSON([]byte("null"))
				}
				return nil
			}
			return a.out(workTable(w))
		}),
	}
	f := cmd.Flags()
	f.IntVar(&p.BlockMS, "block-ms", 0, "wait up to this long for an item, 1–999 ms (default: answer at once)")
	f.StringVar(&p.WorkerID, "worker-id", os.Getenv("BERTH_WORKER_ID"), "Worker-ID header: a stable name of this worker (BERTH_WORKER_ID)")
	f.IntVar(&reclaim, "reclaim-ms", 5000, "an item delivered but not acknowledged this long ago is deliverable again")
	return cmd
}

func workStatsCmd(a *apiConn, env *string, run workRunFn) *cobra.Command {
	return &cobra.Command{
		Use:   "stats",
		Short: "Show the queue: depth, pending deliveries, oldest queued item, workers polling",
		Example: `  berth work stats -e env_…
  berth work stats --json | jq .depth`,
		Args: cobra.NoArgs,
		RunE: run(func(ctx context.Context, _ []string) error {
			s, err := a.c.GetWorkStats(ctx, *env)
			if err != nil {
				return err
			}
			return a.out(func(w io.Writer) {
				tableHeader(w, "DEPTH", "PENDING", "OLDEST_QUEUED", "WORKERS_POLLING")
				tableRow(w, strconv.Itoa(s.Depth), strconv.Itoa(s.Pending), cliTimePtr(s.OldestQueuedAt), strconv.Itoa(s.WorkersPolling))
			})
		}),
	}
}

func workGetCmd(a *apiConn, env *string, run workRunFn, complete cobra.CompletionFunc) *cobra.Command {
	return &cobra.Command{
		Use:               "get WORK_ID",
		Short:             "Show a work item",
		Example:           `  berth work get work_019f3be4fd2475d9a784bf2c739e1194 -e env_… --json | jq -r .state`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: run(func(ctx context.Context, args []string) error {
			w, err := a.c.GetWork(ctx, *env, args[0])
			if err != nil {
				return err
			}
			return a.out(workTable(w))
		}),
	}
}

func workUpdateCmd(a *apiConn, env *string, run workRunFn, complete cobra.CompletionFunc) *cobra.Command {
	var md metadataFlags
	cmd := &cobra.Command{
		Use:   "update WORK_ID",
		Short: "Merge metadata into a work item (any state)",
		Long: `Merge metadata into a work item, in any state: --metadata key=value sets a key,
--metadata key= or --unset key deletes it, other keys stay.`,
		Example: `  berth work update work_… --metadata progress=50%
  berth work update work_… --unset progress`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: run(func(ctx context.Context, args []string) error {
			m, err := md.patch()
			if err != nil {
				return err
			}
			if m == nil {
				return errors.New("nothing to change: give --metadata or --unset")
			}
			w, err := a.c.UpdateWork(ctx, *env, args[0], client.UpdateWorkParams{Metadata: m}, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(workTable(w))
		}),
	}
	md.add(cmd, true)
	return cmd
}

func workAckCmd(a *apiConn, env *string, run workRunFn, complete cobra.CompletionFunc) *cobra.Command {
	var p client.AckParams
	cmd := &cobra.Command{
		Use:   "ack WORK_ID",
		Short: "Acknowledge a polled item: queued → starting, and its lease begins",
		Long: `Acknowledge a polled item: queued → starting, which starts its lease (heartbeat within the
TTL). --worker-id must be the one the item was delivered to; another worker's ack, or
an ack of a stopping or stopped item, exits 4.`,
		Example:           `  berth work ack work_… --worker-id "$(hostname)"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: run(func(ctx context.Context, args []string) error {
			w, err := a.c.AckWork(ctx, *env, args[0], p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(workTable(w))
		}),
	}
	cmd.Flags().StringVar(&p.WorkerID, "worker-id", os.Getenv("BERTH_WORKER_ID"), "Worker-ID header (BERTH_WORKER_ID)")
	return cmd
}

func workHeartbeatCmd(a *apiConn, env *string, run workRunFn, complete cobra.CompletionFunc) *cobra.Command {
	var p client.HeartbeatParams
	cmd := &cobra.Command{
		Use:   "heartbeat WORK_ID",
		Short: "Extend an acknowledged item's lease (starting → active on the first)",
		Long: `Extend the lease of an acknowledged item. --expect makes it conditional: NO_HEARTBEAT for
the first heartbeat, then the LAST_HEARTBEAT the previous one printed, unchanged; a
mismatch exits 4 and prints the lease as the server sees it. Without --expect the
heartbeat is unconditional. STATE stopping means: drain, then work stop. A heartbeat on a
queued or stopped item exits 4: the lease is lost.`,
		Example: `  berth work heartbeat work_… --expect NO_HEARTBEAT --ttl 120
  berth work heartbeat work_… --expect 2026-07-01T08:15:06.120394Z`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: run(func(ctx context.Context, args []string) error {
			hb, err := a.c.HeartbeatWork(ctx, *env, args[0], p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(func(w io.Writer) {
				tableHeader(w, "STATE", "LAST_HEARTBEAT", "TTL_SECONDS", "LEASE_EXTENDED")
				tableRow(w, string(hb.State), hb.LastHeartbeat, strconv.Itoa(hb.TTLSeconds), strconv.FormatBool(hb.LeaseExtended))
			})
		}),
	}
	cmd.Flags().StringVar(&p.ExpectedLastHeartbeat, "expect", "", "expected_last_heartbeat: NO_HEARTBEAT, or the last heartbeat's timestamp")
	cmd.Flags().IntVar(&p.DesiredTTLSeconds, "ttl", 0, "lease to ask for in seconds, clamped to 10–600 (default 60)")
	return cmd
}

func workStopCmd(a *apiConn, env *string, run workRunFn, complete cobra.CompletionFunc) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "stop WORK_ID",
		Short: "Stop a work item: gracefully (acknowledged → stopping, then stopped) or --force",
		Long: `Stop a work item. Graceful by default: an acknowledged item moves to stopping (its worker
drains and stops it), anything else to stopped; so an operator stops once and the worker
confirms with a second stop. --force stops it at once. A stopped item is answered
unchanged.`,
		Example: `  berth work stop work_…
  berth work stop work_… --force`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: complete,
		RunE: run(func(ctx context.Context, args []string) error {
			w, err := a.c.StopWork(ctx, *env, args[0], force, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(workTable(w))
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "stop at once, without a drain")
	return cmd
}
