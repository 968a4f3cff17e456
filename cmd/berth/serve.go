package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/buildinfo"
	"github.com/berth-sh/berth/internal/dashboard"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/postgres"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/webhook"
)

// AdminTokenFile is where a server started on an empty database writes its first admin
// token, inside the data directory.
const AdminTokenFile = "admin-token"

type serveOptions struct {
	addr        string
	dataDir     string
	databaseURL string
	logFormat   string
	logLevel    string
	noDashboard bool
	// tlsCert and tlsKey, both set, serve HTTPS (HTTP/2 and HTTP/1.1), reloaded on SIGHUP.
	tlsCert, tlsKey string
	// The slow-client limits; hidden flags, so that tests can check them against a real
	// process without waiting a minute.
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	// webhookTimeout bounds one webhook delivery attempt (webhook.Timeout); hidden, so
	// that the crash tests need not wait for the 20 s a claim of a killed server holds.
	webhookTimeout time.Duration
	// cpuProfile, when set, names a file for a CPU profile of the whole run, written when
	// the server stops (hidden: for berth bench, which measures a server it starts).
	cpuProfile string
}

// The defaults of the slow-client limits. Headers are small: ten seconds is long for any
// honest client. Bodies may be 32 MiB; a minute is generous for that on any link that
// should carry it, and bounds what a slow client can hold.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = time.Minute
)

func serveCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the berth server",
		Long: `Run the berth server on an embedded SQLite database in --data-dir.

On an empty database the server creates one admin token, writes it to
<data-dir>/admin-token (mode 0600) and logs that path. SIGTERM or SIGINT stops it
gracefully: it stops accepting, answers parked long polls with null, finishes
in-flight requests and closes the database.

With --tls-cert and --tls-key it serves HTTPS (HTTP/2 and HTTP/1.1) instead of
plain HTTP. SIGHUP reads both files again: new connections get the new pair, open
ones go on; a pair that does not load is logged and the previous one kept.`,
		Example: `  berth serve
  berth serve --addr 0.0.0.0:8080 --data-dir /var/lib/berth
  berth serve --addr 0.0.0.0:8443 --tls-cert /etc/berth/tls.crt --tls-key /etc/berth/tls.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.databaseURL = secretFromEnv(cmd, "database-url", "BERTH_DATABASE_URL", o.databaseURL)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serve(ctx, o, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", envDefault("BERTH_ADDR", "127.0.0.1:8080"), "listen address (BERTH_ADDR)")
	f.StringVar(&o.dataDir, "data-dir", envDefault("BERTH_DATA_DIR", "./berth-data"), "directory of the embedded database, berth.db, and of the first admin token (BERTH_DATA_DIR)")
	f.StringVar(&o.databaseURL, "database-url", "", secretUsage("PostgreSQL database (postgres://…) shared by several replicas, instead of the embedded one", "BERTH_DATABASE_URL"))
	f.StringVar(&o.logFormat, "log-format", envDefault("BERTH_LOG_FORMAT", "text"), "log format: text or json (BERTH_LOG_FORMAT)")
	f.StringVar(&o.logLevel, "log-level", envDefault("BERTH_LOG_LEVEL", "info"), logLevelHelp+"; empty polls are logged at debug (BERTH_LOG_LEVEL)")
	f.StringVar(&o.tlsCert, "tls-cert", os.Getenv("BERTH_TLS_CERT"), "serve HTTPS with this PEM certificate (chain), reloaded on SIGHUP; needs --tls-key (BERTH_TLS_CERT)")
	f.StringVar(&o.tlsKey, "tls-key", os.Getenv("BERTH_TLS_KEY"), "PEM private key of --tls-cert (BERTH_TLS_KEY)")
	f.BoolVar(&o.noDashboard, "no-dashboard", envDefault("BERTH_NO_DASHBOARD", "") == "1", "serve the API only, without the web dashboard at / (BERTH_NO_DASHBOARD=1)")
	f.DurationVar(&o.readHeaderTimeout, "read-header-timeout", defaultReadHeaderTimeout, "longest a client may take to send a request's headers")
	f.DurationVar(&o.readTimeout, "read-timeout", defaultReadTimeout, "longest a client may take to send a whole request, body included")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the server's run to this file when it stops")
	f.DurationVar(&o.webhookTimeout, "webhook-timeout", webhook.Timeout, "longest a webhook delivery attempt may take")
	f.MarkHidden("webhook-timeout")
	f.MarkHidden("read-header-timeout")
	f.MarkHidden("read-timeout")
	f.MarkHidden("cpuprofile")
	return cmd
}

const logLevelHelp = "least level logged: debug, info, warn or error"

// newLogger is the logger of serve and worker, writing to w in format (text or json) the
// lines of level and above (debug, info, warn or error).
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level (or BERTH_LOG_LEVEL) must be debug, info, warn or error, not %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format (or BERTH_LOG_FORMAT) must be text or json, not %q", format)
}

// openStore opens PostgreSQL when databaseURL is set, else the embedded SQLite database
// in dataDir (created if needed).
func openStore(ctx context.Context, dataDir, databaseURL string) (store.Store, error) {
	if databaseURL != "" {
		return postgres.Open(ctx, databaseURL)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return sqlite.Open(ctx, dataDir)
}

// serve runs the server until ctx ends. ready, when not nil, receives the bound address.
func serve(ctx context.Context, o serveOptions, ready chan<- string) error {
	log, err := newLogger(os.Stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	useTLS, err := tlsFiles(o.tlsCert, o.tlsKey)
	if err != nil {
		return err
	}
	var certs *certReloader
	if useTLS {
		if certs, err = newCertReloader(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}
	stopHUP := reloadOnSIGHUP(certs, log)
	defer stopHUP()
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	st, err := openStore(ctx, o.dataDir, o.databaseURL)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close database", "err", err)
		}
	}()
	if err := bootstrapAdmin(ctx, st, o.dataDir, log); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(buildinfo.Collector())
	if in, ok := st.(interface{ Instrument(prometheus.Registerer) }); ok {
		in.Instrument(reg)
	}
	// The webhook sender: woken by the writes that queue deliveries, it claims them from
	// the outbox (with several replicas, each claims its own) until the server stops.
	sender := webhook.New(webhook.Config{Store: st, Logger: log, Registerer: reg, Timeout: o.webhookTimeout})
	srv := api.New(api.Config{Store: st, Logger: log, Registry: reg, WakeWebhooks: sender.Wake})
	if o.readHeaderTimeout <= 0 {
		o.readHeaderTimeout = defaultReadHeaderTimeout
	}
	if o.readTimeout <= 0 {
		o.readTimeout = defaultReadTimeout
	}
	// The dashboard serves / and /ui/ and passes every other path to the API; its live
	// views end when the server starts shutting down.
	var handler http.Handler = srv
	dashCtx, stopDash := context.WithCancel(context.Background())
	defer stopDash()
	if !o.noDashboard {
		handler = dashboard.New(dashboard.Config{API: srv, Store: st, Logger: log, Context: dashCtx})
	}
	httpSrv := newHTTPServer(handler, o.readHeaderTimeout, o.readTimeout, log)
	if certs != nil {
		httpSrv.TLSConfig = certs.tlsConfig()
	}
	httpSrv.RegisterOnShutdown(stopDash)
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	go srv.Run(runCtx)
	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		sender.Run(runCtx)
	}()

	errc := make(chan error, 1)
	// srv.Listener: the answers net/http writes by itself (a request it cannot parse,
	// headers over MaxHeaderBytes) become the API's error envelope too.
	// Over TLS it cannot: net/http must see the *tls.Conn itself (for ALPN, HTTP/2 and
	// Request.TLS), so its own answers stay plain text there.
	if certs != nil {
		go func() { errc <- httpSrv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- httpSrv.Serve(srv.Listener(ln)) }()
	}
	attrs := []any{"addr", ln.Addr().String(), "data_dir", o.dataDir}
	if certs != nil {
		attrs = append(attrs, "tls", true)
	}
	if !o.noDashboard {
		u := dashboardURL(ln.Addr())
		if certs != nil {
			u = "https://" + strings.TrimPrefix(u, "http://")
		}
		attrs = append(attrs, "dashboard", u)
	}
	if certs != nil {
		log.Info("serving TLS", certs.certAttrs()...)
	}
	log.Info("berth serving", attrs...)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	srv.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Error("shutdown", "err", err)
	}
	stopRun()
	<-senderDone // its attempts under way are recorded before the database closes
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// newHTTPServer is berth serve's http.Server for handler: its timeouts, and net/http's
// own complaints logged at Warn. berth bench baseline-server serves with it too, so that
// the baseline is measured with berth serve's settings.
func newHTTPServer(handler http.Handler, readHeaderTimeout, readTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// startCPUProfile starts a CPU profile of this process into the file path; stop ends
// it and closes the file.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// dashboardURL is where a browser on this machine finds the dashboard of a server
// listening on addr: a wildcard address (0.0.0.0, ::) is reached on the loopback.
func dashboardURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// bootstrapAdmin creates the first admin token when the database has none, writes its
// secret to <dataDir>/admin-token (0600, the token alone on one line) and logs the path,
// never the token. The secret is written and synced to a temporary file before the token
// is stored, and renamed into place only once it is: a token never exists that nobody can
// read, and a replica that loses the race to create the first token (PostgreSQL) leaves
// no file behind.
func bootstrapAdmin(ctx context.Context, st store.Store, dataDir string, log *slog.Logger) error {
	n, err := st.CountTokens(ctx)
	if err != nil {
		return fmt.Errorf("count tokens: %w", err)
	}
	if n > 0 {
		return nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	tok, secret := api.NewToken("admin", api.RoleAdmin, "", time.Now())
	path := filepath.Join(dataDir, AdminTokenFile)
	tmp, err := writeSecretTemp(dataDir, secret+"\n")
	if err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	defer os.Remove(tmp) // a no-op once renamed
	_, created, err := st.CreateFirstToken(ctx, tok)
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	if !created {
		return nil // another replica sharing the database made the first token
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	log.Info("created the first admin token", "path", path)
	return nil
}

// writeSecretTemp writes content to a new file of mode 0600 in dir, synced, and returns
// its name.
func writeSecretTemp(dir, content string) (string, error) {
	tmp, err := os.CreateTemp(dir, ".admin-token-*")
	if err != nil {
		return "", err
	}
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(content)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}
