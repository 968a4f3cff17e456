package main

import "github.com/spf13/cobra"

// apiCommands are the commands that call a server's API through the client package.
func apiCommands() []*cobra.Command { return nil }
