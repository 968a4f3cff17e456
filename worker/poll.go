package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/berth-sh/berth/client"
)

// blockMS is the longest long poll the API allows: fewer round trips while idle, and a
// new item still reaches a waiting worker at once.
const blockMS = 999

// pollLoop polls while there is capacity, starting an item runner for each delivered item,
// until ctx ends (nil) or the server refuses the worker (*ErrRefused).
func (w *Worker) pollLoop(ctx context.Context) error {
	slots := make(chan struct{}, w.cfg.Capacity)
	failures := 0
	backoff := client.Backoff{Initial: w.cfg.BackoffMin, Max: w.cfg.BackoffMax}
	for {
		// Wait for a free slot before polling: a worker never takes an item it has no
		// capacity to run.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		wk, err := w.cfg.Client.PollWork(ctx, w.cfg.EnvironmentID, client.PollParams{BlockMS: blockMS, WorkerID: w.cfg.WorkerID})
		if ctx.Err() != nil {
			<-slots
			if wk != nil {
				// Delivered as we were shutting down: not acknowledged, so the server
				// hands it to another worker after the reclaim window.
				w.log.Info("shutting down; leaving delivered item to be reclaimed", "work_id", wk.ID)
			}
			return nil
		}
		if err != nil {
			<-slots
			if fatalPollError(err) {
				return &ErrRefused{Err: err, URL: w.cfg.Client.BaseURL()}
			}
			w.cfg.Metrics.pollError()
			wait := backoff.Delay(failures)
			failures++
			w.log.Warn("poll failed; backing off", "err", err, "backoff", wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		failures = 0
		if wk == nil {
			<-slots
			// An item ends (and leaves w.running) before its slot is freed, so nothing is
			// running here unless an item is.
			if w.cfg.ExitWhenIdle && w.Running() == 0 {
				w.log.Info("idle: nothing to poll and nothing running; exiting")
				return nil
			}
			continue
		}
		raw, err := json.Marshal(wk)
		if err != nil {
			<-slots
			w.log.Error("encode work item", "work_id", wk.ID, "err", err)
			continue
		}
		it := w.newItem(Job{Work: wk, Raw: raw, WorkerID: w.cfg.WorkerID, Client: w.cfg.Client})
		w.items.Add(1)
		go func() {
			defer w.items.Done()
			defer func() { <-slots }()
			it.run()
		}()
	}
}
