package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/client"
)

// groupLong ends the help of every API command group.
const groupLong = `

Connection: --url (BERTH_URL, default ` + client.DefaultBaseURL + `) and --token
(BERTH_TOKEN). Output: a table, or the API's JSON with --json. Exit codes: 0 ok,
1 usage or local error, 2 other API 4xx, 3 not found, 4 conflict (409/412),
5 auth (401/403), 6 server or network error; see "berth help exit-codes".`

func envCmd() *cobra.Command {
	a := &apiConn{}
	cmd := &cobra.Command{
		Use:     "env",
		Aliases: []string{"environment", "environments"},
		Short:   "Create, list, read, update, archive and delete environments (API)",
		Long:    "Manage environments over the API. Sessions of a self_hosted environment become work items that workers take." + groupLong,
		Example: `  export BERTH_URL=http://127.0.0.1:8080 BERTH_TOKEN=$(cat berth-data/admin-token)
  berth env create --name byoc
  berth env list --all`,
	}
	a.addConnFlags(cmd, envDefault("BERTH_URL", client.DefaultBaseURL), urlHelp, true)
	cmd.AddCommand(envCreateCmd(a), envListCmd(a), envGetCmd(a), envUpdateCmd(a), envArchiveCmd(a), envDeleteCmd(a))
	return cmd
}

var envCols = []string{"ID", "NAME", "TYPE", "ARCHIVED", "CREATED", "METADATA"}

func envRow(e client.Environment) []string {
	return []string{e.ID, e.Name, e.Config.Type, cliTimePtr(e.ArchivedAt), cliTime(e.CreatedAt), metadataCell(e.Metadata)}
}

func envTable(e *client.Environment) func(io.Writer) {
	return func(w io.Writer) {
		tableHeader(w, envCols...)
		tableRow(w, envRow(*e)...)
	}
}

func deletedTable(d *client.Deleted) func(io.Writer) {
	return func(w io.Writer) {
		tableHeader(w, "ID", "TYPE")
		tableRow(w, d.ID, d.Type)
	}
}

// completeEnvs completes environment IDs, archived ones included.
func completeEnvs(a *apiConn) cobra.CompletionFunc {
	return completeIDs(a, 1, func(ctx context.Context, c *client.Client, _ *cobra.Command, yield func(id, desc string) bool) error {
		for e, err := range c.AllEnvironments(ctx, client.ListEnvironmentsParams{ListParams: client.ListParams{Limit: 100}, IncludeArchived: true}) {
			if err != nil || !yield(e.ID, e.Name) {
				return err
			}
		}
		return nil
	})
}

// configFlag parses a --config JSON object, which must have a "type".
func configFlag(s string) (*client.EnvironmentConfig, error) {
	var cfg client.EnvironmentConfig
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, errors.New(`--config: want a JSON object such as {"type":"self_hosted","setup_script":"…"}`)
	}
	if err := json.Unmarshal([]byte(s), &cfg); err != nil || cfg.Type == "" {
		return nil, errors.New(`--config: the object needs a string "type" (self_hosted or cloud)`)
	}
	return &cfg, nil
}

func envCreateCmd(a *apiConn) *cobra.Command {
	var p client.CreateEnvironmentParams
	var typ, setupScript, config string
	var md metadataFlags
	cmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create an environment (self_hosted unless --type cloud)",
		Long: `Create an environment. Its config is self_hosted by default here (the API's default is
cloud): only self_hosted environments queue work for workers. --config gives the whole
config object instead of --type and --setup-script.`,
		Example: `  berth env create --name byoc
  berth env create --name gpu --setup-script 'nvidia-smi' --metadata team=ml --metadata tier=gold
  ENV=$(berth env create --name ci --json | jq -r .id)`,
		Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, _ []string) error {
			if p.Name == "" {
				return errors.New("--name is required")
			}
			var err error
			switch {
			case config != "":
				if typ != client.ConfigSelfHosted || setupScript != "" {
					return errors.New("--config gives the whole config: leave out --type and --setup-script")
				}
				if p.Config, err = configFlag(config); err != nil {
					return err
				}
			case typ == client.ConfigSelfHosted:
				p.Config = client.SelfHostedConfig(setupScript)
			case typ == client.ConfigCloud:
				raw, _ := json.Marshal(struct {
					Type        string `json:"type"`
					SetupScript string `json:"setup_script,omitempty"`
				}{client.ConfigCloud, setupScript})
				p.Config = &client.EnvironmentConfig{Type: client.ConfigCloud, Raw: raw}
			default:
				return errors.New("--type must be self_hosted or cloud")
			}
			if p.Metadata, err = md.create(); err != nil {
				return err
			}
			e, err := a.c.CreateEnvironment(ctx, p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(envTable(e))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&p.Name, "name", "", "the environment's name (required)")
	f.StringVar(&p.Description, "description", "", "a description")
	f.StringVar(&typ, "type", client.ConfigSelfHosted, "config type: self_hosted or cloud")
	f.StringVar(&setupScript, "setup-script", "", "the config's setup_script")
	f.StringVar(&config, "config", "", "the whole config as a JSON object, instead of --type and --setup-script")
	md.add(cmd, false)
	return cmd
}

func envListCmd(a *apiConn) *cobra.Command {
	var l listFlags
	var archived bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List environments, oldest first",
		Example: `  berth env list
  berth env list --include-archived --all --json | jq -r '.[].name'
  berth env list --limit 5 --page env_…`,
		Args: cobra.NoArgs,
		RunE: a.run(func(ctx context.Context, _ []string) error {
			return cliList(ctx, a, &l, envCols, envRow, func(ctx context.Context, p client.ListParams) (*client.Page[client.Environment], error) {
				return a.c.ListEnvironments(ctx, client.ListEnvironmentsParams{ListParams: p, IncludeArchived: archived})
			})
		}),
	}
	l.add(cmd)
	cmd.Flags().BoolVar(&archived, "include-archived", false, "list archived environments too")
	return cmd
}

func envGetCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:               "get ENV_ID",
		Short:             "Show an environment",
		Example:           `  berth env get env_019f3be4fd2475d9a784bf2c739e1194 --json | jq .config`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			e, err := a.c.GetEnvironment(ctx, args[0])
			if err != nil {
				return err
			}
			return a.out(envTable(e))
		}),
	}
}

func envUpdateCmd(a *apiConn) *cobra.Command {
	var name, description, config string
	var md metadataFlags
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "update ENV_ID",
		Short: "Change an environment's name, description, config or metadata",
		Long: `Change the fields given: --name, --description, --config (replaces the config wholesale;
its type may not change) and metadata, which is merged: --metadata key=value sets a key,
--metadata key= or --unset key deletes it, other keys stay.`,
		Example: `  berth env update env_… --name byoc-2 --description 'the new fleet'
  berth env update env_… --metadata owner=ops --unset tier
  berth env update env_… --config '{"type":"self_hosted","setup_script":"make deps"}'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			var p client.UpdateEnvironmentParams
			var err error
			if cmd.Flags().Changed("name") {
				p.Name = &name
			}
			if cmd.Flags().Changed("description") {
				p.Description = &description
			}
			if config != "" {
				if p.Config, err = configFlag(config); err != nil {
					return err
				}
			}
			if p.Metadata, err = md.patch(); err != nil {
				return err
			}
			if p.Name == nil && p.Description == nil && p.Config == nil && p.Metadata == nil {
				return errors.New("nothing to change: give --name, --description, --config, --metadata or --unset")
			}
			e, err := a.c.UpdateEnvironment(ctx, args[0], p, a.mut()...)
			if err != nil {
				return err
			}
			return a.out(envTable(e))
		}),
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "new name")
	f.StringVar(&description, "description", "", "new description")
	f.StringVar(&config, "config", "", "new config, a JSON object (same type)")
	md.add(cmd, true)
	return cmd
}

func envArchiveCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:   "archive ENV_ID",
		Short: "Archive an environment: no new sessions; existing work drains",
		Example: `  berth env archive env_…
  berth env list --include-archived`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			e, err := a.c.ArchiveEnvironment(ctx, args[0], a.mut()...)
			if err != nil {
				return err
			}
			return a.out(envTable(e))
		}),
	}
}

func envDeleteCmd(a *apiConn) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ENV_ID",
		Short: "Delete an environment (admin token; exit 4 while sessions reference it)",
		Example: `  berth env delete env_…
  berth env delete env_…; [ $? -eq 4 ] && echo "sessions still reference it"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeEnvs(a),
		RunE: a.run(func(ctx context.Context, args []string) error {
			d, err := a.c.DeleteEnvironment(ctx, args[0], a.mut()...)
			if err != nil {
				return err
			}
			return a.out(deletedTable(d))
		}),
	}
}
