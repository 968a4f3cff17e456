package sqlite

import (
	"context"

	"github.com/berth-sh/berth/internal/work"
)

// SeedWork inserts items as they are, in one transaction, applying no rule: for
// benchmarks and tests that need a large store quickly. Not part of the storage contract.
func (s *Store) SeedWork(ctx context.Context, items []work.Item) error {
	return s.tx(ctx, func(tx *wtx) error {
		for _, it := range items {
			if err := insertWork(ctx, tx, it); err != nil {
				return err
			}
		}
		return nil
	})
}
