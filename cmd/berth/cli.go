package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
)

// apiCommands are the commands that call a server's API through the client package:
// env, session, work and webhook (and token, which also has an offline mode: token.go), plus the
// exit-codes help topic, which puts the exit codes into `berth --help`.
func apiCommands() []*cobra.Command {
	return []*cobra.Command{envCmd(), sessionCmd(), workCmd(), webhookCmd(), exitCodesTopic()}
}

// Exit codes of the API commands. Usage errors (a bad flag, a missing argument) and
// local errors exit 1 through main.
const (
	exitLocal    = 1 // usage or local error
	exitAPI      = 2 // API 4xx other than those below
	exitNotFound = 3 // 404
	exitConflict = 4 // 409, 412
	exitAuth     = 5 // 401, 403
	exitServer   = 6 // 5xx, or no answer at all (connection, DNS, TLS)
)

const exitCodesHelp = `Exit codes of the API commands (env, session, work, webhook, and token over the API):

  0  ok
  1  usage or local error (bad flag or argument, unreadable input, or a --url
     where the server has no API: it answered 404 "No such route.")
  2  API error 4xx other than those below (400 invalid_request_error, 405)
  3  not found (404)
  4  conflict (409 conflict or invalid state, 412 heartbeat expectation mismatch)
  5  authentication or permission (401, 403)
  6  server or network error (5xx, connection refused, DNS, TLS)

API errors are printed on stderr as
  berth: <message> (HTTP <status> <type>, request_id=<id>)`

// exitCodesTopic is a help topic (a command with nothing to run): cobra lists it under
// "Additional help topics" of `berth --help`, and `berth help exit-codes` prints it.
func exitCodesTopic() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "Exit codes: 0 ok, 1 usage/local, 2 API 4xx, 3 not found, 4 conflict, 5 auth, 6 server/network",
		Long:  exitCodesHelp,
		Example: `  berth session get "$SESSION" >/dev/null 2>&1
  case $? in 0) echo exists ;; 3) echo gone ;; *) echo "cannot tell" ;; esac`,
	}
}

// apiConn is the connection flags of one command group (--url, --token, --json,
// --idempotency-key) and, once a command runs, its client.
type apiConn struct {
	url, token string
	caCert     string
	asJSON     bool
	idemKey    string
	// tokenGiven reports whether --token was given; when not, the token is BERTH_TOKEN's,
	// read when the command runs (never a flag default, which --help would print).
	tokenGiven func() bool

	c   *client.Client
	rec *recorder
}

// addConnFlags adds the connection flags to a group command, for all its subcommands.
// withJSON is false for token, which has its own --json already.
func (a *apiConn) addConnFlags(cmd *cobra.Command, urlDefault, urlHelp string, withJSON bool) {
	f := cmd.PersistentFlags()
	f.StringVar(&a.url, "url", urlDefault, urlHelp)
	f.StringVar(&a.token, "token", "", secretUsage("API token, pt-…", "BERTH_TOKEN"))
	a.tokenGiven = func() bool { return f.Lookup("token").Changed }
	f.StringVar(&a.caCert, "ca-cert", os.Getenv("BERTH_CA_CERT"), caCertHelp)
	if withJSON {
		f.BoolVar(&a.asJSON, "json", false, "print the API's JSON instead of a table")
	}
	f.StringVar(&a.idemKey, "idempotency-key", "", "Idempotency-Key sent with POST and DELETE: a repeat within 24 h replays the first answer (and the request is retried on network errors)")
}

const caCertHelp = "PEM file of a CA to trust, besides the system's, for an https:// URL: a server whose certificate a private CA signed (BERTH_CA_CERT)"

const urlHelp = "API base URL, with http:// or https:// (a host:port alone is refused); a bare http://host:port means http://host:port/api/v1/cloud (BERTH_URL)"

// apiBaseURL is the API base of a --url (or BERTH_URL) value, by client.NormalizeBaseURL:
// a bare http://host:port gets /api/v1/cloud, and a value without http:// or https:// is
// an error that says so.
func apiBaseURL(s string) (string, error) {
	base, err := client.NormalizeBaseURL(s)
	if err != nil {
		return "", fmt.Errorf("--url (or BERTH_URL): %s", strings.TrimPrefix(err.Error(), "berth: "))
	}
	return base, nil
}

// connect makes the client of this run.
func (a *apiConn) connect(opts ...client.Option) error {
	if a.tokenGiven != nil && !a.tokenGiven() {
		a.token = os.Getenv("BERTH_TOKEN")
	}
	base, err := apiBaseURL(a.url)
	if err != nil {
		return err
	}
	opts = append([]client.Option{client.WithTransportMiddleware(func(next http.RoundTripper) http.RoundTripper {
		a.rec = &recorder{base: next}
		return a.rec
	})}, opts...)
	if a.caCert != "" {
		opts = append(opts, client.WithCACertFile(a.caCert))
	}
	c, err := client.New(base, a.token, opts...)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "berth: "))
	}
	a.c = c
	return nil
}

// wrongURL is the error of a command whose server answered that it has no such route:
// the base URL is wrong, whatever the token or the IDs (a usage error, exit 1, so that a
// script reading exit code 3 as "not found" is not misled).
func wrongURL(base string, err error) error {
	var ae *client.Error
	answer := "404"
	if errors.As(err, &ae) && ae.Type != "" {
		answer += " " + strconv.Quote(ae.Message)
	}
	return fmt.Errorf("no berth API at %s (the server answered %s): check --url or BERTH_URL; "+
		"a berth server's API is at http://host:port/api/v1/cloud, which a bare http://host:port also means", base, answer)
}

// mut returns the request options of a POST or DELETE.
func (a *apiConn) mut() []client.RequestOption {
	if a.idemKey == "" {
		return nil
	}
	return []client.RequestOption{client.WithIdempotencyKey(a.idemKey)}
}

// run wraps the body of an API command: it connects, runs fn and turns its error into
// the exit code of the command. An error before any request was sent is local (exit 1,
// printed by main); an API error or a failed exchange is printed here and exits 2–6.
func (a *apiConn) run(fn func(ctx context.Context, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		for _, arg := range args {
			if strings.TrimSpace(arg) == "" {
				return errors.New("an empty ID argument")
			}
		}
		if err := a.connect(); err != nil {
			return err
		}
		err := fn(cmd.Context(), args)
		if err == nil {
			return nil
		}
		if client.IsNoRoute(err) {
			return wrongURL(a.c.BaseURL(), err)
		}
		code := exitCode(err, a.rec.sent())
		if code == exitLocal {
			return err
		}
		fmt.Fprintln(os.Stderr, errorText(err, a.token == ""))
		os.Exit(code)
		return nil
	}
}

// localError marks an error as the command's own (exit 1) even after requests were sent,
// such as a failure to write the output.
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

// exitCode maps an error of an API command to its exit code. sent says whether any
// request went out: a non-API error before that is local, after it a failed exchange.
func exitCode(err error, sent bool) int {
	var le localError
	if errors.As(err, &le) {
		return exitLocal
	}
	var ae *client.Error
	if errors.As(err, &ae) {
		switch s := ae.StatusCode; {
		case s == http.StatusNotFound:
			return exitNotFound
		case s == http.StatusConflict || s == http.StatusPreconditionFailed:
			return exitConflict
		case s == http.StatusUnauthorized || s == http.StatusForbidden:
			return exitAuth
		case s >= 400 && s < 500:
			return exitAPI
		default:
			return exitServer
		}
	}
	var ue *url.Error
	var ne net.Error
	if sent || errors.As(err, &ue) || errors.As(err, &ne) {
		return exitServer
	}
	return exitLocal
}

// errorText is what an API command prints on stderr for err:
// "berth: <message> (HTTP <status> <type>, request_id=<id>)", and for a 412 the lease as
// the server sees it.
func errorText(err error, noToken bool) string {
	var ae *client.Error
	if !errors.As(err, &ae) {
		return "berth: " + strings.TrimPrefix(err.Error(), "berth: ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "berth: %s (HTTP %d", ae.Message, ae.StatusCode)
	if ae.Type != "" {
		b.WriteString(" " + ae.Type)
	}
	if ae.RequestID != "" {
		b.WriteString(", request_id=" + ae.RequestID)
	}
	b.WriteString(")")
	if cs := ae.CurrentState; cs != nil {
		fmt.Fprintf(&b, "\nberth: current lease: state=%s ttl_seconds=%d last_heartbeat=%s",
			cs.State, cs.TTLSeconds, cliDash(cs.LastHeartbeat))
	}
	if noToken && ae.StatusCode == http.StatusUnauthorized {
		b.WriteString("\nberth: no token was sent: give --token or set BERTH_TOKEN")
	}
	return b.String()
}

// recorder is the client's transport: it keeps the body of the last answer, so that
// --json prints the API's bytes as they were sent, and counts the requests.
type recorder struct {
	base http.RoundTripper

	mu   sync.Mutex
	n    int    // requests sent
	last []byte // body of the last answer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	r.mu.Lock()
	r.last = b
	r.mu.Unlock()
	return resp, nil
}

// sent reports whether any request went out.
func (r *recorder) sent() bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n > 0
}

// body returns the body of the last answer, trimmed.
func (r *recorder) body() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.TrimSpace(r.last)
}

// out prints the answer just received: its JSON with --json, else the table that table
// writes.
func (a *apiConn) out(table func(w io.Writer)) error {
	if a.asJSON {
		return a.printJSON(a.rec.body())
	}
	return writeTable(table)
}

func (a *apiConn) printJSON(b []byte) error {
	if len(b) == 0 {
		b = []byte("null")
	}
	if _, err := os.Stdout.Write(append(bytes.Clone(b), '\n')); err != nil {
		return localError{err}
	}
	return nil
}

// writeTable runs table on a tabwriter over stdout.
func writeTable(table func(w io.Writer)) error {
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	table(tw)
	if err := tw.Flush(); err != nil {
		return localError{err}
	}
	return nil
}

// row writes one table row; cells are made safe for the tabwriter and empty ones shown
// as "-", so that every row has every column.
func tableRow(w io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = cliDash(tableCell(c))
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

func tableHeader(w io.Writer, cols ...string) { fmt.Fprintln(w, strings.Join(cols, "\t")) }

// cell flattens tabs and line breaks, which would break the table.
func tableCell(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func cliDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ts formats a timestamp for a table: RFC 3339 UTC to the second.
func cliTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func cliTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return cliTime(*t)
}

// metadataCell shows metadata as k=v,k=v in key order.
func metadataCell(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// listFlags are the pagination flags of every list command.
type listFlags struct {
	limit                   int
	page, beforeID, afterID string
	all                     bool
}

func (l *listFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&l.limit, "limit", 0, "items per page, 1–100 (default 20)")
	f.StringVar(&l.page, "page", "", "the next_page cursor of an earlier answer")
	f.StringVar(&l.beforeID, "before-id", "", "the items just before this ID")
	f.StringVar(&l.afterID, "after-id", "", "the items just after this ID")
	f.BoolVar(&l.all, "all", false, "follow next_page to the end (--json: one array of every item)")
}

func (l *listFlags) params() (client.ListParams, error) {
	n := 0
	for _, s := range []string{l.page, l.beforeID, l.afterID} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return client.ListParams{}, errors.New("give at most one of --page, --before-id and --after-id")
	}
	if l.all && l.beforeID != "" {
		return client.ListParams{}, errors.New("--all follows pages forward: it does not combine with --before-id")
	}
	return client.ListParams{Limit: l.limit, Page: l.page, BeforeID: l.beforeID, AfterID: l.afterID}, nil
}

// list reads one page, or with --all every page from there on, and prints it: the page
// object (or with --all an array of every item) with --json, else a table of header and
// one row per item, with a hint on stderr when more pages exist.
func cliList[T any](ctx context.Context, a *apiConn, l *listFlags, cols []string, rowOf func(T) []string,
	fetch func(context.Context, client.ListParams) (*client.Page[T], error)) error {
	p, err := l.params()
	if err != nil {
		return err
	}
	var items []T
	var raws []json.RawMessage
	var page *client.Page[T]
	var last []byte
	for {
		page, err = fetch(ctx, p)
		if err != nil {
			return err
		}
		items = append(items, page.Data...)
		last = a.rec.body()
		if l.all && a.asJSON {
			var data struct {
				Data []json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(last, &data); err != nil {
				return fmt.Errorf("decode page: %w", err)
			}
			raws = append(raws, data.Data...)
		}
		if !l.all || !page.HasMore || page.NextPage == "" {
			break
		}
		if page.NextPage == p.Page {
			return fmt.Errorf("next_page %q repeats the page just read", page.NextPage)
		}
		p = client.ListParams{Limit: p.Limit, Page: page.NextPage}
	}
	if a.asJSON {
		if !l.all {
			return a.printJSON(last)
		}
		if raws == nil {
			raws = []json.RawMessage{}
		}
		b, err := json.Marshal(raws)
		if err != nil {
			return localError{err}
		}
		return a.printJSON(b)
	}
	err = writeTable(func(w io.Writer) {
		tableHeader(w, cols...)
		for _, it := range items {
			tableRow(w, rowOf(it)...)
		}
	})
	if err == nil && !l.all && page.HasMore {
		if p.BeforeID != "" {
			fmt.Fprintf(os.Stderr, "berth: more before: --before-id %s\n", page.FirstID)
		} else if page.NextPage != "" {
			fmt.Fprintf(os.Stderr, "berth: more: --page %s (or --all)\n", page.NextPage)
		}
	}
	return err
}

// metadataFlags are --metadata key=value (repeatable) and, on updates, --unset key.
type metadataFlags struct {
	set   []string
	unset []string
}

func (m *metadataFlags) add(cmd *cobra.Command, update bool) {
	if update {
		cmd.Flags().StringArrayVar(&m.set, "metadata", nil, "merge key=value into the metadata; key= deletes the key (repeatable)")
		cmd.Flags().StringArrayVar(&m.unset, "unset", nil, "delete this metadata key (repeatable)")
	} else {
		cmd.Flags().StringArrayVar(&m.set, "metadata", nil, "metadata key=value (repeatable)")
	}
}

// create returns the metadata of a create, nil when none was given.
func (m *metadataFlags) create() (map[string]string, error) {
	if len(m.set) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range m.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--metadata %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// patch returns the metadata merge of an update: key=value upserts, key= and --unset key
// delete (nil). nil when neither flag was given.
func (m *metadataFlags) patch() (map[string]*string, error) {
	if len(m.set) == 0 && len(m.unset) == 0 {
		return nil, nil
	}
	out := map[string]*string{}
	for _, kv := range m.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--metadata %q: want key=value, or key= to delete", kv)
		}
		if v == "" {
			out[k] = nil
		} else {
			out[k] = client.String(v)
		}
	}
	for _, k := range m.unset {
		if k == "" {
			return nil, errors.New("--unset needs a key")
		}
		out[k] = nil
	}
	return out, nil
}

// eventsValue collects --message and --event flags into one list, in command-line order.
type eventsValue struct {
	events  *[]any
	message bool // --message TEXT rather than --event JSON
}

func (v eventsValue) String() string { return "" }

func (v eventsValue) Type() string {
	if v.message {
		return "text"
	}
	return "json"
}

func (v eventsValue) Set(s string) error {
	if v.message {
		*v.events = append(*v.events, client.UserMessage(s))
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return errors.New(`want a JSON object such as {"type":"user.interrupt"}`)
	}
	if _, ok := obj["type"]; !ok {
		return errors.New(`the event has no "type"`)
	}
	*v.events = append(*v.events, json.RawMessage(s))
	return nil
}

// addEventFlags adds --message and --event, both appending to events in order.
func addEventFlags(cmd *cobra.Command, events *[]any, what string) {
	cmd.Flags().Var(eventsValue{events: events, message: true}, "message", "a user.message event with this text "+what+" (repeatable)")
	cmd.Flags().Var(eventsValue{events: events}, "event", "an event as a JSON object with a \"type\" "+what+" (repeatable; kept in order with --message)")
}

// completeIDs completes an ID argument from a list the server gives (the first 500
// items), with the item's name as its description. It fails quietly: no server, no
// completions.
func completeIDs(a *apiConn, n int, ids func(ctx context.Context, c *client.Client, cmd *cobra.Command, yield func(id, desc string) bool) error) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if err := a.connect(client.WithMaxRetries(0)); err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var out []cobra.Completion
		count := 0
		ids(ctx, a.c, cmd, func(id, desc string) bool {
			count++
			if strings.HasPrefix(id, toComplete) {
				out = append(out, cobra.CompletionWithDesc(id, tableCell(desc)))
			}
			return count < 500
		})
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
