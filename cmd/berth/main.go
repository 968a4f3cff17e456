// Command berth is the berth server and its operator tools, one binary:
//
//	berth serve         run the server (embedded SQLite store by default)
//	berth worker        run a command for each work item of an environment
//	berth env|session|work …  call the API (--url, --token)
//	berth token …       manage API tokens through the API (--url) or in the database
//	berth migrate       apply database migrations
//	berth bench …       measure berth
//	berth version       print the version, VCS revision, Go version and platform
//
// Every flag can also be set by the environment variable named in its help.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/buildinfo"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		// The client package's errors start with "berth: " too: say it once.
		fmt.Fprintln(os.Stderr, "berth:", strings.TrimPrefix(err.Error(), "berth: "))
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "berth",
		Short: "A self-hosted work queue for agent sessions",
		Long: `berth serves the self-hosted Environment work API: sessions become work items that
workers poll, acknowledge, hold a lease on with heartbeats, and stop.

Exit codes: 0 ok; 1 usage or local error; 2 API 4xx; 3 not found (404);
4 conflict (409/412); 5 auth (401/403); 6 server or network error (see
'berth help exit-codes').`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Get().String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(serveCmd(), workerCmd(), tokenCmd(), migrateCmd(), benchCmd(), versionCmd())
	root.AddCommand(apiCommands()...)
	// The completion command is otherwise added only when the root runs: add it now, so
	// that the walk below covers it too.
	root.InitDefaultCompletionCmd()
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group below the root (env, session, work,
// token, bench, completion) fail on an argument that is none of its subcommands: without
// this, cobra prints the group's help for "berth env gte" and exits 0, as if all went
// well. The root does this already.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if sub.HasSubCommands() && !sub.Runnable() {
			sub.Args = cobra.ArbitraryArgs
			sub.RunE = unknownSubcommand
		}
		refuseUnknownSubcommands(sub)
	}
}

// unknownSubcommand runs a command group: with no argument it prints the group's help,
// else it says that the argument is no subcommand, suggesting the nearest ones as cobra
// does for the root (exit 1, a usage error).
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // what cobra uses at the root
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t") + "\n"
	}
	return fmt.Errorf("%s\nRun '%s --help' for usage.", msg, cmd.CommandPath())
}

// secretFromEnv returns the value of a flag whose default is a secret environment variable
// (a token, a database URL with its password): the flag's value when it was given, else
// the variable's, read now. Such flags have no default of their own, so that --help,
// which prints defaults, never prints the secret; secretUsage says where it comes from.
func secretFromEnv(cmd *cobra.Command, flag, env, value string) string {
	if f := cmd.Flag(flag); f != nil && f.Changed {
		return value
	}
	return os.Getenv(env)
}

// secretUsage is the help of such a flag: usage, and whether env is set, never its value.
func secretUsage(usage, env string) string {
	state := "unset"
	if os.Getenv(env) != "" {
		state = "set, value not shown"
	}
	return fmt.Sprintf("%s (default: $%s, %s)", usage, env, state)
}

// envDefault returns the environment variable's value, or def when it is unset or empty.
func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
