package main

import (
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
)

// tokenCmd manages tokens offline, directly in the database of --data-dir; it works
// whether or not a server is running on it.
func tokenCmd() *cobra.Command {
	var dataDir, databaseURL string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens in the database",
		Long:  "Create, list and revoke API tokens directly in the database (--data-dir, or --database-url for PostgreSQL), with or without a running server.",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", envDefault("BERTH_DATA_DIR", "./berth-data"), "directory of the database (BERTH_DATA_DIR)")
	cmd.PersistentFlags().StringVar(&databaseURL, "database-url", os.Getenv("BERTH_DATABASE_URL"), "PostgreSQL database instead of the embedded one (BERTH_DATABASE_URL)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")

	var name, role, envID string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret (shown this once)",
		Example: `  berth token create --name ci --role member
  berth token create --name worker-1 --role worker --environment-id env_…`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if role != api.RoleAdmin && role != api.RoleMember && role != api.RoleWorker {
				return fmt.Errorf("--role must be admin, member or worker")
			}
			if (role == api.RoleWorker) != (envID != "") {
				return fmt.Errorf("--environment-id is required for worker tokens and only for them")
			}
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			st, err := openStore(cmd.Context(), dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			if envID != "" {
				if _, err := st.GetEnvironment(cmd.Context(), envID); err != nil {
					return fmt.Errorf("environment %s: %w", envID, err)
				}
			}
			tok, secret := api.NewToken(name, role, envID, time.Now())
			if err := st.CreateToken(cmd.Context(), tok); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(map[string]any{"id": tok.ID, "name": tok.Name, "role": tok.Role, "environment_id": tok.EnvironmentID, "secret": secret})
			}
			fmt.Fprintf(os.Stderr, "created %s (%s); its secret, shown this once:\n", tok.ID, tok.Role)
			fmt.Println(secret)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "a name for the token")
	create.Flags().StringVar(&role, "role", "member", "admin, member or worker")
	create.Flags().StringVar(&envID, "environment-id", "", "the environment a worker token is bound to")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openStore(cmd.Context(), dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			var all []store.Token
			p := store.Page{Limit: 100}
			for {
				toks, more, err := st.ListTokens(cmd.Context(), p)
				if err != nil {
					return err
				}
				all = append(all, toks...)
				if !more {
					break
				}
				p.AfterID = toks[len(toks)-1].ID
			}
			if asJSON {
				return json.NewEncoder(os.Stdout).Encode(all)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tROLE\tENVIRONMENT\tCREATED\tREVOKED")
			for _, t := range all {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, dash(t.EnvironmentID),
					t.CreatedAt.Format(time.RFC3339), dashTime(t.RevokedAt))
			}
			return w.Flush()
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token; it fails from the next request on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !id.Valid(id.Token, args[0]) {
				return fmt.Errorf("%q is not a token ID (tok_…)", args[0])
			}
			st, err := openStore(cmd.Context(), dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			t, err := st.RevokeToken(cmd.Context(), args[0], time.Now())
			if err != nil {
				return err
			}
			fmt.Printf("revoked %s at %s\n", t.ID, t.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func dashTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}
