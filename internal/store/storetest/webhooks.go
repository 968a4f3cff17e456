package storetest

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// Webhooks and their delivery outbox (API.md §9): CreateWebhook, GetWebhook,
// ListWebhooks, DeleteWebhook, the deliveries that queuing an item writes in its own
// transaction, ListDeliveries, ClaimDeliveries, RecordAttempt, NextDelivery and
// CountPendingDeliveries.

func webhookID(w store.Webhook) string   { return w.ID }
func deliveryID(d store.Delivery) string { return d.ID }

// draftWebhook is a webhook of envID whose ID the store makes.
func draftWebhook(envID string) store.Webhook {
	return store.Webhook{EnvironmentID: envID, URL: "https://hooks.example/berth?x=1", Description: "scaler",
		Secret: "whsec_" + id.New("s"), CreatedAt: base}
}

// webhook stores a webhook of env.
func (f *fixture) webhook(t *testing.T, envID string) store.Webhook {
	t.Helper()
	w, err := f.st.CreateWebhook(f.ctx, draftWebhook(envID))
	if err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	return w
}

// deliveries lists every delivery of a webhook.
func (f *fixture) deliveries(t *testing.T, webhookID string) []store.Delivery {
	t.Helper()
	ds, more, err := f.st.ListDeliveries(f.ctx, webhookID, store.Page{Limit: 1000})
	if err != nil || more {
		t.Fatalf("ListDeliveries: %d rows, more %v, err %v", len(ds), more, err)
	}
	return ds
}

// queuedDelivery is the delivery that queuing it must write for webhook w.
func queuedDelivery(deliveryID string, w store.Webhook, it work.Item) store.Delivery {
	return store.Delivery{ID: deliveryID, WebhookID: w.ID, EnvironmentID: it.EnvironmentID, WorkID: it.ID,
		SessionID: it.SessionID, NextAttemptAt: it.CreatedAt, CreatedAt: it.CreatedAt}
}

// checkQueued checks that each webhook has exactly one delivery of it, as queued, made
// after the IDs in before.
func (f *fixture) checkQueued(t *testing.T, it work.Item, before string, hooks ...store.Webhook) {
	t.Helper()
	for _, w := range hooks {
		var mine []store.Delivery
		for _, d := range f.deliveries(t, w.ID) {
			if d.WorkID == it.ID {
				mine = append(mine, d)
			}
		}
		if len(mine) != 1 {
			t.Errorf("webhook %s has %d deliveries of %s, want 1", w.ID, len(mine), it.ID)
			continue
		}
		d := mine[0]
		if !id.Valid(id.Delivery, d.ID) || d.ID <= before {
			t.Errorf("delivery ID %s is not a new delivery ID made after %s", d.ID, before)
		}
		checkEqual(t, "queued delivery", d, queuedDelivery(d.ID, w, it))
	}
}

func testCreateWebhook(t *testing.T, newStore newStoreFunc) {
	t.Run("RoundTripEveryField", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, cloud) // any environment type
		want := draftWebhook(e.ID)
		want.ID = id.New(id.Webhook)
		if _, err := f.st.CreateWebhook(f.ctx, inZone(want, elsewhere)); err != nil {
			t.Fatalf("CreateWebhook: %v", err)
		}
		got, err := f.st.GetWebhook(f.ctx, e.ID, want.ID)
		if err != nil {
			t.Fatalf("GetWebhook: %v", err)
		}
		checkEqual(t, "GetWebhook", got, want)
		list, _, err := f.st.ListWebhooks(f.ctx, e.ID, store.Page{Limit: 10})
		if err != nil || len(list) != 1 {
			t.Fatalf("ListWebhooks: %d rows, err %v; want 1", len(list), err)
		}
		checkEqual(t, "ListWebhooks", list[0], want)
	})

	t.Run("MakesIDsInOrder", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		prev := ""
		for range 3 {
			w := f.webhook(t, e.ID)
			if !id.Valid(id.Webhook, w.ID) || w.ID <= prev {
				t.Errorf("webhook ID %s is not a webhook ID after %s", w.ID, prev)
			}
			prev = w.ID
		}
	})

	t.Run("UnknownEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		_, err := f.st.CreateWebhook(f.ctx, draftWebhook(id.New(id.Environment)))
		wantNotFound(t, "CreateWebhook in a missing environment", err)
	})
}

func testGetWebhook(t *testing.T, newStore newStoreFunc) {
	t.Run("OnlyInItsEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		_, err := f.st.GetWebhook(f.ctx, other.ID, w.ID)
		wantNotFound(t, "GetWebhook of another environment", err)
		_, err = f.st.GetWebhook(f.ctx, e.ID, id.New(id.Webhook))
		wantNotFound(t, "GetWebhook of a missing webhook", err)
	})
}

func testListWebhooks(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		var mine, theirs []string
		for i := range 7 {
			if i%3 == 1 {
				theirs = append(theirs, f.webhook(t, other.ID).ID)
				continue
			}
			mine = append(mine, f.webhook(t, e.ID).ID)
		}
		checkPages(t, id.Webhook, listOf(func(p store.Page) ([]store.Webhook, bool, error) {
			return f.st.ListWebhooks(f.ctx, e.ID, p)
		}, webhookID), mine, theirs...)
	})
}

func testDeleteWebhook(t *testing.T, newStore newStoreFunc) {
	t.Run("DeletesItAndItsDeliveries", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		gone, kept := f.webhook(t, e.ID), f.webhook(t, e.ID)
		_, it := f.item(t, e, work.Queued, base)
		if err := f.st.DeleteWebhook(f.ctx, e.ID, gone.ID); err != nil {
			t.Fatalf("DeleteWebhook: %v", err)
		}
		_, err := f.st.GetWebhook(f.ctx, e.ID, gone.ID)
		wantNotFound(t, "GetWebhook after its delete", err)
		if ds := f.deliveries(t, gone.ID); len(ds) != 0 {
			t.Errorf("a deleted webhook still has deliveries: %v", listIDs(ds, deliveryID))
		}
		f.checkQueued(t, it, "", kept)
		claimed, err := f.st.ClaimDeliveries(f.ctx, base.Add(time.Hour), time.Minute, 100)
		if err != nil || len(claimed) != 1 || claimed[0].WebhookID != kept.ID {
			t.Errorf("ClaimDeliveries after a delete = %v, %v; want the kept webhook's one", claimed, err)
		}
		err = f.st.DeleteWebhook(f.ctx, e.ID, gone.ID)
		wantNotFound(t, "DeleteWebhook twice", err)
	})

	t.Run("OnlyInItsEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		wantNotFound(t, "DeleteWebhook through another environment", f.st.DeleteWebhook(f.ctx, other.ID, w.ID))
		if _, err := f.st.GetWebhook(f.ctx, e.ID, w.ID); err != nil {
			t.Errorf("the webhook is gone after a refused delete: %v", err)
		}
	})

	t.Run("WithItsEnvironment", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		if err := f.st.DeleteEnvironment(f.ctx, e.ID); err != nil {
			t.Fatalf("DeleteEnvironment: %v", err)
		}
		_, err := f.st.GetWebhook(f.ctx, e.ID, w.ID)
		wantNotFound(t, "webhook of a deleted environment", err)
	})
}

// testQueuesDeliveries: every item queued (a session's first item, a dormant wake-up, a
// requeue after lease expiry) writes one delivery per webhook of its environment in the
// transaction that queues it; nothing else writes any.
func testQueuesDeliveries(t *testing.T, newStore newStoreFunc) {
	t.Run("SessionCreate", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e, other := f.env(t, selfHosted), f.env(t, selfHosted)
		a, b, elsewhere := f.webhook(t, e.ID), f.webhook(t, e.ID), f.webhook(t, other.ID)
		fence := id.New(id.Delivery)
		s, it := draft(e.ID, work.Queued, base)
		created, err := f.st.CreateSession(f.ctx, s, nil, &it, nil)
		if err != nil {
			t.Fatal(err)
		}
		if created.Deliveries != 2 {
			t.Errorf("CreateSession reports %d deliveries, want 2", created.Deliveries)
		}
		f.checkQueued(t, it, fence, a, b)
		if ds := f.deliveries(t, elsewhere.ID); len(ds) != 0 {
			t.Errorf("another environment's webhook got deliveries: %v", listIDs(ds, deliveryID))
		}
	})

	t.Run("WebhookCreatedDuringCreates", func(t *testing.T) {
		// IDs are made in commit order, so an item with an ID above the webhook's
		// committed after it and must have a delivery to it; one below, none. Sessions are
		// created on 4 goroutines while the webhook is created: a create that waits for the
		// environment's lock must still see the webhook that committed meanwhile.
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		const writers, each = 4, 25
		var wg sync.WaitGroup
		items := make(chan string, writers*each)
		errs := make(chan error, writers)
		var made atomic.Int32
		someMade, allDone := make(chan struct{}), make(chan struct{})
		for range writers {
			wg.Go(func() {
				for range each {
					it := work.New("", "", "", nil, base)
					c, err := f.st.CreateSession(f.ctx, newSession(e.ID), nil, &it, nil)
					if err != nil {
						errs <- err
						return
					}
					items <- c.Item.ID
					if made.Add(1) == 10 {
						close(someMade)
					}
				}
			})
		}
		go func() { wg.Wait(); close(allDone) }()
		select { // the webhook once some items are in, while the writers go on
		case <-someMade:
		case <-allDone:
		}
		w := f.webhook(t, e.ID)
		<-allDone
		close(items)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, d := range f.deliveries(t, w.ID) {
			got[d.WorkID] = true
		}
		hex := func(s string) string { _, h, _ := strings.Cut(s, "_"); return h }
		before := 0
		for itemID := range items {
			want := hex(itemID) > hex(w.ID)
			if !want {
				before++
			}
			if got[itemID] != want {
				t.Errorf("item %s (webhook %s): delivery %v, want %v", itemID, w.ID, got[itemID], want)
			}
		}
		t.Logf("%d of %d items committed before the webhook", before, writers*each)
	})

	t.Run("OnlyWebhooksThatExist", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, before := f.item(t, e, work.Queued, base)
		w := f.webhook(t, e.ID)
		_, later := f.item(t, e, work.Queued, base.Add(sec))
		ds := f.deliveries(t, w.ID)
		if len(ds) != 1 || ds[0].WorkID != later.ID {
			t.Errorf("deliveries %+v; want one, of %s (not of %s, queued before the webhook)", ds, later.ID, before.ID)
		}
		// A session without an item (a cloud environment) queues nothing.
		c := f.env(t, cloud)
		cw := f.webhook(t, c.ID)
		created, err := f.st.CreateSession(f.ctx, draftSession(c.ID, base), nil, nil, nil)
		if err != nil || created.Deliveries != 0 || len(f.deliveries(t, cw.ID)) != 0 {
			t.Errorf("a session without an item queued deliveries (%d, %v)", created.Deliveries, err)
		}
	})

	t.Run("DormantWakeUp", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		s, it := draft(e.ID, work.Stopped, base)
		f.put(t, s, &it)
		w := f.webhook(t, e.ID)
		fence := id.New(id.Delivery)
		now := base.Add(time.Hour)
		app, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, work.WakeEvent, now)}, now)
		if err != nil || app.Queued == nil {
			t.Fatalf("AppendEvents = %+v, %v; want a wake-up", app, err)
		}
		if app.Deliveries != 1 {
			t.Errorf("AppendEvents reports %d deliveries, want 1", app.Deliveries)
		}
		f.checkQueued(t, *app.Queued, fence, w)
		// An event that wakes nothing queues no delivery.
		if app, err := f.st.AppendEvents(f.ctx, s.ID, []store.Event{event(s.ID, work.WakeEvent, now)}, now); err != nil || app.Deliveries != 0 {
			t.Errorf("AppendEvents on a live session = %+v, %v; want no delivery", app, err)
		}
		if n := len(f.deliveries(t, w.ID)); n != 1 {
			t.Errorf("%d deliveries, want 1", n)
		}
	})

	t.Run("RequeueAfterExpiry", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		_, it := f.item(t, e, work.Active, base)
		_, stopping := f.item(t, e, work.Stopping, base)
		w := f.webhook(t, e.ID)
		fence := id.New(id.Delivery)
		now := it.LeaseExpiresAt.Add(sec)
		if stopping.LeaseExpiresAt.After(it.LeaseExpiresAt) {
			now = stopping.LeaseExpiresAt.Add(sec)
		}
		exps, err := f.st.ExpireLeases(f.ctx, now)
		if err != nil || len(exps) != 2 {
			t.Fatalf("ExpireLeases = %v, %v; want two expiries", expiredIDs(exps), err)
		}
		var requeued []work.Item
		for _, x := range exps {
			if x.Requeue != nil {
				requeued = append(requeued, *x.Requeue)
				if x.Deliveries != 1 {
					t.Errorf("the requeue reports %d deliveries, want 1", x.Deliveries)
				}
			} else if x.Deliveries != 0 {
				t.Errorf("an expiry without a requeue reports %d deliveries", x.Deliveries)
			}
		}
		if len(requeued) != 1 {
			t.Fatalf("%d requeues, want 1 (the stopping item is simply stopped)", len(requeued))
		}
		f.checkQueued(t, requeued[0], fence, w)
		if n := len(f.deliveries(t, w.ID)); n != 1 {
			t.Errorf("%d deliveries, want 1", n)
		}
	})

	t.Run("NotWithoutItsItem", func(t *testing.T) {
		// The delivery commits with its item or not at all.
		t.Parallel()
		f := setup(t, newStore)
		d, _ := driverOf(t, f.st)
		e := f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		failing := store.New(failingCommit{d})
		s, it := draft(e.ID, work.Queued, base)
		if _, err := failing.CreateSession(f.ctx, s, nil, &it, nil); !errors.Is(err, errCommit) {
			t.Fatalf("CreateSession whose commit failed: %v", err)
		}
		if ds := f.deliveries(t, w.ID); len(ds) != 0 {
			t.Errorf("deliveries of an item that did not commit: %v", listIDs(ds, deliveryID))
		}
		if n, err := f.st.CountPendingDeliveries(f.ctx); err != nil || n != 0 {
			t.Errorf("CountPendingDeliveries = %d, %v; want 0", n, err)
		}
	})
}

func testListDeliveries(t *testing.T, newStore newStoreFunc) {
	t.Run("Pagination", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		a, b := f.webhook(t, e.ID), f.webhook(t, e.ID)
		for i := range 4 {
			f.item(t, e, work.Queued, base.Add(time.Duration(i)*sec))
		}
		mine, theirs := listIDs(f.deliveries(t, a.ID), deliveryID), listIDs(f.deliveries(t, b.ID), deliveryID)
		if len(mine) != 4 || len(theirs) != 4 {
			t.Fatalf("deliveries: %d and %d, want 4 each", len(mine), len(theirs))
		}
		checkPages(t, id.Delivery, listOf(func(p store.Page) ([]store.Delivery, bool, error) {
			return f.st.ListDeliveries(f.ctx, a.ID, p)
		}, deliveryID), mine, theirs...)
	})
}

func testClaimDeliveries(t *testing.T, newStore newStoreFunc) {
	t.Run("DueOnesEarliestFirst", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		var items []work.Item
		for _, at := range []time.Duration{2 * sec, 0, sec, time.Hour} {
			_, it := f.item(t, e, work.Queued, base.Add(at))
			items = append(items, it)
		}
		ds := f.deliveries(t, w.ID)
		byWork := map[string]store.Delivery{}
		for _, d := range ds {
			byWork[d.WorkID] = d
		}
		now := base.Add(2 * sec)
		const hold = 15 * sec
		claimed, err := f.st.ClaimDeliveries(f.ctx, now, hold, 2)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range claimed {
			got = append(got, c.WorkID)
			want := byWork[c.WorkID]
			want.Attempts, want.NextAttemptAt = 1, now.Add(hold)
			checkEqual(t, "claimed delivery", c.Delivery, want)
			if c.URL != w.URL || c.Secret != w.Secret {
				t.Errorf("claimed delivery's webhook: %q %q, want %q %q", c.URL, c.Secret, w.URL, w.Secret)
			}
		}
		if want := []string{items[1].ID, items[2].ID}; !slices.Equal(got, want) {
			t.Errorf("claimed %v, want the two earliest due %v", got, want)
		}
		claimed, err = f.st.ClaimDeliveries(f.ctx, now, hold, 100)
		if err != nil || len(claimed) != 1 || claimed[0].WorkID != items[0].ID {
			t.Errorf("second claim = %+v, %v; want only %s (the others are held, one is not due)", claimed, err, items[0].ID)
		}
		if at, ok, err := f.st.NextDelivery(f.ctx); err != nil || !ok || !at.Equal(now.Add(hold)) {
			t.Errorf("NextDelivery = %v %v %v; want the end of the claims' hold %v", at, ok, err, now.Add(hold))
		}
		// A claimer that never records its attempt (it crashed) leaves the delivery due
		// again when the hold ends, as the next attempt.
		claimed, err = f.st.ClaimDeliveries(f.ctx, now.Add(hold), hold, 100)
		if err != nil || len(claimed) != 3 {
			t.Fatalf("claim at the end of the hold = %d, %v; want the three held", len(claimed), err)
		}
		for _, c := range claimed {
			if c.Attempts != 2 {
				t.Errorf("delivery %s claimed again has attempts %d, want 2", c.ID, c.Attempts)
			}
		}
		if n, err := f.st.CountPendingDeliveries(f.ctx); err != nil || n != 4 {
			t.Errorf("CountPendingDeliveries = %d, %v; want 4", n, err)
		}
	})

	t.Run("ConcurrentClaimsTakeEachOnce", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		e := f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		const n = 24
		for i := range n {
			f.item(t, e, work.Queued, base.Add(time.Duration(i)*us))
		}
		var mu sync.Mutex
		seen := map[string]int{}
		race(racers, func(int) {
			for {
				claimed, err := f.st.ClaimDeliveries(f.ctx, base.Add(sec), time.Minute, 2)
				if err != nil {
					t.Error(err)
					return
				}
				if len(claimed) == 0 {
					return
				}
				mu.Lock()
				for _, c := range claimed {
					seen[c.ID]++
				}
				mu.Unlock()
			}
		})
		if len(seen) != n {
			t.Errorf("%d deliveries claimed, want %d", len(seen), n)
		}
		for d, k := range seen {
			if k != 1 {
				t.Errorf("delivery %s claimed %d times", d, k)
			}
		}
		for _, d := range f.deliveries(t, w.ID) {
			if d.Attempts != 1 {
				t.Errorf("delivery %s has %d attempts, want 1", d.ID, d.Attempts)
			}
		}
	})
}

func testRecordAttempt(t *testing.T, newStore newStoreFunc) {
	// claimOne queues an item with one webhook and claims its delivery at base.
	claimOne := func(t *testing.T, f *fixture) (store.Webhook, store.Claimed) {
		t.Helper()
		e := f.env(t, selfHosted)
		w := f.webhook(t, e.ID)
		f.item(t, e, work.Queued, base)
		claimed, err := f.st.ClaimDeliveries(f.ctx, base, 15*sec, 10)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("ClaimDeliveries = %d, %v", len(claimed), err)
		}
		return w, claimed[0]
	}
	record := func(t *testing.T, f *fixture, a store.Attempt) bool {
		t.Helper()
		ok, err := f.st.RecordAttempt(f.ctx, a)
		if err != nil {
			t.Fatalf("RecordAttempt: %v", err)
		}
		return ok
	}

	t.Run("Retry", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		w, c := claimOne(t, f)
		next := base.Add(sec + 234*us)
		if !record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Status: 503, Error: "HTTP 503", NextAttemptAt: next.In(elsewhere)}) {
			t.Fatal("the outcome of the latest attempt was not recorded")
		}
		want := c.Delivery
		want.LastStatus, want.LastError, want.NextAttemptAt = 503, "HTTP 503", next
		checkEqual(t, "delivery after a failed attempt", f.deliveries(t, w.ID)[0], want)
		if claimed, err := f.st.ClaimDeliveries(f.ctx, next.Add(-us), time.Minute, 10); err != nil || len(claimed) != 0 {
			t.Errorf("claimed before it is due: %d, %v", len(claimed), err)
		}
		claimed, err := f.st.ClaimDeliveries(f.ctx, next, time.Minute, 10)
		if err != nil || len(claimed) != 1 || claimed[0].Attempts != 2 || claimed[0].LastStatus != 503 {
			t.Fatalf("claim when due = %+v, %v; want attempt 2, the last status kept", claimed, err)
		}
		// The first attempt's outcome, late, is not the latest any more.
		if record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Status: 200, DeliveredAt: next}) {
			t.Error("a stale attempt's outcome was recorded")
		}
	})

	t.Run("Delivered", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		w, c := claimOne(t, f)
		at := base.Add(20 * time.Millisecond)
		if !record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Status: 204, DeliveredAt: at}) {
			t.Fatal("not recorded")
		}
		want := c.Delivery
		want.LastStatus, want.DeliveredAt, want.NextAttemptAt = 204, at, time.Time{}
		checkEqual(t, "delivered", f.deliveries(t, w.ID)[0], want)
		if claimed, err := f.st.ClaimDeliveries(f.ctx, base.Add(48*time.Hour), time.Minute, 10); err != nil || len(claimed) != 0 {
			t.Errorf("a delivered delivery was claimed: %d, %v", len(claimed), err)
		}
		if _, ok, err := f.st.NextDelivery(f.ctx); ok || err != nil {
			t.Errorf("NextDelivery with nothing pending = %v, %v", ok, err)
		}
		if n, err := f.st.CountPendingDeliveries(f.ctx); err != nil || n != 0 {
			t.Errorf("CountPendingDeliveries = %d, %v; want 0", n, err)
		}
		if record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Status: 200, DeliveredAt: at}) {
			t.Error("an outcome was recorded twice")
		}
	})

	t.Run("GivenUp", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		w, c := claimOne(t, f)
		if !record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Error: "connection refused"}) {
			t.Fatal("not recorded")
		}
		d := f.deliveries(t, w.ID)[0]
		if d.Pending() || d.LastError != "connection refused" || d.LastStatus != 0 || !d.DeliveredAt.IsZero() {
			t.Errorf("given-up delivery = %+v", d)
		}
		if claimed, err := f.st.ClaimDeliveries(f.ctx, base.Add(48*time.Hour), time.Minute, 10); err != nil || len(claimed) != 0 {
			t.Errorf("a given-up delivery was claimed: %d, %v", len(claimed), err)
		}
	})

	t.Run("DeletedWebhook", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		w, c := claimOne(t, f)
		if err := f.st.DeleteWebhook(f.ctx, w.EnvironmentID, w.ID); err != nil {
			t.Fatal(err)
		}
		if record(t, f, store.Attempt{DeliveryID: c.ID, Number: 1, Status: 200, DeliveredAt: base}) {
			t.Error("the outcome of a deleted webhook's delivery was recorded")
		}
	})
}

func testNextDelivery(t *testing.T, newStore newStoreFunc) {
	t.Run("EarliestPending", func(t *testing.T) {
		t.Parallel()
		f := setup(t, newStore)
		if _, ok, err := f.st.NextDelivery(f.ctx); ok || err != nil {
			t.Fatalf("NextDelivery on an empty store = %v, %v", ok, err)
		}
		e := f.env(t, selfHosted)
		f.webhook(t, e.ID)
		for _, at := range []time.Duration{3 * sec, sec + 5*us, 2 * sec} {
			f.item(t, e, work.Queued, base.Add(at))
		}
		at, ok, err := f.st.NextDelivery(f.ctx)
		if err != nil || !ok || !at.Equal(base.Add(sec+5*us)) {
			t.Errorf("NextDelivery = %v %v %v; want %v", fmtTime(at), ok, err, fmtTime(base.Add(sec+5*us)))
		}
		if n, err := f.st.CountPendingDeliveries(f.ctx); err != nil || n != 3 {
			t.Errorf("CountPendingDeliveries = %d, %v; want 3", n, err)
		}
	})
}

// webhookGroups are the groups of this file, for Run's table.
var webhookGroups = []struct {
	name string
	run  func(*testing.T, newStoreFunc)
}{
	{"CreateWebhook", testCreateWebhook},
	{"GetWebhook", testGetWebhook},
	{"ListWebhooks", testListWebhooks},
	{"DeleteWebhook", testDeleteWebhook},
	{"QueuesDeliveries", testQueuesDeliveries},
	{"ListDeliveries", testListDeliveries},
	{"ClaimDeliveries", testClaimDeliveries},
	{"RecordAttempt", testRecordAttempt},
	{"NextDelivery", testNextDelivery},
}
