// Command berth is the berth server and its operator tools, one binary:
//
//	berth serve         run the server (embedded SQLite store by default)
//	berth worker        run a command for each work item of an environment
//	berth env|session|work …  call the API (--url, --token)
//	berth token …       manage API tokens through the API (--url) or in the database
//	berth migrate       apply database migrations
//	berth bench …       measure berth
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
		Use:   "berth",
		Short: "A self-hosted work queue for agent sessions",
		Long: `berth serves the self-hosted Environment work API: sessions become work items that
workers poll, acknowledge, hold a lease on with heartbeats, and stop.

Exit codes: 0 ok; 1 usage or local error; 2 API 4xx; 3 not found (404);
4 conflict (409/412); 5 auth (401/403); 6 server or network error (see
'berth help exit-codes').`,
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
