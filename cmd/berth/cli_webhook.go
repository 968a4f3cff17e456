package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
)

func webhookCmd() *cobra.Command {
	a := &apiConn{}
	cmd := &cobra.Command{
		Use:     "webhook",
		Aliases: []string{"webhooks"},
		Short:   "Create, list and delete an environment's webhooks, and read their deliveries (API)",
		Long: `Manage webhooks over the API (API.md §9). A webhook is a URL that berth POSTs to,
signed with the webhook's secret, for every work item queued in its environment (a new
session, a dormant session woken, a requeue after a lease expired), retrying for 24 h
until it answers 2xx: a way to start workers when work arrives. Creating and deleting
need an admin token; listing, a member's.` + groupLong,
		Example: `  berth webhook create env_… --url https://scaler.example/berth --description 'start a worker'
  berth webhook list env_…
  berth webhook deliveries env_… whk_…`,
	}
	a.addConnFlags(cmd, envDefault("BERTH_URL", client.DefaultBaseURL), urlHelp, true)
	cmd.AddCommand(webhookCreateCmd(a), webhookListCmd(a), webhookDeleteCmd(a), webhookDeliveriesCmd(a))
	return cmd
}

var webhookCols = []string{"ID", "URL", "DESCRIPTION", "CREATED"}

func webhookRow(w client.Webhook) []string {
	return []string{w.ID, w.URL, cliDash(w.Description), cliTime(w.CreatedAt)}
}

var deliveryCols = []string{"ID", "WORK", "ATTEMPTS", "STATUS", "NEXT ATTEMPT", "DELIVERED", "ERROR"}

func deliveryRow(d client.WebhookDelivery) []string {
	var ev struct {
		WorkID string `json:"work_id"`
	}
	_ = json.Unmarshal(d.Event, &ev)
	status := "-"
	if d.LastStatus != nil {
		status = strconv.Itoa(*d.LastStatus)
	}
	lastErr := ""
	if d.LastError != nil {
		lastErr = *d.LastError
	}
	return []string{d.ID, ev.WorkID, strconv.Itoa(d.Attempts), status, cliTimePtr(d.NextAttemptAt),
		cliTimePtr(d.DeliveredAt), cliDash(lastErr)}
}

// completeWebhooks completes the webhook IDs of the environment given as the first
// argument.
func completeWebhooks(a *apiConn) cobra.CompletionFunc {
	envs := completeEnvs(a)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return envs(cmd, args, toComplete)
		}
		return completeIDs(a, 2, func(ctx context.Context, c *client.Client, _ *cobra.Command, yield func(id, desc string) bool) error {
			for w, err := range c.AllWebhooks(ctx, args[0], client.ListParams{Limit: 100}) {
				if err != nil || !yield(w.ID, w.URL) {
					return err
				}
			}
			return nil
		})(cmd, args, toComplete)
	}
}

func webhookCreateCmd(a *apiConn) *cobra.Command {
	var p client.CreateWebhookParams
	cmd := &cobra.Command{
		Use:   "create ENV_ID --url URL",
		Short: "Add a webhook to an environment; prints its secret, shown this once",
		Long: `Add a webhook to an environment (admin token). The signing secret (whsec_…) is printed
alone on stdout, shown this once, and what was made on stderr; --json prints the API's
webhook object, secret included. Receivers verify Berth-Signature with it (see the
README's "Webhooks").`,
		Example: `  berth webhook create env_… --url https://scaler.example/berth
  SECRET=$(berth webhook create env_… --url https://scaler.example/berth --description keda)`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			if p.URL == "" {
				return errors.New("--url is required")
			}
			w, err := a.c.CreateWebhook(ctx, args[0], p, a.mut()...)
			if err != nil {
				return err
			}
			if a.asJSON {
				return a.printJSON(a.rec.body())
			}
			fmt.Fprintf(os.Stderr, "created %s (%s); its secret, shown this once:\n", w.ID, w.URL)
			if _, err := fmt.Println(w.Secret); err != nil {
				return localError{err}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&p.URL, "url", "", "the http or https URL to POST to (required)")
	f.StringVar(&p.Description, "description", "", "a description")
	return cmd
}

func webhookListCmd(a *apiConn) *cobra.Command {
	var l listFlags
	cmd := &cobra.Command{
		Use:               "list ENV_ID",
		Short:             "List an environment's webhooks, oldest first (never their secrets)",
		Example:           `  berth webhook list env_… --all --json | jq -r '.[].url'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			return cliList(ctx, a, &l, webhookCols, webhookRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.Webhook], error) {
				return a.c.ListWebhooks(ctx, args[0], p)
			})
		}),
	}
	l.add(cmd)
	return cmd
}

func webhookDeleteCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:               "delete ENV_ID WEBHOOK_ID",
		Short:             "Delete a webhook and its deliveries (admin token)",
		Example:           `  berth webhook delete env_… whk_…`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeWebhooks(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			d, err := a.c.DeleteWebhook(ctx, args[0], args[1], a.mut()...)
			if err != nil {
				return err
			}
			return a.out(deletedTable(d))
		}),
	}
}

func webhookDeliveriesCmd(a *apiConn) *cobra.Command {
	var l listFlags
	cmd := &cobra.Command{
		Use:   "deliveries ENV_ID WEBHOOK_ID",
		Short: "List a webhook's deliveries, oldest first, with their attempts",
		Long: `List a webhook's deliveries: one per work item queued since the webhook was made, with
its attempts, the last HTTP status and error, when the next attempt is due (none once
delivered or given up) and when it was delivered.`,
		Example: `  berth webhook deliveries env_… whk_…
  berth webhook deliveries env_… whk_… --all --json | jq '.[] | select(.delivered_at == null)'`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeWebhooks(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			return cliList(ctx, a, &l, deliveryCols, deliveryRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.WebhookDelivery], error) {
				return a.c.ListWebhookDeliveries(ctx, args[0], args[1], p)
			})
		}),
	}
	l.add(cmd)
	return cmd
}
