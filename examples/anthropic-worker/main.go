// Command anthropic-worker is Anthropic's self-hosted environment worker, from
// github.com/anthropics/anthropic-sdk-go/v2/lib/environments, unchanged, serving a berth
// environment: it claims the environment's work items, runs each session's tool calls
// with the SDK's standard agent toolset (bash, read, write, edit, glob, grep) in the
// current directory, heartbeats the lease, and stops the item when the session is done.
//
//	ANTHROPIC_BASE_URL=http://127.0.0.1:8080 \
//	ANTHROPIC_ENVIRONMENT_ID=env_… ANTHROPIC_ENVIRONMENT_KEY=pt-… go run ./examples/anthropic-worker
//
// README.md shows this file as it is ("Running Anthropic's workers against berth").
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/lib/environments"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

// run serves the environment until ctx ends; the item in hand, if any, is stopped then.
func run(ctx context.Context) error {
	// The base URL is berth's root, from ANTHROPIC_BASE_URL.
	client := anthropic.NewClient()
	worker := environments.NewEnvironmentWorker(client, environments.EnvironmentWorkerOptions{
		EnvironmentID:  os.Getenv("ANTHROPIC_ENVIRONMENT_ID"),
		EnvironmentKey: os.Getenv("ANTHROPIC_ENVIRONMENT_KEY"), // a berth worker token
	})
	return worker.Run(ctx)
}
