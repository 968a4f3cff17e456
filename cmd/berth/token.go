package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/store/sqlite"
	"github.com/berth-sh/berth/internal/work"
)

// tokenCmd manages tokens over the API when given a server (--url or BERTH_URL), else
// offline, directly in the database of --data-dir; offline it works whether or not a
// server is running on it. tokenViaAPI (cli_token.go) makes the choice.
func tokenCmd() *cobra.Command {
	var dataDir, databaseURL string
	a := &apiConn{}
	asJSON := &a.asJSON
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens (over the API with --url, else in the database)",
		Long:  tokenLong,
		Example: `  berth token create --name ci --role member                      # in ./berth-data
  berth token list --url http://127.0.0.1:8080 --token "$(cat berth-data/admin-token)"
  BERTH_URL=https://berth.example.com berth token revoke tok_…     # over the API`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", envDefault("BERTH_DATA_DIR", "./berth-data"), "directory of the database (BERTH_DATA_DIR)")
	cmd.PersistentFlags().StringVar(&databaseURL, "database-url", "", secretUsage("PostgreSQL database instead of the embedded one", "BERTH_DATABASE_URL"))
	cmd.PersistentFlags().BoolVar(asJSON, "json", false, "print the API's JSON (the same on the database) instead of a table")
	a.addConnFlags(cmd, os.Getenv("BERTH_URL"), "call the API at this base URL (a bare http://host:port gets /api/v1/cloud) instead of working on the database (BERTH_URL)", false)

	var name, role, envID string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a token and print its secret (shown this once)",
		Example: `  berth token create --name ci --role member
  berth token create --name worker-1 --role worker --environment-id env_… > worker-token
  berth token create --url http://127.0.0.1:8080 --token "$ADMIN" --name ci --role member --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if role != api.RoleAdmin && role != api.RoleMember && role != api.RoleWorker {
				return fmt.Errorf("--role must be admin, member or worker")
			}
			if (role == api.RoleWorker) != (envID != "") {
				return fmt.Errorf("--environment-id is required for worker tokens and only for them")
			}
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			viaAPI, err := tokenViaAPI(cmd, a)
			if err != nil {
				return err
			}
			if viaAPI {
				return a.run(func(ctx context.Context, _ []string) error {
					return apiTokenCreate(ctx, a, client.CreateTokenParams{Name: name, Role: role, EnvironmentID: envID})
				})(cmd, args)
			}
			st, err := openTokenStore(cmd, dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			if envID != "" {
				if _, err := st.GetEnvironment(cmd.Context(), envID); err != nil {
					return fmt.Errorf("environment %s: %w", envID, err)
				}
			}
			tok, secret := api.NewToken(name, role, envID, work.Timestamp(time.Now()))
			tok, err = st.CreateToken(cmd.Context(), tok)
			if err != nil {
				return err
			}
			if *asJSON {
				return printAPIJSON(api.TokenJSON(tok, secret))
			}
			fmt.Fprintf(os.Stderr, "created %s (%s); its secret, shown this once:\n", tok.ID, tok.Role)
			fmt.Println(secret)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "a name for the token")
	create.Flags().StringVar(&role, "role", "member", "admin, member or worker")
	create.Flags().StringVar(&envID, "environment-id", "", "the environment a worker token is bound to")

	var l listFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Long: `List tokens, never their secrets. On the database it lists every token; over the API one
page (--limit, --page, --before-id, --after-id), or every page with --all.`,
		Example: `  berth token list
  berth token list --url http://127.0.0.1:8080 --all --json | jq -r '.[] | select(.revoked_at == null) | .id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			viaAPI, err := tokenViaAPI(cmd, a)
			if err != nil {
				return err
			}
			if viaAPI {
				return a.run(func(ctx context.Context, _ []string) error { return apiTokenList(ctx, a, &l) })(cmd, args)
			}
			for _, f := range []string{"limit", "page", "before-id", "after-id"} {
				if cmd.Flag(f).Changed {
					return fmt.Errorf("--%s pages over the API (--url); on the database token list lists every token", f)
				}
			}
			st, err := openTokenStore(cmd, dataDir, databaseURL)
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
			// One page of every token, as GET /tokens would answer it: the API's own
			// encoding, so that both ways print the same.
			b, err := api.TokenListJSON(all, false, store.Page{Limit: max(len(all), 1)})
			if err != nil {
				return err
			}
			var page struct {
				Data []json.RawMessage `json:"data"`
			}
			var toks client.Page[client.Token]
			if err := json.Unmarshal(b, &page); err != nil {
				return err
			}
			if err := json.Unmarshal(b, &toks); err != nil {
				return err
			}
			switch {
			case *asJSON && l.all:
				return printAPIJSON(json.Marshal(page.Data)) // as --all over the API: an array
			case *asJSON:
				return printAPIJSON(b, nil)
			}
			return writeTable(func(w io.Writer) {
				tableHeader(w, tokenCols...)
				for _, t := range toks.Data {
					tableRow(w, tokenRow(t)...)
				}
			})
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a token; it fails from the next request on",
		Example: `  berth token revoke tok_019f3be4fd2475d9a784bf2c739e1194
  berth token revoke tok_… --url http://127.0.0.1:8080 --token "$ADMIN"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeTokens(a),
		RunE: func(cmd *cobra.Command, args []string) error {
			viaAPI, err := tokenViaAPI(cmd, a)
			if err != nil {
				return err
			}
			if viaAPI {
				return a.run(func(ctx context.Context, args []string) error { return apiTokenRevoke(ctx, a, args[0]) })(cmd, args)
			}
			if !id.Valid(id.Token, args[0]) {
				return fmt.Errorf("%q is not a token ID (tok_…)", args[0])
			}
			st, err := openTokenStore(cmd, dataDir, databaseURL)
			if err != nil {
				return err
			}
			defer st.Close()
			t, err := st.RevokeToken(cmd.Context(), args[0], work.Timestamp(time.Now()))
			if err != nil {
				return err
			}
			if *asJSON {
				return printAPIJSON(api.TokenJSON(t, ""))
			}
			fmt.Printf("revoked %s at %s\n", t.ID, t.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	l.add(list)
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// printAPIJSON prints JSON made by the API's encoders, on one line.
func printAPIJSON(b []byte, err error) error {
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// openTokenStore opens the database of a token command, which must exist already: run
// in the wrong directory (or with a mistyped --data-dir), berth token would otherwise
// create a new, empty database there, list nothing and make tokens no server ever sees.
// PostgreSQL (--database-url) is opened as it is.
func openTokenStore(cmd *cobra.Command, dataDir, databaseURL string) (store.Store, error) {
	databaseURL = secretFromEnv(cmd, "database-url", "BERTH_DATABASE_URL", databaseURL)
	if databaseURL == "" {
		path := filepath.Join(dataDir, sqlite.FileName)
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
		if _, err := os.Stat(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("no database at %s: berth token works on an existing database and does not create one. "+
					"Give --data-dir (BERTH_DATA_DIR) the server's data directory, --database-url its PostgreSQL database, "+
					"or --url (BERTH_URL) and an admin --token to go through its API", path)
			}
			return nil, fmt.Errorf("database %s: %w", path, err)
		}
	}
	return openStore(cmd.Context(), dataDir, databaseURL)
}
