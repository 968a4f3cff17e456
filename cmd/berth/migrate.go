package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// migrate applies the schema migrations that the database lacks. The server applies them
// at start too; running them first lets a deployment upgrade the schema once, before it
// rolls out new replicas. Safe to run while replicas start: PostgreSQL migrations run
// under an advisory lock.
func migrateCmd() *cobra.Command {
	var dataDir, databaseURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending database migrations and print the schema version",
		Long: `Apply the schema migrations that the database lacks and print the schema version.
The server applies them when it starts too. On the embedded store this creates
<data-dir>/berth.db when it does not exist yet (berth token never does).`,
		Example: `  berth migrate --database-url postgres://berth@db/berth
  berth migrate --data-dir /var/lib/berth`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			databaseURL = secretFromEnv(cmd, "database-url", "BERTH_DATABASE_URL", databaseURL)
			st, err := openStore(cmd.Context(), dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			v, err := st.(interface {
				SchemaVersion(context.Context) (int, error)
			}).SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("schema version %d\n", v)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", envDefault("BERTH_DATA_DIR", "./berth-data"), "directory of the embedded database (BERTH_DATA_DIR)")
	cmd.Flags().StringVar(&databaseURL, "database-url", "", secretUsage("PostgreSQL database", "BERTH_DATABASE_URL"))
	return cmd
}
