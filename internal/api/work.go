package api

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

var errWorkNotFound = errNotFound("Work item not found.")

// workEnvironment is the prelude of every work endpoint (API.md §4): the environment must
// exist (404) and be self_hosted (400).
func (c *call) workEnvironment() (store.Environment, error) {
	env, err := c.loadEnvironment()
	if err != nil {
		return env, err
	}
	if !env.SelfHosted() {
		return env, errInvalid("environment_id", "Environment %s is not self_hosted; it has no work queue.", env.ID)
	}
	return env, nil
}

// workTarget runs the prelude and reads the path's work ID.
func (c *call) workTarget() (envID, workID string, err error) {
	env, err := c.workEnvironment()
	if err != nil {
		return "", "", err
	}
	workID = c.r.PathValue("work_id")
	if !id.Valid(id.Work, workID) {
		return "", "", errWorkNotFound
	}
	return env.ID, workID, nil
}

// workerID reads the optional Worker-ID header.
func (c *call) workerID() (string, error) {
	w := c.r.Header.Get("Worker-ID")
	if utf8.RuneCountInString(w) > maxNameLen || !printable(w) {
		return "", errInvalid("Worker-ID", "Worker-ID must be at most %d printable UTF-8 characters.", maxNameLen)
	}
	return w, nil
}

func (s *Server) listWork(c *call) error {
	env, err := c.workEnvironment()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	p, err := pageParams(q, id.Work)
	if err != nil {
		return err
	}
	states, err := work.ParseStates(q.Get("state"))
	if err != nil {
		return err
	}
	items, more, err := s.store.ListWork(c.r.Context(), env.ID, p, states)
	if err != nil {
		return err
	}
	return c.json(200, newPage(items, more, p, workID, workObject))
}

// pollWork delivers the oldest deliverable item, waiting up to block_ms for one. The
// answer when nothing came is 200 with the four bytes null.
//
// A waiting poll parks itself before each claim attempt, so that an item queued between
// the attempt and the wait still wakes it; it also wakes when a delivered item passes its
// reclaim window (NextReclaim), since that item becomes deliverable without any event.
func (s *Server) pollWork(c *call) error {
	env, err := c.workEnvironment()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	block, err := work.ParseBlock(q.Get("block_ms"), q.Has("block_ms"))
	if err != nil {
		return err
	}
	reclaim, err := work.ParseReclaim(q.Get("reclaim_older_than_ms"), q.Has("reclaim_older_than_ms"))
	if err != nil {
		return err
	}
	worker, err := c.workerID()
	if err != nil {
		return err
	}
	ctx := c.r.Context()
	if worker != "" {
		if err := s.store.RecordPoll(ctx, env.ID, worker, s.now()); err != nil {
			return err
		}
	}
	started := time.Now()
	deadline := started.Add(block)
	found := func(item work.Item) error {
		s.metrics.pollWait.Observe(time.Since(started).Seconds())
		return c.json(200, workObject(item))
	}
	for {
		// Parked before the claim, so that an item created between the two wakes it.
		wt := s.waiters.Park(env.ID, worker, reclaim)
		item, ok, err := s.claim(ctx, env.ID, worker, reclaim)
		if err != nil || ok {
			s.waiters.Leave(wt)
			if ok {
				return found(item)
			}
			return err
		}
		wake := time.Until(deadline)
		if wake <= 0 || s.closing() {
			s.waiters.Leave(wt)
			return c.null()
		}
		if at, ok, err := s.store.NextReclaim(ctx, env.ID, reclaim); err == nil && ok {
			if d := at.Sub(s.now()); d < wake {
				wake = max(d, time.Millisecond)
			}
		}
		s.waiters.Sleep(wt)
		timer := time.NewTimer(wake)
		giveUp := false
		select {
		case <-wt.C:
		case <-timer.C:
		case <-ctx.Done():
			giveUp = true
		case <-s.done:
			giveUp = true
		}
		timer.Stop()
		// An item handed over is delivered to this poll already: answer with it even
		// when giving up (a client that has gone leaves it to its reclaim window, as with
		// any answer it did not read).
		handed, woken := s.waiters.Stop(wt)
		if handed != nil {
			return found(*handed)
		}
		if giveUp {
			if woken {
				s.waiters.Notify(env.ID, 1) // not used here: pass it on
			}
			return c.null()
		}
	}
}

func (s *Server) claim(ctx context.Context, envID, worker string, reclaim time.Duration) (work.Item, bool, error) {
	item, ok, err := s.store.ClaimWork(ctx, envID, worker, reclaim, s.now())
	if ok {
		s.observeClaim(item)
	}
	return item, ok, err
}

// observeClaim counts a delivery: a reclaim, or a first delivery's pickup latency.
func (s *Server) observeClaim(item work.Item) {
	if item.Deliveries > 1 {
		s.metrics.reclaims.Inc()
	} else {
		s.metrics.pickup.Observe(item.DeliveredAt.Sub(item.CreatedAt).Seconds())
	}
}

func (s *Server) closing() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// null answers a poll that found nothing: exactly the four bytes null.
func (c *call) null() error {
	writeRaw(c.w, 200, []byte("null"))
	return nil
}

func (s *Server) workStats(c *call) error {
	env, err := c.workEnvironment()
	if err != nil {
		return err
	}
	st, err := s.store.WorkStats(c.r.Context(), env.ID, s.now())
	if err != nil {
		return err
	}
	return c.json(200, statsJSON{Type: "work_queue_stats", Depth: st.Depth, Pending: st.Pending,
		OldestQueuedAt: timestamp(st.OldestQueuedAt), WorkersPolling: st.WorkersPolling})
}

func (s *Server) getWork(c *call) error {
	envID, wid, err := c.workTarget()
	if err != nil {
		return err
	}
	it, err := s.store.GetWork(c.r.Context(), envID, wid)
	if err != nil {
		return asAPIError(err, errWorkNotFound)
	}
	return c.json(200, workObject(it))
}

// transition applies fn to the path's item atomically and answers with the result.
func (c *call) transition(envID, wid string, fn func(work.Item) (work.Item, bool, error)) (work.Item, error) {
	before := work.State("")
	it, err := c.s.store.UpdateWork(c.r.Context(), envID, wid, func(it work.Item) (work.Item, bool, error) {
		before = it.State
		return fn(it)
	})
	if err != nil {
		return it, asAPIError(err, errWorkNotFound)
	}
	if it.State != before {
		c.s.metrics.transition(string(it.State))
	}
	return it, nil
}

func (s *Server) updateWork(c *call) error {
	envID, wid, err := c.workTarget()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	patch, err := f.metadata()
	if err != nil {
		return err
	}
	it, err := c.transition(envID, wid, func(it work.Item) (work.Item, bool, error) {
		if len(patch) == 0 {
			return it, false, nil
		}
		m, err := work.MergeWork(it.Metadata, patch, "metadata")
		if err != nil {
			return it, false, err
		}
		it.Metadata = m
		return it, true, nil
	})
	if err != nil {
		return err
	}
	return c.json(200, workObject(it))
}

func (s *Server) ackWork(c *call) error {
	envID, wid, err := c.workTarget()
	if err != nil {
		return err
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	worker, err := c.workerID()
	if err != nil {
		return err
	}
	now := s.now()
	it, err := c.transition(envID, wid, func(it work.Item) (work.Item, bool, error) {
		return work.Ack(it, worker, now)
	})
	if err != nil {
		return err
	}
	return c.json(200, workObject(it))
}

// heartbeatWork extends the lease. It reads only its query; the body (none from the Go
// SDK, {} from Python) must merely be valid JSON if present.
func (s *Server) heartbeatWork(c *call) error {
	envID, wid, err := c.workTarget()
	if err != nil {
		return err
	}
	if _, err := parseFields(c.body); err != nil {
		return err
	}
	q := c.r.URL.Query()
	exp, err := work.ParseExpectation(q.Get("expected_last_heartbeat"), q.Has("expected_last_heartbeat"))
	if err != nil {
		return err
	}
	ttl, err := work.ParseTTL(q.Get("desired_ttl_seconds"), q.Has("desired_ttl_seconds"))
	if err != nil {
		return err
	}
	now := s.now()
	it, err := c.transition(envID, wid, func(it work.Item) (work.Item, bool, error) {
		next, err := work.Heartbeat(it, exp, ttl, now)
		return next, err == nil, err
	})
	if err != nil {
		if ae := asAPIError(err, nil); ae.Status == 412 {
			s.metrics.preconditionFailures.Inc()
		}
		return err
	}
	return c.json(200, heartbeatJSON{Type: "work_heartbeat", LastHeartbeat: timestamp(it.LatestHeartbeatAt),
		LeaseExtended: true, State: it.State, TTLSeconds: it.TTLSeconds})
}

// stopWork requests (force=false) or forces (force=true) a stop. force must be a boolean;
// an explicit null, which the Python SDK sends for force=None, is the default false.
func (s *Server) stopWork(c *call) error {
	envID, wid, err := c.workTarget()
	if err != nil {
		return err
	}
	f, err := parseFields(c.body)
	if err != nil {
		return err
	}
	force, err := f.boolean("force", false)
	if err != nil {
		return err
	}
	now := s.now()
	it, err := c.transition(envID, wid, func(it work.Item) (work.Item, bool, error) {
		next, changed := work.Stop(it, force, now)
		return next, changed, nil
	})
	if err != nil {
		return err
	}
	return c.json(200, workObject(it))
}
