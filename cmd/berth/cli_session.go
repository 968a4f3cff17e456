package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-sh/berth/client"
)

func sessionCmd() *cobra.Command {
	a := &apiConn{}
	cmd := &cobra.Command{
		Use:     "session",
		Aliases: []string{"sessions"},
		Short:   "Create, list, read, update, archive, cancel and delete sessions; send and list events (API)",
		Long: `Manage sessions over the API. A session created in a self_hosted environment queues one
work item; a user.message sent to a session without live work queues a new one.` + groupLong,
		Example: `  SESSION=$(berth session create -e env_… --agent agent_demo --message 'hello' --json | jq -r .id)
  berth session events "$SESSION"
  berth session cancel "$SESSION"`,
	}
	a.addConnFlags(cmd, envDefault("BERTH_URL", client.DefaultBaseURL), urlHelp, true)
	cmd.AddCommand(sessionCreateCmd(a), sessionListCmd(a), sessionGetCmd(a), sessionUpdateCmd(a),
		sessionArchiveCmd(a), sessionCancelCmd(a), sessionDeleteCmd(a), sessionEventsCmd(a), sessionSendCmd(a))
	return cmd
}

var sessionCols = []string{"ID", "ENVIRONMENT", "AGENT", "STATUS", "TITLE", "ARCHIVED", "CREATED", "METADATA"}

func sessionRow(s client.Session) []string {
	return []string{s.ID, s.EnvironmentID, agentID(s.Agent), s.Status, s.Title, cliTimePtr(s.ArchivedAt), cliTime(s.CreatedAt), metadataCell(s.Metadata)}
}

func sessionTable(s *client.Session) func(io.Writer) {
	return func(w io.Writer) {
		tableHeader(w, sessionCols...)
		tableRow(w, sessionRow(*s)...)
	}
}

// agentID is the agent's id: the string itself, or the object's "id".
func agentID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		ID string `json:"id"`
	}
	json.Unmarshal(raw, &obj)
	return obj.ID
}

var eventCols = []string{"ID", "TYPE", "CREATED", "TEXT"}

func eventRow(e client.Event) []string {
	return []string{e.ID, e.Type, cliTime(e.CreatedAt), eventText(e.Raw)}
}

// eventText is the text of an event's content (a string, or the text blocks of an
// array), shortened for a table.
func eventText(raw json.RawMessage) string {
	var ev struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &ev) != nil || len(ev.Content) == 0 {
		return ""
	}
	var text string
	if json.Unmarshal(ev.Content, &text) != nil {
		var blocks []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		json.Unmarshal(ev.Content, &blocks)
		var parts []string
		for _, b := range blocks {
			if b.Type == "text" {
				parts = append(parts, b.Text)
			}
		}
		text = strings.Join(parts, " ")
	}
	if r := []rune(tableCell(text)); len(r) > 60 {
		text = string(r[:59]) + "…"
	}
	return text
}

// completeSessions completes session IDs, with their titles.
func completeSessions(a *apiConn) cobra.CompletionFunc {
	return completeIDs(a, 1, func(ctx context.Context, c *client.Client, _ *cobra.Command, yield func(id, desc string) bool) error {
		for s, err := range c.AllSessions(ctx, client.ListSessionsParams{ListParams: client.ListParams{Limit: 100}, IncludeArchived: true}) {
			if err != nil || !yield(s.ID, s.Title) {
				return err
			}
		}
		return nil
	})
}

// environmentFlag adds --environment/-e, defaulting to BERTH_ENVIRONMENT_ID.
func environmentFlag(f interface {
	StringVarP(p *string, name, shorthand, value, usage string)
}, p *string, usage string) {
	f.StringVarP(p, "environment", "e", os.Getenv("BERTH_ENVIRONMENT_ID"), usage+" (BERTH_ENVIRONMENT_ID)")
}

func sessionCreateCmd(a *apiConn) *cobra.Command {
	var p client.CreateSessionParams
	var agent string
	var md metadataFlags
	var events []any
	cmd := &cobra.Command{
		Use:   "create --environment ENV_ID --agent AGENT",
		Short: "Create a session; in a self_hosted environment it queues a work item",
		Long: `Create a session. --agent is an agent ID, or an agent object as JSON ({"id":…}); berth
stores it without resolving it. --message and --event give the initial events, in order.`,
		Example: `  berth session create -e env_… --agent agent_demo
  berth session create -e env_… --agent agent_demo --title 'fix the build' --metadata repo=berth \
    --message 'the build is red, please fix it'
  berth session create -e env_… --agent '{"id":"agent_demo","version":3}' --json`,
		Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if p.EnvironmentID == "" {
				return errors.New("--environment (or BERTH_ENVIRONMENT_ID) is required")
			}
			switch {
			case agent == "":
				return errors.New("--agent is required")
			case strings.HasPrefix(strings.TrimSpace(agent), "{"):
				if !json.Valid([]byte(agent)) {
					return errors.New("--agent: not valid JSON")
				}
				p.Agent = json.RawMessage(agent)
			default:
				p.Agent = agent
			}
			var err error
			if p.Metadata, err = md.create(); err != nil {
				return err
			}
			p.InitialEvents = events
			s, err := a.c.CreateSession(ctx, p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(sessionTable(s))
		}),
	}
	f := cmd.Flags()
	environmentFlag(f, &p.EnvironmentID, "the session's environment (required)")
	f.StringVar(&agent, "agent", "", "agent ID, or agent object as JSON (required)")
	f.StringVar(&p.Title, "title", "", "a title")
	md.add(cmd, false)
	addEventFlags(cmd, &events, "among the initial events")
	return cmd
}

func sessionListCmd(a *apiConn) *cobra.Command {
	var l listFlags
	var p client.ListSessionsParams
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List sessions, oldest first",
		Example: `  berth session list
  berth session list -e env_… --all
  berth session list --include-archived --all --json | jq -r '.[] | select(.status == "running") | .id'`,
		Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, _ []string) error {
			return cliList(ctx, a, &l, sessionCols, sessionRow, func(ctx context.Context, lp client.ListParams) (*client.Page[client.Session], error) {
				q := p
				q.ListParams = lp
				return a.c.ListSessions(ctx, q)
			})
		}),
	}
	l.add(cmd)
	environmentFlag(cmd.Flags(), &p.EnvironmentID, "only the sessions of this environment")
	cmd.Flags().BoolVar(&p.IncludeArchived, "include-archived", false, "list archived sessions too")
	return cmd
}

func sessionGetCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:               "get SESSION_ID",
		Short:             "Show a session",
		Example:           `  berth session get sess_019f3be4fd2475d9a784bf2c739e1194 --json | jq -r .status`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			s, err := a.c.GetSession(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(sessionTable(s))
		}),
	}
}

func sessionUpdateCmd(a *apiConn) *cobra.Command {
	var title string
	var md metadataFlags
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "update SESSION_ID",
		Short: "Change a session's title or metadata (its work items keep theirs)",
		Long: `Change the title and merge metadata: --metadata key=value sets a key, --metadata key= or
--unset key deletes it, other keys stay. Existing work items keep their metadata.`,
		Example: `  berth session update sess_… --title 'fix the build (urgent)'
  berth session update sess_… --metadata priority=high --unset draft`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			var p client.UpdateSessionParams
			var err error
			if cmd.Flags().Changed("title") {
				p.Title = &title
			}
			if p.Metadata, err = md.patch(); err != nil {
				return err
			}
			if p.Title == nil && p.Metadata == nil {
				return errors.New("nothing to change: give --title, --metadata or --unset")
			}
			s, err := a.c.UpdateSession(ctx, args[0], p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(sessionTable(s))
		}),
	}
	cmd.Flags().StringVar(&title, "title", "", "new title")
	md.add(cmd, true)
	return cmd
}

func sessionArchiveCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:               "archive SESSION_ID",
		Short:             "Archive a session (its live work is left alone)",
		Example:           `  berth session archive sess_…`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			s, err := a.c.ArchiveSession(ctx, args[0], a.mut()...)
			if err != nil {
				return err
			}
			return a.out(sessionTable(s))
		}),
	}
}

func sessionCancelCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel SESSION_ID",
		Short: "Interrupt a session: ask its live work item to stop gracefully",
		Long: `Interrupt a session: a graceful stop is requested on its live work item (its worker
drains, then stops it). The LIVE_WORK column says whether there was one to stop.`,
		Example:           `  berth session cancel sess_…`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			sc, err := a.c.CancelSession(ctx, args[0], a.mut()...)
			if err != nil {
				return err
			}
			live := "none"
			if sc.Accepted {
				live = "stop requested"
			}
			return a.out(func(w io.Writer) {
				tableHeader(w, "ID", "STATUS", "LIVE_WORK")
				tableRow(w, sc.ID, sc.Status, live)
			})
		}),
	}
}

func sessionDeleteCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:               "delete SESSION_ID",
		Short:             "Delete a session; its live work items are force-stopped",
		Example:           `  berth session delete sess_…`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			d, err := a.c.DeleteSession(ctx, args[0], a.mut()...)
			if err != nil {
				return err
			}
			return a.out(deletedTable(d))
		}),
	}
}

func sessionEventsCmd(a *apiConn) *cobra.Command {
	var l listFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "events SESSION_ID [--follow]",
		Short: "List a session's events, oldest first; --follow prints the history, then new events as they come",
		Long: `List a session's event history, oldest first, one page (--all: every page).

--follow (-f) prints the whole history (or, with --after-id, every event after that
one), then each new event as it is committed, like kubectl logs -f, over the event
stream (GET /sessions/{id}/events/stream): it reconnects by itself after a dropped
connection, with no gap and no duplicate, and ends (exit 0) after the session.deleted
event. With --json it prints one event object per line (JSON Lines), else one table row
per event. Reconnections are reported on stderr.`,
		Example: `  berth session events sess_…
  berth session events sess_… --all --json | jq -c '.[] | {type, content}'
  berth session events sess_… --follow
  berth session events sess_… -f --after-id evt_… --json | jq -c 'select(.type == "agent.tool_use")'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			if follow {
				return followEvents(ctx, a, &l, args[0])
			}
			return cliList(ctx, a, &l, eventCols, eventRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.Event], error) {
				return a.c.ListEvents(ctx, args[0], client.ListEventsParams{ListParams: p})
			})
		}),
	}
	l.add(cmd)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "print the history, then each new event as it comes, until the session is deleted")
	// --after is the name kubectl-like habits reach for; it is --after-id.
	cmd.Flags().SetNormalizeFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "after" {
			name = "after-id"
		}
		return pflag.NormalizedName(name)
	})
	return cmd
}

// followEvents prints a session's events from the start (or after --after-id), then
// live, until the session is deleted.
func followEvents(ctx context.Context, a *apiConn, l *listFlags, sessionID string) error {
	if l.page != "" || l.beforeID != "" || l.all || l.limit != 0 {
		return errors.New("--follow prints every event: it takes --after-id, not --limit, --page, --before-id or --all")
	}
	out := bufio.NewWriter(os.Stdout)
	header := !a.asJSON
	p := client.StreamEventsParams{
		LastEventID: l.afterID,
		History:     l.afterID == "",
		OnConnect: func() {
			// Once the server has taken the request: a refusal prints nothing on stdout.
			if header {
				fmt.Fprintf(out, eventLineFormat, "ID", "TYPE", "CREATED", "TEXT")
				out.Flush()
				header = false
			}
		},
		OnReconnect: func(err error, wait time.Duration) {
			fmt.Fprintf(os.Stderr, "berth: event stream interrupted (%s); reconnecting in %v\n",
				strings.TrimPrefix(err.Error(), "berth: "), wait.Round(time.Millisecond))
		},
	}
	for e, err := range a.c.StreamEvents(ctx, sessionID, p) {
		if err != nil {
			return err
		}
		if a.asJSON {
			out.Write(e.Raw)
			out.WriteByte('\n')
		} else {
			r := eventRow(e)
			for i := range r {
				r[i] = cliDash(tableCell(r[i]))
			}
			fmt.Fprintf(out, eventLineFormat, r[0], r[1], r[2], r[3])
		}
		if err := out.Flush(); err != nil {
			return localError{err}
		}
	}
	return nil
}

// eventLineFormat is a row of --follow's table: fixed widths, since rows are printed as
// they come rather than aligned together (an event ID is 36 characters).
const eventLineFormat = "%-36s  %-26s  %-20s  %s\n"

func sessionSendCmd(a *apiConn) *cobra.Command {
	var events []any
	var one oneEvent
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "send SESSION_ID (--type TYPE [--text TEXT] [--body JSON] [--tool-use-id ID] | (--message TEXT | --event JSON)...)",
		Short: "Send events to a session (a user.message wakes a dormant one)",
		Long: `Append events to a session and print them as stored.

One event by its parts: --type TYPE, with --text TEXT (its content: one text block),
--body JSON (an object whose fields go into the event, such as the name and input of an
agent.tool_use) and --tool-use-id ID (the tool_use_id of a user.tool_result, the
custom_tool_use_id of a user.custom_tool_result: the id of the event it answers).

Or several, in the order given: --message TEXT is a user.message with one text block,
--event JSON any event object with a "type".

Admin and member tokens may send user.message, user.interrupt, user.tool_confirmation,
user.tool_result, user.custom_tool_result, user.define_outcome and system.message, and
the agent's side: agent.message, agent.tool_use and agent.custom_tool_use. Worker
tokens may send user.tool_result, user.custom_tool_result and user.message. A
user.message to a session with no live work queues a new work item.`,
		Example: `  berth session send sess_… --message 'also run the linter'
  berth session send sess_… --event '{"type":"user.interrupt"}' --message 'stop that, do this instead'
  berth session send sess_… --type agent.tool_use --body '{"name":"bash","input":{"command":"ls"}}'
  berth session send "$BERTH_SESSION_ID" --type user.tool_result --tool-use-id evt_… --text 'README.md go.mod'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			ev, err := one.event(cmd)
			switch {
			case err != nil:
				return err
			case ev != nil && len(events) > 0:
				return errors.New("give either --type (one event) or --message and --event, not both")
			case ev != nil:
				events = []any{ev}
			case len(events) == 0:
				return errors.New("nothing to send: give --type, --message or --event")
			}
			evs, err := a.c.SendEvents(ctx, args[0], events, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(func(w io.Writer) {
				tableHeader(w, eventCols...)
				for _, e := range evs {
					tableRow(w, eventRow(e)...)
				}
			})
		}),
	}
	addEventFlags(cmd, &events, "to send")
	f := cmd.Flags()
	f.StringVar(&one.typ, "type", "", "the type of the one event to send (with --text, --body, --tool-use-id)")
	f.StringVar(&one.text, "text", "", "with --type: the event's content, one text block")
	f.StringVar(&one.body, "body", "", "with --type: a JSON object of the event's other fields")
	f.StringVar(&one.toolUseID, "tool-use-id", "", "with --type user.tool_result (or user.custom_tool_result): the id of the tool use it answers")
	return cmd
}

// oneEvent is an event given by its parts: send's --type, --text, --body, --tool-use-id.
type oneEvent struct {
	typ, text, body, toolUseID string
}

// event builds the event, nil when no part was given.
func (o *oneEvent) event(cmd *cobra.Command) (map[string]any, error) {
	f := cmd.Flags()
	if !f.Changed("type") {
		for _, name := range []string{"text", "body", "tool-use-id"} {
			if f.Changed(name) {
				return nil, fmt.Errorf("--%s needs --type", name)
			}
		}
		return nil, nil
	}
	if o.typ == "" {
		return nil, errors.New("--type is empty")
	}
	ev := map[string]any{}
	if f.Changed("body") {
		if err := json.Unmarshal([]byte(o.body), &ev); err != nil || ev == nil {
			return nil, errors.New(`--body: want a JSON object such as {"name":"bash","input":{}}`)
		}
		if t, ok := ev["type"]; ok && t != o.typ {
			return nil, fmt.Errorf("--body has type %v, --type %s", t, o.typ)
		}
	}
	ev["type"] = o.typ
	if f.Changed("text") {
		if _, ok := ev["content"]; ok {
			return nil, errors.New("--text and a content in --body: give one")
		}
		ev["content"] = []map[string]string{{"type": "text", "text": o.text}}
	}
	if f.Changed("tool-use-id") {
		key := "tool_use_id"
		if o.typ == "user.custom_tool_result" {
			key = "custom_tool_use_id"
		}
		ev[key] = o.toolUseID
	}
	return ev, nil
}
