package client_test

import (
	"context"
	"fmt"
	"os"

	"github.com/berth-sh/berth/client"
)

// A worker's round with one item: poll, ack, heartbeat, then confirm the stop.
func Example() {
	ctx := context.Background()
	c, err := client.New(os.Getenv("BERTH_URL"), os.Getenv("BERTH_TOKEN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	const envID, workerID = "env_019f3be4fd2475d9a784bf2c739e1194", "worker-1"
	w, err := c.PollWork(ctx, envID, client.PollParams{BlockMS: 999, WorkerID: workerID})
	if err != nil || w == nil {
		return // nil, nil: nothing to do yet
	}
	if _, err := c.AckWork(ctx, envID, w.ID, client.AckParams{WorkerID: workerID}); err != nil {
		return
	}
	hb, err := c.HeartbeatWork(ctx, envID, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat})
	if client.IsPreconditionFailed(err) || client.IsConflict(err) {
		return // someone else holds the lease, or it is gone: abandon the item
	}
	// … run session w.Data.ID, heartbeating with ExpectedLastHeartbeat: hb.LastHeartbeat,
	// until done or until a heartbeat answers State == client.StateStopping …
	_ = hb
	c.StopWork(ctx, envID, w.ID, false)
}

// Every environment, page after page.
func ExampleClient_AllEnvironments() {
	c, _ := client.New("", os.Getenv("BERTH_TOKEN"))
	for env, err := range c.AllEnvironments(context.Background(), client.ListEnvironmentsParams{}) {
		if err != nil {
			fmt.Println(err)
			break
		}
		fmt.Println(env.ID, env.Name)
	}
}
