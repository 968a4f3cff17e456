package sqlite

import (
	"context"
	"strings"
	"testing"

	"github.com/berth-sh/berth/internal/store/sqlrows"
)

// The lease expiry, which reads five times a second, reads the leases that have ended
// and not the history: SQLite's plan for it walks the index of leases. Ordered by ID, as
// it was, SQLite walked the primary key instead and read every item ever made (300,000
// stopped items: 38 ms a scan in the sqlite3 shell, against 0.4 ms now).
func TestExpiryReadsTheLeasesOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows, err := s.d.r.QueryContext(ctx, "EXPLAIN QUERY PLAN "+sqlrows.ExpiredLeasesSQL, 1, 0, 0, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 || !strings.HasPrefix(plan[0], "SEARCH work USING INDEX work_leases (lease_expires_at") {
		t.Fatalf("the expiry's plan reads more than the index of leases: %q", plan)
	}
}
