package api

import (
	"encoding/json"
	"github.com/berth-sh/berth/internal/id"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/work"
)

// BenchmarkWorkObjectEncoding measures writing one work object, the answer of every work
// endpoint.
func BenchmarkWorkObjectEncoding(b *testing.B) {
	now := time.Date(2026, 7, 1, 8, 15, 6, 120394000, time.UTC)
	it := work.Item{
		ID: id.New(id.Work), EnvironmentID: "env_019e64e01a137caf953ac2ac7b42ec5c", SessionID: "sess_019f3be3fa66750bb9a1fbcde85b5fe1",
		State: work.Active, Metadata: work.Metadata{"job": "daily-report"}, CreatedAt: now, AcknowledgedAt: now,
		StartedAt: now, LatestHeartbeatAt: now,
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(workObject(it)); err != nil {
			b.Fatal(err)
		}
	}
}
