package api

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/berth-sh/berth/internal/id"
	"github.com/berth-sh/berth/internal/wait"
	"github.com/berth-sh/berth/internal/work"
)

var errWorkNotFound = errNotFound("Work item not found.")

// workEnvironment is the prelude of every work endpoint (API.md §4): the environment must
// exist (404) and be self_hosted (400). It answers the environment's ID only, so that
// the work handlers (the poll above all, which 10,000 idle workers call every few
// seconds) do not carry the environment on their stacks: the deepest point of a poll is
// this read, and with the environment passed by value through every layer it took the
// connection's goroutine past its first 8 KiB of stack on every poll (BENCHMARKS.md,
// "The fleet's floor").
func (c *call) workEnvironment() (envID string, err error) {
	env, err := c.loadEnvironment()
	if err != nil {
		return "", err
	}
	if !env.SelfHosted() {
		return "", errInvalid("environment_id", "Environment %s is not self_hosted; it has no work queue.", env.ID)
	}
	return env.ID, nil
}

// workTarget runs the prelude and reads the path's work ID.
func (c *call) workTarget() (envID, workID string, err error) {
	envID, err = c.workEnvironment()
	if err != nil {
		return "", "", err
	}
	workID = c.r.PathValue("work_id")
	if !id.Valid(id.Work, workID) {
		return "", "", errWorkNotFound
	}
	return envID, workID, nil
}

// workerID reads the optional Worker-ID header; in the Anthropic dialect
// Anthropic-Worker-ID, or else Worker-ID (API.md §8).
func (c *call) workerID() (string, error) {
	name := "Worker-ID"
	if c.anthropic() && c.r.Header.Get("Anthropic-Worker-ID") != "" {
		name = "Anthropic-Worker-ID"
	}
	w := c.r.Header.Get(name)
	if utf8.RuneCountInString(w) > maxNameLen || !printable(w) {
		return "", errInvalid(name, "%s must be at most %d printable UTF-8 characters.", name, maxNameLen)
	}
	return w, nil
}

// work is the work object of it in the call's dialect: in the Anthropic dialect with
// "secret": null after metadata (API.md §8).
func (c *call) work(it work.Item) workJSON {
	w := workObject(it)
	if c.anthropic() {
		w.Secret = jsonNull
	}
	return w
}

func (s *Server) listWork(c *call) error {
	envID, err := c.workEnvironment()
	if err != nil {
		return err
	}
	q := c.r.URL.Query()
	p, err := c.pageParams(id.Work)
	if err != nil {
		return err
	}
	states, err := work.ParseStates(q.Get("state"))
	if err != nil {
		return err
	}
	items, more, err := s.store.ListWork(c.r.Context(), envID, p, states)
	if err != nil {
		return err
	}
	return c.json(200, newPage(items, more, p, workID, c.work))
}

// pollWork delivers the oldest deliverable item, waiting up to block_ms for one
// (internal/wait runs the wait). The answer when nothing came is 200 with the four bytes
// null.
func (s *Server) pollWork(c *call) error {
	envID, err := c.workEnvironment()
	if err != nil {
		return err
	}
	return s.pollIn(c, envID)
}

// pollIn is the poll after its prelude: a function of its own, so that its frame (the
// parameters, the wait and the answer) is not on the stack during the prelude's read,
// the poll's deepest point (see workEnvironment).
func (s *Server) pollIn(c *call, envID string) error {
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
		if err := s.store.RecordPoll(ctx, envID, worker, s.now()); err != nil {
			return err
		}
	}
	started := time.Now()
	item, ok, err := s.waiters.Poll(ctx, &wait.Poll{Env: envID, WorkerID: worker, Reclaim: reclaim, Block: block,
		Claim: func(ctx context.Context) (work.Item, bool, error) {
			return s.claim(ctx, envID, worker, reclaim)
		}})
	if err != nil {
		return err
	}
	if !ok {
		return c.null()
	}
	s.metrics.pollWait.Observe(time.Since(started).Seconds())
	return c.json(200, c.work(item))
}

func (s *Server) claim(ctx context.Context, envID, worker string, reclaim time.Duration) (work.Item, bool, error) {
	item, ok, err := s.store.ClaimWork(ctx, envID, work.Claim{WorkerID: worker, Reclaim: reclaim, At: s.now()})
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

// null answers a poll that found nothing: exactly the four bytes null.
func (c *call) null() error {
	writeRaw(c.w, 200, []byte("null"))
	return nil
}

func (s *Server) workStats(c *call) error {
	envID, err := c.workEnvironment()
	if err != nil {
		return err
	}
	st, err := s.store.WorkStats(c.r.Context(), envID, s.now())
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
	return c.json(200, c.work(it))
}

// transition applies t to the path's item atomically and answers with the result.
func (c *call) transition(envID, wid string, t work.Transition) (work.Item, error) {
	ch, err := c.s.store.UpdateWork(c.r.Context(), envID, wid, t)
	if err != nil {
		return ch.After, asAPIError(err, errWorkNotFound)
	}
	if ch.After.State != ch.Before.State {
		c.s.metrics.transition(string(ch.After.State))
	}
	return ch.After, nil
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
	it, err := c.transition(envID, wid, work.UpdateMetadata(patch))
	if err != nil {
		return err
	}
	return c.json(200, c.work(it))
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
	it, err := c.transition(envID, wid, work.Ack(worker, s.now()))
	if err != nil {
		return err
	}
	return c.json(200, c.work(it))
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
	beat := work.Heartbeat(exp, ttl, s.now())
	if c.anthropic() {
		beat = work.HeartbeatOrReport(exp, ttl, s.now())
	}
	it, err := c.transition(envID, wid, beat)
	if err != nil {
		ae := asAPIError(err, nil)
		if ae.Status == 412 {
			s.metrics.preconditionFailures.Inc()
			if c.anthropic() {
				ae = withErrorCode(ae, "heartbeat_precondition_failed")
			}
		}
		return ae
	}
	// Only the Anthropic dialect's report on a stopping or stopped item leaves the lease
	// as it was; every other success extended it.
	extended := !c.anthropic() || (it.State != work.Stopping && it.State != work.Stopped)
	return c.json(200, heartbeatJSON{Type: "work_heartbeat", LastHeartbeat: timestamp(it.LatestHeartbeatAt),
		LeaseExtended: extended, State: it.State, TTLSeconds: it.TTLSeconds})
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
	it, err := c.transition(envID, wid, work.Stop(force, s.now()))
	if err != nil {
		return err
	}
	return c.json(200, c.work(it))
}
