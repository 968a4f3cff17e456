package bench

import (
	"context"
	"testing"
	"time"
)

// Each scenario runs end to end on a small scale and reports figures that are consistent
// with what it did. Speed itself is judged by `berth bench`, not here.
func TestScenariosRunAndReport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("lifecycle", func(t *testing.T) {
		t.Parallel()
		r, err := Lifecycle(ctx, Options{Workers: 2, Items: 20, Duration: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if r.Items < 20 || r.Errors != 0 || r.ItemsPerSec <= 0 || r.Ceiling == nil || r.Ratio <= 0 {
			t.Fatalf("lifecycle result %+v", r)
		}
		// Six calls per item: create, poll, ack, heartbeat, stop, stop.
		if r.Calls["stop"].Count < 2*int(r.Items) || r.Calls["ack"].Count < int(r.Items) {
			t.Fatalf("call counts do not match %d items: %+v", r.Items, r.Calls)
		}
	})
	t.Run("pickup", func(t *testing.T) {
		t.Parallel()
		r, err := Pickup(ctx, Options{Pollers: 5, Samples: 10})
		if err != nil {
			t.Fatal(err)
		}
		if r.Pickup.Count+r.Missed != 10 || r.Pickup.Count == 0 || r.Pickup.P50 <= 0 || r.Pickup.Max < r.Pickup.P99 {
			t.Fatalf("pickup result %+v", r)
		}
	})
	t.Run("scale", func(t *testing.T) {
		t.Parallel()
		r, err := Scale(ctx, Options{ScaleItems: 3000, Samples: 20})
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range []string{"poll", "ack", "heartbeat", "list"} {
			if r.AtSmall[call].Count != 20 || r.AtLarge[call].Count != 20 || r.Ratio[call] <= 0 {
				t.Fatalf("scale result for %s: %+v", call, r)
			}
		}
	})
}
