package bench

import (
	"context"
	"testing"
	"time"
)

// The stream scenario against an in-process server whose streams may fall only one event
// behind: writers posting to few sessions at once get streams cut as slow readers, and
// the bench's readers resume them with Last-Event-ID as the official clients do. However
// often that happens, every stream still receives every event of its session once and in
// order, which the bench checks against the history.
func TestStreamResumesCutReaders(t *testing.T) {
	t.Parallel()
	r, err := Stream(context.Background(), Options{
		Sessions: 2, StreamsPerSession: 3, Writers: 8, Rate: 2000, Duration: 500 * time.Millisecond,
		streamBuffer: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Clean() || r.StreamErrors != 0 || r.WriteErrors != 0 {
		t.Fatalf("missed %d, duplicated %d, out of order %d, unknown %d, not in history %d; %d stream errors, %d write errors: %q",
			r.Missed, r.Duplicated, r.OutOfOrder, r.Unknown, r.NotInHistory, r.StreamErrors, r.WriteErrors, r.ErrorSamples)
	}
	if r.Events == 0 || r.Frames != r.Events*3 {
		t.Fatalf("%d events posted, %d frames received; want %d", r.Events, r.Frames, r.Events*3)
	}
	// The server counts each cut, and each cut stream resumed.
	if r.SlowCut != r.Reconnects {
		t.Errorf("the server cut %d slow readers; the readers resumed %d times", r.SlowCut, r.Reconnects)
	}
	t.Logf("%d events, %d frames, %d slow readers cut and resumed", r.Events, r.Frames, r.Reconnects)
}
