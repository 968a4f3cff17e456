package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// An item copies its session's metadata, which may hold the API's 16 keys; the worker's
// exit_code still lands (a work item may hold 20), so that a finished item never looks
// like an abandoned one.
func TestExitCodeLandsInAnItemCopiedFromAFullSession(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	full := map[string]string{}
	for i := range 16 {
		full[fmt.Sprintf("key%02d", i)] = "v"
	}
	_, item := b.session(full)
	if len(item.Metadata) != 16 {
		t.Fatalf("item has %d metadata keys, want the session's 16", len(item.Metadata))
	}
	reg := prometheus.NewRegistry()
	b.start(worker.Config{Metrics: worker.NewMetrics(reg), Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		return 3, nil
	})})
	final := b.waitState(item.ID, client.StateStopped)
	if final.Metadata["exit_code"] != "3" || len(final.Metadata) != 17 {
		t.Errorf("final metadata (%d keys) %v, want the session's 16 and exit_code 3", len(final.Metadata), final.Metadata)
	}
	if ups := b.rec.of(item.ID, "update"); len(ups) != 1 || ups[0].Status != 200 {
		for _, u := range ups {
			t.Logf("update %s → %d %s", u.Body, u.Status, u.Resp)
		}
		t.Errorf("%d exit_code updates, want one answered 200", len(ups))
	}
	if n := counter(t, reg, "berth_worker_exit_code_errors_total"); n != 0 {
		t.Errorf("berth_worker_exit_code_errors_total = %v, want 0", n)
	}
}

// If the exit code cannot be recorded all the same (here the server refuses the update),
// the worker logs the outcome as an error, with the code, counts it, and still stops the
// item: it must not run again, nor hold its slot.
func TestExitCodeThatCannotBeRecordedIsLoggedCountedAndTheItemStopped(t *testing.T) {
	t.Parallel()
	b := newBench(t)
	_, item := b.session(nil)
	b.rec.setIntercept(func(c *call, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if c.Op == "update" {
			fail(w, 400, "invalid_request_error")
			return true
		}
		return false
	})
	reg := prometheus.NewRegistry()
	run := b.start(worker.Config{Metrics: worker.NewMetrics(reg), Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
		return 5, nil
	})})
	final := b.waitState(item.ID, client.StateStopped)
	if _, ok := final.Metadata["exit_code"]; ok {
		t.Fatalf("exit_code recorded although the update was refused: %v", final.Metadata)
	}
	run.log.waitFor(t, `"msg":"stopped"`)
	var logged bool
	for _, l := range run.log.lines() {
		if l["work_id"] == item.ID && l["level"] == "ERROR" && l["exit_code"] == float64(5) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("no ERROR record with exit_code 5 for %s:\n%s", item.ID, run.log)
	}
	if n := counter(t, reg, "berth_worker_exit_code_errors_total"); n != 1 {
		t.Errorf("berth_worker_exit_code_errors_total = %v, want 1", n)
	}
	if n := counter(t, reg, "berth_worker_items_total"); n != 1 {
		t.Errorf("berth_worker_items_total = %v, want 1", n)
	}
}
