package sqlite

import (
	"context"
	"slices"
	"sync"
	"time"
)

// pollers remembers, per environment, when each Worker-ID last polled. One SQLite
// database serves one process, so memory is the whole truth here and a poll stays a
// read.
//
// Any token, a worker token included, can send polls with Worker-IDs of its choosing, so
// what is kept is bounded: polls older than the stats window go at each prune (the
// server prunes on a schedule of its own), an environment's pollers go with it, and past
// maxPollers remembered at once the oldest polls are dropped first.
type pollers struct {
	mu  sync.Mutex
	env map[string]map[string]time.Time
	n   int // entries in all of env
}

// maxPollers bounds the Worker-IDs remembered across environments: far more than real
// fleets (a Worker-ID per worker process), few enough to stay a few MiB.
const maxPollers = 100_000

func newPollers() *pollers { return &pollers{env: map[string]map[string]time.Time{}} }

func (p *pollers) record(env, worker string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.env[env]
	if m == nil {
		m = map[string]time.Time{}
		p.env[env] = m
	}
	if _, ok := m[worker]; !ok {
		p.n++
	}
	m[worker] = at
	if p.n > maxPollers {
		p.dropOldest()
	}
}

// dropOldest forgets the oldest tenth of the polls remembered. p.mu must be held.
func (p *pollers) dropOldest() {
	var all []time.Time
	for _, m := range p.env {
		for _, at := range m {
			all = append(all, at)
		}
	}
	slices.SortFunc(all, time.Time.Compare)
	p.pruneLocked(all[len(all)/10])
}

func (p *pollers) count(env string, since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, at := range p.env[env] {
		if !at.Before(since) {
			n++
		}
	}
	return n
}

func (p *pollers) prune(cutoff time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pruneLocked(cutoff)
}

func (p *pollers) pruneLocked(cutoff time.Time) {
	for env, m := range p.env {
		for w, at := range m {
			if at.Before(cutoff) {
				delete(m, w)
				p.n--
			}
		}
		if len(m) == 0 {
			delete(p.env, env)
		}
	}
}

func (p *pollers) forget(env string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n -= len(p.env[env])
	delete(p.env, env)
}

// RecordPoll implements store.Driver.
func (d *driver) RecordPoll(_ context.Context, environmentID, workerID string, now time.Time) error {
	d.pollers.record(environmentID, workerID, now)
	return nil
}

// WorkersPolling implements store.Driver.
func (d *driver) WorkersPolling(_ context.Context, environmentID string, since time.Time) (int, error) {
	return d.pollers.count(environmentID, since), nil
}

// PrunePollers implements store.Driver.
func (d *driver) PrunePollers(_ context.Context, cutoff time.Time) error {
	d.pollers.prune(cutoff)
	return nil
}
