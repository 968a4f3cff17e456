package api_test

// Readers that follow a list with after_id while writers add to it (API.md §1
// "Pagination", §3 "Event order") see every row exactly once: a row never appears below a
// cursor a reader already holds. Writers go through real HTTP, several at once; a
// follower pages forward from its last ID until the writers are done and one more read
// finds nothing new, and then must have seen exactly the rows the writers were answered.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/store"
	"github.com/berth-sh/berth/internal/work"
)

// followSize is how many rows each writer adds: a few hundred in `make test`, many more
// in `make soak` (BERTH_SOAK=1).
func followSize() (writers, perWriter int) {
	if os.Getenv("BERTH_SOAK") == "1" {
		return 6, 2000
	}
	return 6, 60
}

// follow runs writers that each call write perWriter times, each adding rowsPerWrite rows
// to the list at path (empty before), while a follower pages it forward with after_id. It
// checks that the follower saw every row of the list as it ends, each once, in ascending
// order.
func (h *harness) follow(t *testing.T, path string, rowsPerWrite int, write func(w, i int) error) {
	t.Helper()
	writers, perWriter := followSize()
	done := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if err := write(w, i); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	var seen []string
	cursor := ""
	page := func() int {
		q := path + "?limit=100"
		if cursor != "" {
			q += "&after_id=" + cursor
		}
		r, err := h.wkTry("GET", q, "")
		if err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %v %v", q, err, r)
		}
		var p struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("GET %s: %v", q, err)
		}
		for _, d := range p.Data {
			seen = append(seen, d.ID)
		}
		if len(p.Data) > 0 {
			cursor = p.Data[len(p.Data)-1].ID
		}
		return len(p.Data)
	}
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		if page() == 0 && finished {
			break
		}
	}
	if t.Failed() {
		return
	}
	if !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != len(seen) {
		t.Errorf("the follower saw rows out of order or twice")
	}
	// The list as it ends, read whole.
	var added []string
	for cursor = ""; ; {
		before := len(seen)
		if page() == 0 {
			break
		}
		added = append(added, seen[before:]...)
	}
	if want := writers * perWriter * rowsPerWrite; len(added) != want {
		t.Fatalf("the list holds %d rows, want %d", len(added), want)
	}
	missed := 0
	seenSet := map[string]bool{}
	for _, s := range seen {
		seenSet[s] = true
	}
	var example string
	for _, a := range added {
		if !seenSet[a] {
			missed++
			example = a
		}
	}
	if missed > 0 {
		t.Errorf("the follower missed %d of %d rows added while it followed (e.g. %s): they appeared below its cursor", missed, len(added), example)
	}
	t.Logf("%d writers added %d rows to %s; the follower saw each once", writers, len(added), path)
}

// TestFollowingEventsMissesNothing: events appended to one session by concurrent writers.
func TestFollowingEventsMissesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(false)
	sess := h.session(env)
	h.follow(t, "/sessions/"+sess+"/events", 2, func(w, i int) error {
		body := fmt.Sprintf(`{"events":[{"type":"system.message","w":%d,"i":%d},{"type":"system.message"}]}`, w, i)
		r, err := h.wkTry("POST", "/sessions/"+sess+"/events", body)
		if err == nil && r.Status != 200 {
			err = fmt.Errorf("append: %d %s", r.Status, r.Body)
		}
		return err
	})
}

// TestFollowingWorkAndSessionsMissesNothing: sessions created by concurrent writers in a
// self_hosted environment, followed as the environment's work, and as the sessions list.
func TestFollowingWorkAndSessionsMissesNothing(t *testing.T) {
	t.Parallel()
	for _, list := range []string{"work", "sessions"} {
		t.Run(list, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			env := h.env(true)
			path := "/environments/" + env + "/work"
			if list == "sessions" {
				path = "/sessions"
			}
			h.follow(t, path, 1, func(w, i int) error {
				r, err := h.wkTry("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`)
				if err == nil && r.Status != 201 {
					err = fmt.Errorf("create: %d %s", r.Status, r.Body)
				}
				return err
			})
		})
	}
}

// slowStore holds the first write of a kind until the test lets it go on.
type slowStore struct {
	store.Store
	entered chan struct{} // a held write has reached the store
	release chan struct{} // let it go on
	held    atomic.Bool
}

func (s *slowStore) hold() bool { return s.held.CompareAndSwap(false, true) }

func (s *slowStore) wait() {
	s.entered <- struct{}{}
	<-s.release
}

func (s *slowStore) AppendEvents(ctx context.Context, sessionID string, events []store.Event, now time.Time) (store.Appended, error) {
	if s.hold() {
		s.wait()
	}
	return s.Store.AppendEvents(ctx, sessionID, events, now)
}

func (s *slowStore) CreateSession(ctx context.Context, sess store.Session, events []store.Event, item *work.Item, claim *work.Claim) (store.Created, error) {
	if s.hold() {
		s.wait()
	}
	return s.Store.CreateSession(ctx, sess, events, item, claim)
}

// TestFollowerSeesTheRowsOfASlowWriter: a write that reaches the store after a later one
// has committed (its request was slower) must still land above every row a follower has
// seen. Writer A's request is held on its way into the store; writer B's completes; the
// follower reads B's rows; A goes on; the follower's next read after its cursor must
// hold A's rows. Before IDs were made in commit order, A's IDs were made when its request
// was parsed, below B's, and the follower never saw them.
func TestFollowerSeesTheRowsOfASlowWriter(t *testing.T) {
	t.Parallel()
	for _, list := range []string{"events", "work", "sessions"} {
		t.Run(list, func(t *testing.T) {
			t.Parallel()
			slow := &slowStore{entered: make(chan struct{}), release: make(chan struct{})}
			h := newHarnessWith(t, func(c *api.Config) {
				slow.Store = c.Store
				c.Store = slow
			})
			env := h.env(list != "events")
			var path, method, body string
			switch list {
			case "events":
				slow.held.Store(true) // the session's creation is not the write to hold
				sess := h.session(env)
				slow.held.Store(false)
				path = "/sessions/" + sess + "/events"
				method, body = "POST", `{"events":[{"type":"system.message"}]}`
			case "work":
				path = "/environments/" + env + "/work"
				method, body = "POST", `{"agent":"a","environment_id":"`+env+`"}`
			case "sessions":
				path = "/sessions"
				method, body = "POST", `{"agent":"a","environment_id":"`+env+`"}`
			}
			target := path
			if list != "events" {
				target = "/sessions"
			}
			aDone := make(chan *response)
			go func() {
				r, err := h.wkTry(method, target, body)
				if err != nil {
					t.Errorf("writer A: %v", err)
				}
				aDone <- r
			}()
			<-slow.entered // A is on its way into the store
			if r := h.do(method, target, body); r.Status >= 300 {
				t.Fatalf("writer B: %d %s", r.Status, r.Body)
			}
			first := tcList(t, h, path+"?limit=100").ids()
			if len(first) == 0 {
				t.Fatalf("the follower sees nothing of B's write")
			}
			cursor := first[len(first)-1]
			close(slow.release)
			if r := <-aDone; r == nil || r.Status >= 300 {
				t.Fatalf("writer A: %+v", r)
			}
			next := tcList(t, h, path+"?limit=100&after_id="+cursor).ids()
			all := tcList(t, h, path+"?limit=100").ids()
			if len(next) == 0 || len(all) != len(first)+len(next) {
				t.Errorf("after its cursor the follower finds %v; the list holds %v: A's rows went below the cursor %s", next, all, cursor)
			}
		})
	}
}
