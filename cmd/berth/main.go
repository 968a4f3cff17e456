// Command berth is the berth server and its operator tools, one binary:
//
//	berth serve         run the server (embedded SQLite store by default)
//	berth worker        run a command for each work item of an environment
//	berth token …       manage API tokens directly in the database
//	berth migrate       apply database migrations
//
// Every flag can also be set by the environment variable named in its help.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth",
		Short:         "A self-hosted work queue for agent sessions",
		Long:          "berth serves the self-hosted Environment work API: sessions become work items that workers poll, acknowledge, hold a lease on with heartbeats, and stop.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), workerCmd(), tokenCmd(), migrateCmd(), benchCmd())
	root.AddCommand(apiCommands()...)
	return root
}

// envDefault returns the environment variable's value, or def when it is unset or empty.
func envDefault(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
