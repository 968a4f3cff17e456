package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
)

const tokenLong = `Create, list and revoke API tokens, in one of two places:

  over the API   when --url is given, or else when BERTH_URL is set: POST /tokens,
                 GET /tokens and POST /tokens/{id}/revoke with an admin --token
                 (BERTH_TOKEN). Exit codes as for the other API commands (see
                 "berth help exit-codes"): 3 not found, 5 the token is not an admin's, …
  in the database otherwise (or when --data-dir or --database-url is given): the
                 database of --data-dir (BERTH_DATA_DIR, default ./berth-data, relative
                 to the current directory) or --database-url (BERTH_DATABASE_URL),
                 with or without a server running on it; no token needed. The
                 database must exist: berth token never creates one (berth migrate
                 does). Errors exit 1.

Giving --url together with --data-dir or --database-url is an error, as is --token
without a server to send it to. Both ways print the same: create prints the secret
alone on stdout (shown this once) and what it made on stderr; --json prints the API's
token objects (create: with the secret; list: the page of GET /tokens, or with --all an
array), never a secret's hash.`

// tokenViaAPI reports whether a token command calls the API rather than the database:
// an explicit --url says API, an explicit --data-dir or --database-url says database
// (both together are an error), and otherwise BERTH_URL decides.
func tokenViaAPI(cmd *cobra.Command, a *apiConn) (bool, error) {
	urlSet := cmd.Flag("url").Changed
	dbSet := cmd.Flag("data-dir").Changed || cmd.Flag("database-url").Changed
	switch {
	case urlSet && dbSet:
		return false, errors.New("--url works over the API, --data-dir and --database-url on the database: give one or the other")
	case urlSet:
		return true, nil
	case !dbSet && a.url != "":
		return true, nil // BERTH_URL
	}
	for _, f := range []string{"token", "idempotency-key"} {
		if cmd.Flag(f).Changed {
			return false, fmt.Errorf("--%s is for the API: give --url (or set BERTH_URL) too", f)
		}
	}
	return false, nil
}

var tokenCols = []string{"ID", "NAME", "ROLE", "ENVIRONMENT", "CREATED", "REVOKED"}

func tokenRow(t client.Token) []string {
	return []string{t.ID, t.Name, t.Role, t.EnvironmentID, cliTime(t.CreatedAt), cliTimePtr(t.RevokedAt)}
}

func apiTokenCreate(ctx context.Context, a *apiConn, p client.CreateTokenParams) error {
	t, err := a.c.CreateToken(ctx, p, a.mut()...)
	if err != nil {
		return err
	}
	if a.asJSON {
		return a.printJSON(a.rec.body())
	}
	fmt.Fprintf(os.Stderr, "created %s (%s); its secret, shown this once:\n", t.ID, t.Role)
	if _, err := fmt.Println(t.Secret); err != nil {
		return localError{err}
	}
	return nil
}

func apiTokenList(ctx context.Context, a *apiConn, l *listFlags) error {
	return cliList(ctx, a, l, tokenCols, tokenRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.Token], error) {
		return a.c.ListTokens(ctx, p)
	})
}

func apiTokenRevoke(ctx context.Context, a *apiConn, tokenID string) error {
	t, err := a.c.RevokeToken(ctx, tokenID, a.mut()...)
	if err != nil {
		return err
	}
	if a.asJSON {
		return a.printJSON(a.rec.body())
	}
	at := "-"
	if t.RevokedAt != nil {
		at = t.RevokedAt.Format(time.RFC3339)
	}
	if _, err := fmt.Printf("revoked %s at %s\n", t.ID, at); err != nil {
		return localError{err}
	}
	return nil
}

// completeTokens completes token IDs over the API; on the database it offers none.
func completeTokens(a *apiConn) cobra.CompletionFunc {
	api := completeIDs(a, 1, func(ctx context.Context, c *client.Client, _ *cobra.Command, yield func(id, desc string) bool) error {
		for t, err := range c.AllTokens(ctx, client.ListParams{Limit: 100}) {
			if err != nil || !yield(t.ID, t.Name+" ("+t.Role+")") {
				return err
			}
		}
		return nil
	})
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if viaAPI, err := tokenViaAPI(cmd, a); err != nil || !viaAPI {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return api(cmd, args, toComplete)
	}
}
