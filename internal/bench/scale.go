package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/work"
)

// ScaleResult compares the p50 of each hot call at two store sizes.
type ScaleResult struct {
	Target  string             `json:"target"`
	Small   int                `json:"small_items"`
	Large   int                `json:"large_items"`
	AtSmall map[string]Latency `json:"at_small"`
	AtLarge map[string]Latency `json:"at_large"`
	// Ratio is p50 at Large ÷ p50 at Small, per call: 1 means size costs nothing.
	Ratio       map[string]float64 `json:"ratio"`
	SeedSeconds float64            `json:"seed_seconds"`
}

// seeder is implemented by the stores (SeedWork): bulk inserts for benchmarks.
type seeder interface {
	SeedWork(ctx context.Context, items []work.Item) error
}

// smallSize is the reference size of the scale scenario.
const smallSize = 1000

// Scale fills an in-process store with items in mixed states (40% stopped, 20% queued,
// 20% starting, 20% active), measures poll, ack, heartbeat and list at 1,000 items and at
// ScaleItems, and reports each p50's ratio.
func Scale(ctx context.Context, o Options) (_ *ScaleResult, err error) {
	o.defaults()
	if o.URL != "" || o.Spawn {
		return nil, errors.New("scale fills the store directly: it runs only in-process (drop --url)")
	}
	t, err := start(ctx, o, 4)
	if err != nil {
		return nil, err
	}
	defer t.closeInto(&err)
	sd, ok := t.store.(seeder)
	if !ok {
		return nil, errors.New("this store cannot be seeded")
	}
	res := &ScaleResult{Target: t.kind, Small: smallSize, Large: o.ScaleItems, Ratio: map[string]float64{}}
	var seeded []string
	seed := func(n int) error {
		begin := time.Now()
		now := time.Now()
		const batch = 5000
		for done := 0; done < n; {
			items := make([]work.Item, 0, min(batch, n-done))
			for range cap(items) {
				it := mixedItem(t.env, done, now)
				items = append(items, it)
				if done%97 == 0 {
					seeded = append(seeded, it.ID)
				}
				done++
			}
			if err := sd.SeedWork(ctx, items); err != nil {
				return err
			}
			progress(o, "scale: seeding %d/%d", done, n)
		}
		res.SeedSeconds += time.Since(begin).Seconds()
		return nil
	}
	if err := seed(smallSize); err != nil {
		return nil, err
	}
	// The small store holds 200 queued items; every round takes one.
	o.Samples = min(o.Samples, smallSize/5-10)
	if res.AtSmall, err = measureHotCalls(ctx, o, t, seeded); err != nil {
		return nil, err
	}
	if err := seed(o.ScaleItems - smallSize); err != nil {
		return nil, err
	}
	if res.AtLarge, err = measureHotCalls(ctx, o, t, seeded); err != nil {
		return nil, err
	}
	progressDone(o)
	for k, small := range res.AtSmall {
		if large, ok := res.AtLarge[k]; ok && small.P50 > 0 {
			res.Ratio[k] = large.P50 / small.P50
		}
	}
	return res, nil
}

// mixedItem is the i-th seeded item: 40% stopped, 20% queued, 20% starting, 20% active.
func mixedItem(env string, i int, now time.Time) work.Item {
	it := work.New(id.New(id.Work), env, id.New(id.Session), work.Metadata{"seed": "1"}, now)
	ts := work.Timestamp(now)
	switch i % 5 {
	case 0, 1:
		it.State, it.AcknowledgedAt, it.StartedAt, it.LatestHeartbeatAt, it.StoppedAt = work.Stopped, ts, ts, ts, ts
	case 2:
	case 3:
		it.State, it.AcknowledgedAt, it.TTLSeconds = work.Starting, ts, 600
		it.LeaseExpiresAt = ts.Add(time.Hour)
	case 4:
		it.State, it.AcknowledgedAt, it.StartedAt, it.LatestHeartbeatAt, it.TTLSeconds = work.Active, ts, ts, ts, 600
		it.LeaseExpiresAt = ts.Add(time.Hour)
	}
	return it
}

// measureHotCalls times Samples rounds of poll → ack → heartbeat on items of the queue, and
// Samples list pages starting at random seeded IDs.
func measureHotCalls(ctx context.Context, o Options, t *target, seeded []string) (map[string]Latency, error) {
	rec := newRecorder()
	for i := range o.Samples {
		var w *client.Work
		if err := rec.timed("poll", func() (err error) {
			w, err = t.c.PollWork(ctx, t.env, client.PollParams{WorkerID: "scale"})
			return err
		}); err != nil {
			return nil, err
		}
		if w == nil {
			return nil, errors.New("scale: the queue ran dry")
		}
		if err := rec.timed("ack", func() error {
			_, err := t.c.AckWork(ctx, t.env, w.ID, client.AckParams{WorkerID: "scale"})
			return err
		}); err != nil {
			return nil, err
		}
		if err := rec.timed("heartbeat", func() error {
			_, err := t.c.HeartbeatWork(ctx, t.env, w.ID, client.HeartbeatParams{ExpectedLastHeartbeat: client.NoHeartbeat})
			return err
		}); err != nil {
			return nil, err
		}
		after := seeded[rand.IntN(len(seeded))]
		if err := rec.timed("list", func() error {
			_, err := t.c.ListWork(ctx, t.env, client.ListWorkParams{ListParams: client.ListParams{Limit: 20, AfterID: after}})
			return err
		}); err != nil {
			return nil, err
		}
		progress(o, "scale: measuring %d/%d", i+1, o.Samples)
	}
	return rec.summary(), nil
}
