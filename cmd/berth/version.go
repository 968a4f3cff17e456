package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-sh/berth/internal/buildinfo"
)

// versionCmd is `berth version`; the root's --version prints the same line.
func versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print berth's version, VCS revision and date, Go version and platform",
		Long: `Print which build of berth this is: its version, the VCS revision and commit time it was
built from ("-modified" when the tree had uncommitted changes), the Go version and the
platform. --json prints the same as a JSON object, for machines.`,
		Example: `  berth version
  berth --version
  berth version --json | jq -r .revision`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Get()
			if !asJSON {
				fmt.Fprintln(cmd.OutOrStdout(), in.String())
				return nil
			}
			b, err := json.MarshalIndent(in, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
