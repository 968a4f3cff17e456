package work_test

import (
	"errors"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// The fixtures live on one timeline (all UTC, microsecond precision):
//
//	08:14:00            created
//	08:14:59            delivered to w1
//	08:15:00            acknowledged by w1, lease until 08:16:00
//	08:15:01            first heartbeat (started_at)
//	08:15:06.120394     latest heartbeat, lease until 08:16:06.120394
//	08:15:10            graceful stop requested
//	08:15:15            stopped
//	08:15:20.123456789  "now" of the transition tests (given in +02:00, nanoseconds)
var (
	createdAt   = time.Date(2026, 7, 1, 8, 14, 0, 0, time.UTC)
	deliveredAt = time.Date(2026, 7, 1, 8, 14, 59, 0, time.UTC)
	ackedAt     = time.Date(2026, 7, 1, 8, 15, 0, 0, time.UTC)
	startedAt   = time.Date(2026, 7, 1, 8, 15, 1, 0, time.UTC)
	lastBeat    = time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC)
	stopReqAt   = time.Date(2026, 7, 1, 8, 15, 10, 0, time.UTC)
	stoppedAt   = time.Date(2026, 7, 1, 8, 15, 15, 0, time.UTC)

	// now is 08:15:20.123456789Z written in another zone; wantNow is what berth stores
	// for it: UTC, truncated to the microsecond.
	now     = time.Date(2026, 7, 1, 10, 15, 20, 123456789, time.FixedZone("CEST", 2*3600))
	wantNow = time.Date(2026, 7, 1, 8, 15, 20, 123456000, time.UTC)
)

const (
	sec = time.Second
	us  = time.Microsecond
)

func queuedItem() work.Item {
	return work.Item{
		ID:            "work_019f3be4fd2475d9a784bf2c739e1194",
		EnvironmentID: "env_019f3be4fd2475d9a784bf2c739e1195",
		SessionID:     "sess_019f3be4fd2475d9a784bf2c739e1196",
		State:         work.Queued,
		Metadata:      work.Metadata{"team": "infra"},
		CreatedAt:     createdAt,
		DeliveredAt:   deliveredAt,
		DeliveredTo:   "w1",
		Deliveries:    1,
	}
}

func startingItem() work.Item {
	it := queuedItem()
	it.State = work.Starting
	it.AcknowledgedAt = ackedAt
	it.AckedBy = "w1"
	it.TTLSeconds = 60
	it.LeaseExpiresAt = ackedAt.Add(60 * sec)
	return it
}

func activeItem() work.Item {
	it := startingItem()
	it.State = work.Active
	it.StartedAt = startedAt
	it.LatestHeartbeatAt = lastBeat
	it.LeaseExpiresAt = lastBeat.Add(60 * sec)
	return it
}

func stoppingItem() work.Item {
	it := activeItem()
	it.State = work.Stopping
	it.StopRequestedAt = stopReqAt
	return it
}

func stoppedItem() work.Item {
	it := stoppingItem()
	it.State = work.Stopped
	it.StoppedAt = stoppedAt
	it.LeaseExpiresAt = time.Time{}
	return it
}

// fixture returns the fixture item in state s.
func fixture(s work.State) work.Item {
	switch s {
	case work.Queued:
		return queuedItem()
	case work.Starting:
		return startingItem()
	case work.Active:
		return activeItem()
	case work.Stopping:
		return stoppingItem()
	case work.Stopped:
		return stoppedItem()
	}
	panic("no fixture for state " + string(s))
}

// diffItem compares two items field by field: timestamps by instant, and every non-zero
// timestamp of got must be UTC with microsecond precision (API.md §1 "Timestamps").
func diffItem(got, want work.Item) []string {
	var d []string
	str := func(name, g, w string) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %q, want %q", name, g, w))
		}
	}
	num := func(name string, g, w int) {
		if g != w {
			d = append(d, fmt.Sprintf("%s = %d, want %d", name, g, w))
		}
	}
	tm := func(name string, g, w time.Time) {
		if g.IsZero() != w.IsZero() || !g.Equal(w) {
			d = append(d, fmt.Sprintf("%s = %s, want %s", name, fmtTime(g), fmtTime(w)))
			return
		}
		if !g.IsZero() && (g.Location() != time.UTC || g.Nanosecond()%1000 != 0) {
			d = append(d, fmt.Sprintf("%s = %s, want UTC with microsecond precision", name, g.Format(time.RFC3339Nano)))
		}
	}
	str("ID", got.ID, want.ID)
	str("EnvironmentID", got.EnvironmentID, want.EnvironmentID)
	str("SessionID", got.SessionID, want.SessionID)
	str("State", string(got.State), string(want.State))
	if !maps.Equal(got.Metadata, want.Metadata) {
		d = append(d, fmt.Sprintf("Metadata = %v, want %v", got.Metadata, want.Metadata))
	}
	tm("CreatedAt", got.CreatedAt, want.CreatedAt)
	tm("AcknowledgedAt", got.AcknowledgedAt, want.AcknowledgedAt)
	tm("StartedAt", got.StartedAt, want.StartedAt)
	tm("LatestHeartbeatAt", got.LatestHeartbeatAt, want.LatestHeartbeatAt)
	tm("StopRequestedAt", got.StopRequestedAt, want.StopRequestedAt)
	tm("StoppedAt", got.StoppedAt, want.StoppedAt)
	tm("DeliveredAt", got.DeliveredAt, want.DeliveredAt)
	str("DeliveredTo", got.DeliveredTo, want.DeliveredTo)
	num("Deliveries", got.Deliveries, want.Deliveries)
	str("AckedBy", got.AckedBy, want.AckedBy)
	tm("LeaseExpiresAt", got.LeaseExpiresAt, want.LeaseExpiresAt)
	num("TTLSeconds", got.TTLSeconds, want.TTLSeconds)
	return d
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "null"
	}
	return t.Format(time.RFC3339Nano)
}

func checkItem(t *testing.T, what string, got, want work.Item) {
	t.Helper()
	for _, d := range diffItem(got, want) {
		t.Errorf("%s: %s", what, d)
	}
}

// asError returns err as a *work.Error, failing the test if it is some other error.
// It returns nil for a nil err.
func asError(t *testing.T, err error) *work.Error {
	t.Helper()
	if err == nil {
		return nil
	}
	var e *work.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *work.Error", err, err)
	}
	return e
}

// kindOf returns the Kind of err, 0 for nil.
func kindOf(t *testing.T, err error) work.Kind {
	t.Helper()
	if e := asError(t, err); e != nil {
		return e.Kind
	}
	return 0
}

func kindName(k work.Kind) string {
	switch k {
	case 0:
		return "no error"
	case work.Invalid:
		return "Invalid (400)"
	case work.Conflict:
		return "Conflict (409)"
	case work.Precondition:
		return "Precondition (412)"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// checkInvalid asserts err is an Invalid error naming param.
func checkInvalid(t *testing.T, err error, param string) {
	t.Helper()
	e := asError(t, err)
	if e == nil {
		t.Fatalf("err = nil, want Invalid with param %q", param)
	}
	if e.Kind != work.Invalid {
		t.Errorf("Kind = %s, want %s", kindName(e.Kind), kindName(work.Invalid))
	}
	if e.Param != param {
		t.Errorf("Param = %q, want %q", e.Param, param)
	}
	if e.Error() == "" {
		t.Errorf("empty error message")
	}
}
