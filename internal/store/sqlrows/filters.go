package sqlrows

// The rules' filters that must run in SQL, each named once, beside the predicate of
// internal/work that it mirrors. storetest's FiltersMatchTheRules checks every one against
// its predicate on random items, on every driver.

// Deliverable mirrors work.Deliverable(it, now, reclaim): the item is queued, and never
// delivered or last delivered at least reclaim before now. Its one placeholder is the
// cutoff now − reclaim in microseconds (DeliverableCutoff): delivered_at is stored to the
// microsecond, so delivered_at ≤ floor(cutoff) is exactly delivered + reclaim ≤ now.
const Deliverable = `state = 'queued' AND (delivered_at IS NULL OR delivered_at <= ?)`

// Live mirrors work.State.Live: anything but stopped. It is spelled as the partial
// index's own condition, which is what lets SQLite use that index.
const Live = `state <> 'stopped'`

// Leased mirrors work.State.Leased: starting, active or stopping. It is spelled as Live
// and one more inequality, and not as an IN list, for the same reason: a WHERE that
// repeats the partial index's condition uses it; an IN list would scan the whole table.
const Leased = `state <> 'stopped' AND state <> 'queued'`

// LeaseEnded selects the candidates of work.LeaseExpired(it, now): items whose lease ends
// at or before now's microsecond (its placeholder, now in microseconds). work.ExpireLease
// then decides to the nanosecond, so a candidate whose lease ends later within that
// microsecond is left alone.
const LeaseEnded = `lease_expires_at <= ?`
