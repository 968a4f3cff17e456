package sqlite

import (
	"context"
	"fmt"

	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// countWorkQuery counts the items by environment and state. No index holds state, so
// it reads every row of work. The unary + keeps SQLite from walking work_by_environment
// for the GROUP BY's order: that index lacks state, so the walk would look every row up
// in the table by its primary key, and measured 3.5 times slower (200,000 items: 400 ms)
// than the plain table scan it does instead (EXPLAIN QUERY PLAN: SCAN work, USE TEMP
// B-TREE FOR GROUP BY; 115 ms). Should an index on (environment_id, state) ever be added,
// drop the +: the query then reads only that index, in order (17 ms).
const countWorkQuery = `SELECT environment_id, state, count(*) FROM work GROUP BY +environment_id, state`

// CountWork implements store.Store. It is one statement on the read-only pool, which
// SQLite runs in one read transaction on one snapshot of the WAL, so the counts are
// consistent while writes go on.
func (s *Store) CountWork(ctx context.Context) ([]store.WorkCount, error) {
	counts, err := query(ctx, s.rd, func(r scanner) (store.WorkCount, error) {
		var c store.WorkCount
		var state string
		err := r.Scan(&c.EnvironmentID, &state, &c.Count)
		c.State = work.State(state)
		return c, err
	}, countWorkQuery)
	if err != nil {
		return nil, fmt.Errorf("count work: %w", err)
	}
	return counts, nil
}
