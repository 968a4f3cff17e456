package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/buildinfo"
	"github.com/berth-sh/berth/worker"
)

type workerOptions struct {
	url, token, environment, workerID string
	caCert                            string
	capacity, ttl                     int
	exec                              string
	drainTimeout, killGrace           time.Duration
	logFormat, logLevel, healthAddr   string
	exitWhenIdle                      bool
	events                            bool
}

func workerCmd() *cobra.Command {
	var o workerOptions
	var envErrs []error // environment variables that do not parse: reported, not ignored
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a command for each work item of an environment",
		Long: `Run --exec once for each work item of a self_hosted environment, up to --capacity at
a time, holding each item's lease with heartbeats.

The command runs with sh -c. It gets BERTH_WORK_ID, BERTH_SESSION_ID,
BERTH_ENVIRONMENT_ID and BERTH_WORKER_ID in its environment, with the worker's
BERTH_URL and BERTH_TOKEN (and BERTH_CA_CERT when set), so that berth commands it runs
reach the same server as the worker (berth session send "$BERTH_SESSION_ID" …); and the
work item's JSON on stdin. Its output goes to the worker's log.

With --events, its stdin follows the session: the item's JSON as the first line, then
each event of the session as one JSON line, the history first and then each new event
as it is committed, until the session is deleted (stdin ends after the session.deleted
line) or the command exits. A user.interrupt arrives as such a line, and only so: no
signal is sent, and the command decides what an interrupt means. It posts its answers
with berth session send, e.g. --type user.tool_result --tool-use-id <the agent.tool_use
event's id> --text '…' (a worker token may send user.tool_result,
user.custom_tool_result and user.message). When it exits, its exit code is recorded in
the item's metadata (exit_code) and the item is stopped; what it left running in its
process group gets SIGTERM, and SIGKILL after --kill-grace. An operator's stop request
sends it SIGTERM, and SIGKILL after --kill-grace; the shell traps SIGTERM, so the code
recorded is the command's own. If the worker loses an item's lease
(another worker may have it now) the command is killed and the item left alone.

SIGTERM or SIGINT drains: no new items, running ones get --drain-timeout to finish,
then are stopped; the worker exits 0. A second signal stops everything at once.
The worker exits non-zero if the server refuses its token or environment.

--exit-when-idle makes it exit 0 by itself once a poll answers null while none of
its items runs: for a worker started per queued item, or by an autoscaler, as a
Kubernetes Job.`,
		Example: `  berth worker --token "$(cat worker-token)" --environment env_… --exec './run-agent.sh'
  BERTH_TOKEN=pt-… BERTH_ENVIRONMENT_ID=env_… berth worker --capacity 8 --exec 'sleep 1'
  berth worker --events --exec './agent-loop.sh'   # reads the item, then the session's events, on stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := errors.Join(envErrs...); err != nil {
				return err
			}
			o.token = secretFromEnv(cmd, "token", "BERTH_TOKEN", o.token)
			return runWorker(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.url, "url", envDefault("BERTH_URL", client.DefaultBaseURL), urlHelp)
	f.StringVar(&o.token, "token", "", secretUsage("API token, pt-…", "BERTH_TOKEN"))
	f.StringVar(&o.caCert, "ca-cert", os.Getenv("BERTH_CA_CERT"), caCertHelp)
	f.StringVar(&o.environment, "environment", os.Getenv("BERTH_ENVIRONMENT_ID"), "environment to take work from (BERTH_ENVIRONMENT_ID)")
	f.StringVar(&o.workerID, "worker-id", os.Getenv("BERTH_WORKER_ID"), "Worker-ID (BERTH_WORKER_ID; default <hostname>-<random>)")
	f.IntVar(&o.capacity, "capacity", envInt(&envErrs, "BERTH_CAPACITY", 1), "items run at once (BERTH_CAPACITY)")
	f.StringVar(&o.exec, "exec", os.Getenv("BERTH_EXEC"), "shell command run once per item (BERTH_EXEC)")
	f.IntVar(&o.ttl, "ttl", envInt(&envErrs, "BERTH_TTL", 60), "lease asked for, in seconds (BERTH_TTL)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", envDuration(&envErrs, "BERTH_DRAIN_TIMEOUT", 30*time.Second), "how long running items may finish on shutdown (BERTH_DRAIN_TIMEOUT)")
	f.DurationVar(&o.killGrace, "kill-grace", envDuration(&envErrs, "BERTH_KILL_GRACE", 10*time.Second), "SIGTERM to SIGKILL for a stopped command, or what a command left running (BERTH_KILL_GRACE)")
	f.StringVar(&o.logFormat, "log-format", envDefault("BERTH_LOG_FORMAT", "text"), "log format: text or json (BERTH_LOG_FORMAT)")
	f.StringVar(&o.logLevel, "log-level", envDefault("BERTH_LOG_LEVEL", "info"), logLevelHelp+" (BERTH_LOG_LEVEL)")
	f.StringVar(&o.healthAddr, "health-addr", os.Getenv("BERTH_HEALTH_ADDR"), "serve /healthz and /metrics here when set (BERTH_HEALTH_ADDR)")
	f.BoolVar(&o.events, "events", envBool(&envErrs, "BERTH_EVENTS", false), "after the item's JSON line, write each event of its session to the command's stdin as one JSON line: the history, then live until the session is deleted; a user.interrupt is a line like any other, no signal (BERTH_EVENTS=1)")
	f.BoolVar(&o.exitWhenIdle, "exit-when-idle", envBool(&envErrs, "BERTH_EXIT_WHEN_IDLE", false), "exit 0 at the first poll that answers null while no item runs: a worker started for a queue (a Job) (BERTH_EXIT_WHEN_IDLE=1)")
	return cmd
}

func runWorker(ctx context.Context, o workerOptions) error {
	log, err := newLogger(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	switch {
	case o.token == "":
		return errors.New("--token (or BERTH_TOKEN) is required")
	case o.environment == "":
		return errors.New("--environment (or BERTH_ENVIRONMENT_ID) is required")
	case o.exec == "":
		return errors.New("--exec (or BERTH_EXEC) is required")
	case o.capacity < 1:
		return errors.New("--capacity must be at least 1")
	case o.ttl < 1:
		return errors.New("--ttl must be a positive number of seconds")
	case o.drainTimeout < 0 || o.killGrace < 0:
		return errors.New("--drain-timeout and --kill-grace must not be negative")
	}
	if o.workerID == "" {
		o.workerID = defaultWorkerID()
	}
	base, err := apiBaseURL(o.url)
	if err != nil {
		return err
	}
	var copts []client.Option
	if o.caCert != "" {
		copts = append(copts, client.WithCACertFile(o.caCert))
	}
	c, err := client.New(base, o.token, copts...)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "berth: "))
	}
	drainTimeout := o.drainTimeout
	if drainTimeout == 0 {
		// worker.Config takes 0 for "the default" (30 s), but --drain-timeout 0 means no
		// drain: running items are stopped as soon as the worker is told to shut down.
		drainTimeout = time.Nanosecond
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	w, err := worker.New(worker.Config{
		Client: c, EnvironmentID: o.environment, WorkerID: o.workerID, Capacity: o.capacity,
		TTL: o.ttl, DrainTimeout: drainTimeout, Logger: log, Metrics: worker.NewMetrics(reg), ExitWhenIdle: o.exitWhenIdle,
		Handler: &worker.Exec{Command: o.exec, KillGrace: o.killGrace, Logger: log, Events: o.events, Env: childEnv(c, o)},
	})
	if err != nil {
		return err
	}
	if o.healthAddr != "" {
		ln, err := net.Listen("tcp", o.healthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"ok"}`))
		})
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
		log.Info("health endpoint", "addr", ln.Addr().String())
	}

	// First signal: drain. Second: force.
	runCtx, drain := context.WithCancel(ctx)
	defer drain()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		first := true
		for range sigs {
			if first {
				log.Info("signal: draining; a second signal stops everything at once")
				drain()
				first = false
				continue
			}
			log.Warn("second signal: stopping every item now")
			w.Force()
		}
	}()
	return w.Run(runCtx)
}

// childEnv is what the worker adds to its commands' environment besides the item's
// variables: the server and the token it uses itself, so that a command's berth
// commands (or its own API calls) reach the same server as the worker, however the
// worker was given them (flags or environment).
func childEnv(c *client.Client, o workerOptions) []string {
	env := []string{"BERTH_URL=" + c.BaseURL(), "BERTH_TOKEN=" + o.token}
	if o.caCert != "" {
		env = append(env, "BERTH_CA_CERT="+o.caCert)
	}
	return env
}

// defaultWorkerID is <hostname>-<8 random hex digits>.
func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	b := make([]byte, 4)
	rand.Read(b)
	return host + "-" + hex.EncodeToString(b)
}

// envInt and envDuration read a flag's default from the environment. A value that does
// not parse is added to errs rather than replaced by def in silence: a mistyped
// BERTH_DRAIN_TIMEOUT=5min would otherwise give a 30 s drain to a unit whose stop timeout
// was sized for five minutes. Unset or empty means def.
func envInt(errs *[]error, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q: want an integer", name, s))
		return def
	}
	return v
}

// envBool reads a boolean flag's default: 1, true, 0, false (and the other forms of
// strconv.ParseBool).
func envBool(errs *[]error, name string, def bool) bool {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q: want 1 or 0 (true or false)", name, s))
		return def
	}
	return v
}

func envDuration(errs *[]error, name string, def time.Duration) time.Duration {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q: want a duration such as 30s or 5m", name, s))
		return def
	}
	return v
}
