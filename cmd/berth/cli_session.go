package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

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
	cmd := &cobra.Command{
		Use:   "events SESSION_ID",
		Short: "List a session's events, oldest first",
		Example: `  berth session events sess_…
  berth session events sess_… --all --json | jq -c '.[] | {type, content}'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			return cliList(ctx, a, &l, eventCols, eventRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.Event], error) {
				return a.c.ListEvents(ctx, args[0], client.ListEventsParams{ListParams: p})
			})
		}),
	}
	l.add(cmd)
	return cmd
}

func sessionSendCmd(a *apiConn) *cobra.Command {
	var events []any
	cmd := &cobra.Command{
		Use:   "send SESSION_ID (--message TEXT | --event JSON)...",
		Short: "Send events to a session (a user.message wakes a dormant one)",
		Long: `Append events to a session, in the order given: --message TEXT is a user.message with
one text block, --event JSON any event object with a "type" (user.message,
user.interrupt, user.tool_confirmation, user.tool_result, user.custom_tool_result,
user.define_outcome, system.message). A user.message to a session with no live work
queues a new work item. Prints the events as stored.`,
		Example: `  berth session send sess_… --message 'also run the linter'
  berth session send sess_… --event '{"type":"user.interrupt"}' --message 'stop that, do this instead'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeSessions(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			if len(events) == 0 {
				return errors.New("nothing to send: give --message or --event")
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
	return cmd
}
