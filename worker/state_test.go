package worker_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/berth-sh/berth/client"
	"github.com/berth-sh/berth/worker"
)

// These tests run the worker and the server in a testing/synctest bubble, with no network
// in between: time moves only when every goroutine waits, so the cadence of the worker's
// calls is exact, and "before the next heartbeat" is a fact, not a race.

// Between heartbeats (every third of the default 60 s lease, unchanged), each running
// item reads its state about once a second, each wait drawn within ±20%: a minute of a
// running item costs one heartbeat per 20 s and about 60 reads.
func TestRunningItemReadsItsStateAboutOnceASecond(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newInProcessBench(t)
		_, item := b.session(nil)
		release := make(chan struct{})
		started := make(chan struct{})
		b.start(worker.Config{Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
			close(started)
			<-release
			return 0, nil
		})})
		<-started
		t0 := time.Now()
		time.Sleep(time.Minute)
		synctest.Wait()
		close(release)
		b.waitState(item.ID, client.StateStopped)

		var gets, hbs []call
		for _, c := range b.rec.of(item.ID, "") {
			switch {
			case c.Op == "get" && !c.Start.After(t0.Add(time.Minute)):
				gets = append(gets, c)
			case c.Op == "heartbeat":
				hbs = append(hbs, c)
			}
		}
		// The first heartbeat goes with the ack, the next at 20 s, 40 s and 60 s.
		if len(hbs) != 4 {
			t.Errorf("%d heartbeats in the first minute, want 4 (one at once, then every 20 s)", len(hbs))
		}
		for i := 1; i < len(hbs); i++ {
			if gap := hbs[i].Start.Sub(hbs[i-1].Start); gap != 20*time.Second {
				t.Errorf("heartbeat %d came %v after the one before, want 20 s", i+1, gap)
			}
		}
		if len(gets) < 50 || len(gets) > 75 {
			t.Errorf("%d state reads in a minute, want about 60 (50 to 75)", len(gets))
		}
		prev := t0
		for i, g := range gets {
			if g.Status != 200 {
				t.Errorf("state read %d answered %d", i+1, g.Status)
			}
			if gap := g.Start.Sub(prev); gap < 800*time.Millisecond || gap > 1200*time.Millisecond {
				t.Errorf("state read %d came %v after the one before, want 0.8 s to 1.2 s", i+1, gap)
			}
			prev = g.Start
		}
	})
}

// An operator's graceful stop reaches the handler (ErrStopRequested) within 1.2 s, by a
// state read, with no heartbeat sent in between (the next is due 20 s after the last);
// the stop is then confirmed as usual. A forced stop (the item goes straight to stopped)
// ends the handler as a lost lease does (ErrLeaseLost, Job.Kill closed), and the worker
// leaves the item alone.
func TestStopReachesTheHandlerBeforeTheNextHeartbeat(t *testing.T) {
	t.Parallel()
	for _, force := range []bool{false, true} {
		name := map[bool]string{false: "graceful", true: "forced"}[force]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b := newInProcessBench(t)
				_, item := b.session(nil)
				started := make(chan struct{})
				ended := make(chan causeOf, 1)
				killed := make(chan bool, 1)
				b.start(worker.Config{Handler: worker.HandlerFunc(func(ctx context.Context, job worker.Job) (int, error) {
					close(started)
					ended <- waitCtx(ctx)
					select {
					case <-job.Kill:
						killed <- true
					default:
						killed <- false
					}
					return 9, nil
				})})
				<-started
				// Somewhere between two reads, and well before the next heartbeat.
				time.Sleep(5*time.Second + 300*time.Millisecond)
				synctest.Wait()
				stopped := time.Now()
				if _, err := b.admin.StopWork(context.Background(), b.env, item.ID, force); err != nil {
					t.Fatal(err)
				}
				got := <-ended
				wantCause := map[bool]error{false: worker.ErrStopRequested, true: worker.ErrLeaseLost}[force]
				if !isErr(got.cause, wantCause) {
					t.Errorf("handler cancelled with %v, want %v", got.cause, wantCause)
				}
				if d := got.at.Sub(stopped); d > 1200*time.Millisecond {
					t.Errorf("the stop reached the handler %v after it was posted, want at most 1.2 s", d)
				}
				if k := <-killed; k != force {
					t.Errorf("Job.Kill closed: %v, want %v", k, force)
				}
				var between []call
				for _, c := range b.rec.of(item.ID, "") {
					if !c.Start.Before(stopped) && !c.Start.After(got.at) {
						between = append(between, c)
					}
				}
				if len(between) == 0 || between[len(between)-1].Op != "get" {
					t.Errorf("calls between the stop and the handler's end: %v, want a state read last", ops(between))
				}
				for _, c := range between {
					if c.Op == "heartbeat" {
						t.Errorf("a heartbeat was sent between the stop and the handler's end: %v", ops(between))
					}
				}

				final := b.waitState(item.ID, client.StateStopped)
				if force {
					synctest.Wait()
					noFinishCalls(t, b, item.ID)
					if _, ok := final.Metadata["exit_code"]; ok {
						t.Errorf("forced item: exit_code %q recorded", final.Metadata["exit_code"])
					}
				} else if final.Metadata["exit_code"] != "9" {
					t.Errorf("exit_code %q, want 9", final.Metadata["exit_code"])
				}
			})
		})
	}
}

func ops(cs []call) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Op)
	}
	return out
}
