package api_test

// HTTP tests of poll (API.md §4.2) and stats (§4.3): the null answer, long polls woken by
// new items, one item per waiting poller, the reclaim window, workers_polling, Shutdown,
// and concurrent polls.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// parked reads the berth_work_pollers_parked gauge of the harness's server.
func (h *harness) wkParked() int {
	h.t.Helper()
	r := h.doRaw("GET", "/metrics", "")
	wantStatus(h.t, r, 200)
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "berth_work_pollers_parked "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				h.t.Fatalf("berth_work_pollers_parked %q: %v", v, err)
			}
			return int(n)
		}
	}
	h.t.Fatalf("no berth_work_pollers_parked in /metrics")
	return 0
}

// wkWaitParked lets every request in flight do all it can (the harness runs under
// testing/synctest) and then asserts that exactly n long polls are parked.
func (h *harness) wkWaitParked(n int) {
	h.t.Helper()
	synctest.Wait()
	if got := h.wkParked(); got != n {
		h.t.Fatalf("%d long polls parked, want %d", got, n)
	}
}

// syncTest runs body under testing/synctest with a harness on the bubble's clock: a
// parked poll waits for fake time, which moves only when every request has done all it
// can, so a poll woken by an item answers at the very instant it was parked, and one that
// was not woken answers exactly block_ms later, however busy the machine is.
func syncTest(t *testing.T, body func(t *testing.T, h *harness)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		h, end := newSyncHarness(t)
		defer end()
		body(t, h)
	})
}

// wantWoken asserts that a poll answered without waiting: at the fake instant it began.
func (p wkPollResult) wantWoken(t *testing.T, what string) {
	t.Helper()
	if p.elapsed != 0 {
		t.Errorf("%s answered %v after it was sent: it was not woken", what, p.elapsed)
	}
}

// wkPollResult is the outcome of a poll sent from a goroutine.
type wkPollResult struct {
	r       *response
	err     error
	elapsed time.Duration // from just before the request was sent to the whole answer
}

// item returns the delivered item (nil for null).
func (p wkPollResult) item(t *testing.T) *workJSON {
	t.Helper()
	if p.err != nil {
		t.Fatalf("poll: %v", p.err)
	}
	if p.r.Status != 200 {
		t.Fatalf("poll: status %d: %s", p.r.Status, p.r.Body)
	}
	if string(p.r.Body) == "null" {
		return nil
	}
	w := wkWorkOf(t, p.r)
	return &w
}

// pollAsync starts a poll with the raw query in a goroutine.
func (h *harness) wkPollAsync(env, query, worker string) <-chan wkPollResult {
	ch := make(chan wkPollResult, 1)
	var opts []reqOpt
	if worker != "" {
		opts = append(opts, header("Worker-ID", worker))
	}
	go func() {
		start := time.Now()
		r, err := h.wkTry("GET", "/environments/"+env+"/work/poll?"+query, "", opts...)
		ch <- wkPollResult{r, err, time.Since(start)}
	}()
	return ch
}

// stats reads an environment's queue statistics.
type wkStatsAnswer struct {
	Type           string  `json:"type"`
	Depth          int     `json:"depth"`
	Pending        int     `json:"pending"`
	OldestQueuedAt *string `json:"oldest_queued_at"`
	WorkersPolling int     `json:"workers_polling"`
}

func (h *harness) wkStats(env string) wkStatsAnswer {
	h.t.Helper()
	r := h.do("GET", "/environments/"+env+"/work/stats", "")
	wantStatus(h.t, r, 200)
	wkWantKeys(h.t, "stats", r.Body, wkStatsKeys)
	var s wkStatsAnswer
	r.decode(h.t, &s)
	if s.Type != "work_queue_stats" {
		h.t.Errorf("stats type %q", s.Type)
	}
	return s
}

func (s wkStatsAnswer) String() string {
	return fmt.Sprintf("{depth %d pending %d oldest %s polling %d}", s.Depth, s.Pending, wkNull(s.OldestQueuedAt), s.WorkersPolling)
}

// TestPollEmptyAnswersNull: with nothing deliverable, poll answers 200 and exactly the
// four bytes null with Content-Type application/json, at once without block_ms
// (API.md §4.2; CLIENTS.md §6.1).
func TestPollEmptyAnswersNull(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	for _, q := range []string{"", "?reclaim_older_than_ms=0", "?block_ms=1"} {
		r := h.do("GET", "/environments/"+env+"/work/poll"+q, "", header("Worker-ID", "w1"))
		wantStatus(t, r, 200)
		if string(r.Body) != "null" {
			t.Errorf("poll%s on an empty queue: body %q, want exactly null", q, r.Body)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("poll%s: Content-Type %q, want application/json", q, ct)
		}
	}
	// Items that are not queued are not deliverable either.
	h.itemIn(env, "active")
	h.itemIn(env, "stopped")
	r := h.do("GET", "/environments/"+env+"/work/poll", "")
	if string(r.Body) != "null" {
		t.Errorf("poll with only active/stopped items: %s, want null", r.Body)
	}
}

// TestPollOldestFirst: the oldest deliverable item (lowest ID) is delivered first, and a
// delivery does not change the item's state.
func TestPollOldestFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	var want []string
	for range 4 {
		want = append(want, h.queuedItem(env).ID)
	}
	for i, id := range want {
		w := h.poll(env, "w1")
		if w == nil || w.ID != id {
			t.Fatalf("poll %d: %+v, want %s", i, w, id)
		}
		if w.State != "queued" || w.AcknowledgedAt != nil {
			t.Errorf("delivered item %+v, want queued and unacknowledged", w)
		}
	}
	if w := h.poll(env, "w1"); w != nil {
		t.Errorf("fifth poll delivered %s", w.ID)
	}
}

// TestPollWokenByNewSession: a long poll parked before the session exists is woken by it
// and gets its item before its block_ms runs out, delivered to the poll's Worker-ID (the
// item is handed to it in the create's own transaction): an ack from another worker is
// refused and one from the poller succeeds.
func TestPollWokenByNewSession(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		res := h.wkPollAsync(env, "block_ms=999", "w1")
		h.wkWaitParked(1)
		sess := h.session(env)
		p := <-res
		w := p.item(t)
		if w == nil || w.Data["id"] != sess {
			t.Fatalf("parked poll answered %s, want the item of %s", p.r.Body, sess)
		}
		p.wantWoken(t, "the parked poll")
		if h.wkParked() != 0 {
			t.Errorf("a poll is still parked")
		}
		wantError(t, h.do("POST", workPath(env, w.ID, "/ack"), "", header("Worker-ID", "w-other")), 409, "invalid_request_error", "")
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "", header("Worker-ID", "w1")), 200)
	})
}

// TestPollWokenByDormantWakeUp: a user.message that queues a new item for a dormant
// session wakes a parked poll too.
func TestPollWokenByDormantWakeUp(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		sess := h.session(env)
		first := h.wkItemsOf(env, sess)[0]
		wantStatus(t, h.do("POST", workPath(env, first.ID, "/stop"), `{"force":true}`), 200)
		res := h.wkPollAsync(env, "block_ms=999", "w1")
		h.wkWaitParked(1)
		wantStatus(t, h.do("POST", "/sessions/"+sess+"/events", `{"events":[{"type":"user.message","content":[{"type":"text","text":"hi"}]}]}`), 200)
		p := <-res
		w := p.item(t)
		if w == nil || w.Data["id"] != sess || w.ID == first.ID {
			t.Fatalf("parked poll answered %s, want a new item of %s", p.r.Body, sess)
		}
		p.wantWoken(t, "the parked poll")
	})
}

// TestPollOneItemOnePoller: with several parked pollers and one new item, exactly one
// poller gets it and the others answer null (API.md §4.2).
func TestPollOneItemOnePoller(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		const n = 4
		var results []<-chan wkPollResult
		for i := range n {
			results = append(results, h.wkPollAsync(env, "block_ms=999", fmt.Sprintf("w%d", i)))
			h.wkWaitParked(i + 1)
		}
		sess := h.session(env)
		// The oldest parked poll gets it at once; the others sleep on.
		h.wkWaitParked(n - 1)
		p := <-results[0]
		if w := p.item(t); w == nil || w.Data["id"] != sess {
			t.Fatalf("the oldest poll answered %s, want the item of %s", p.r.Body, sess)
		}
		p.wantWoken(t, "the oldest poll")
		for _, ch := range results[1:] {
			p := <-ch
			if w := p.item(t); w != nil {
				t.Errorf("a second poll got %s", w.ID)
			}
			if p.elapsed != 999*time.Millisecond {
				t.Errorf("a poll without an item answered after %v, want its 999 ms", p.elapsed)
			}
		}
	})
}

// TestPollTwoItemsTwoPollers: two new items for three parked pollers: two get one each,
// different ones, and the third answers null.
func TestPollTwoItemsTwoPollers(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		var results []<-chan wkPollResult
		for i := range 3 {
			results = append(results, h.wkPollAsync(env, "block_ms=999", fmt.Sprintf("w%d", i)))
		}
		h.wkWaitParked(3)
		h.session(env)
		h.session(env)
		h.wkWaitParked(1)
		seen := map[string]bool{}
		for _, ch := range results {
			p := <-ch
			if w := p.item(t); w != nil {
				if seen[w.ID] {
					t.Errorf("item %s delivered twice", w.ID)
				}
				seen[w.ID] = true
				p.wantWoken(t, "a poll that got "+w.ID)
			}
		}
		if len(seen) != 2 {
			t.Errorf("%d distinct items delivered, want 2", len(seen))
		}
	})
}

// TestPollReclaimWindow: a delivered but unacknowledged item is not delivered again
// inside reclaim_older_than_ms (default 5000) and is after it; 0 redelivers at once.
func TestPollReclaimWindow(t *testing.T) {
	t.Parallel()
	t.Run("default 5000 ms", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.queuedItem(env)
		if got := h.poll(env, "A"); got == nil || got.ID != w.ID {
			t.Fatalf("first poll: %+v", got)
		}
		if got := h.poll(env, "B"); got != nil {
			t.Fatalf("redelivered at once: %s", got.ID)
		}
		h.clock.Advance(4999 * time.Millisecond)
		if got := h.poll(env, "B"); got != nil {
			t.Fatalf("redelivered after 4999 ms: %s", got.ID)
		}
		h.clock.Advance(time.Millisecond)
		got := h.poll(env, "B")
		if got == nil || got.ID != w.ID || got.State != "queued" {
			t.Fatalf("after 5000 ms: %+v, want %s again", got, w.ID)
		}
		// And again not inside the new window.
		if again := h.poll(env, "C"); again != nil {
			t.Errorf("redelivered inside the new window: %s", again.ID)
		}
	})
	t.Run("explicit window", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.queuedItem(env)
		q := "?reclaim_older_than_ms=20000"
		poll := func() *response {
			r := h.do("GET", "/environments/"+env+"/work/poll"+q, "", header("Worker-ID", "A"))
			wantStatus(t, r, 200)
			return r
		}
		if r := poll(); string(r.Body) == "null" {
			t.Fatal("first poll answered null")
		}
		h.clock.Advance(19 * time.Second)
		if r := poll(); string(r.Body) != "null" {
			t.Fatalf("redelivered after 19 s of a 20 s window: %s", r.Body)
		}
		// A default-window poll may take it (delivered 19 s ago ≥ 5 s).
		if got := h.poll(env, "B"); got == nil || got.ID != w.ID {
			t.Fatalf("default window after 19 s: %+v, want %s", got, w.ID)
		}
		h.clock.Advance(20 * time.Second)
		if r := poll(); wkWorkOf(t, r).ID != w.ID {
			t.Fatalf("after 20 s: %s", r.Body)
		}
	})
	t.Run("zero redelivers at once", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.queuedItem(env)
		for i := range 3 {
			r := h.do("GET", "/environments/"+env+"/work/poll?reclaim_older_than_ms=0", "", header("Worker-ID", fmt.Sprintf("w%d", i)))
			wantStatus(t, r, 200)
			if string(r.Body) == "null" || wkWorkOf(t, r).ID != w.ID {
				t.Fatalf("poll %d with reclaim 0: %s, want %s", i, r.Body, w.ID)
			}
		}
	})
	t.Run("acknowledged items are never reclaimed", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		env := h.env(true)
		w := h.queuedItem(env)
		h.poll(env, "A")
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "{}\n", header("Worker-ID", "A")), 200)
		h.clock.Advance(10 * time.Second)
		r := h.do("GET", "/environments/"+env+"/work/poll?reclaim_older_than_ms=0", "")
		if string(r.Body) != "null" {
			t.Errorf("acknowledged item delivered again: %s", r.Body)
		}
	})
}

// TestPollWorkersPolling: polls carrying Worker-ID are counted, per distinct Worker-ID,
// for 30 s (API.md §4.3); polls without one are not.
func TestPollWorkersPolling(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	other := h.env(true)
	if s := h.wkStats(env); s.WorkersPolling != 0 {
		t.Fatalf("fresh environment: %v", s)
	}
	h.poll(env, "w1")
	h.poll(env, "w1")
	h.poll(env, "")
	h.poll(other, "w9") // another environment's poller
	if s := h.wkStats(env); s.WorkersPolling != 1 {
		t.Errorf("after w1 twice and an anonymous poll: workers_polling %d, want 1", s.WorkersPolling)
	}
	h.clock.Advance(20 * time.Second)
	h.poll(env, "w2")
	if s := h.wkStats(env); s.WorkersPolling != 2 {
		t.Errorf("w1 20 s ago and w2 now: workers_polling %d, want 2", s.WorkersPolling)
	}
	h.clock.Advance(11 * time.Second) // w1 31 s ago, w2 11 s ago
	if s := h.wkStats(env); s.WorkersPolling != 1 {
		t.Errorf("w1 31 s ago: workers_polling %d, want 1", s.WorkersPolling)
	}
	h.clock.Advance(20 * time.Second) // w2 31 s ago
	if s := h.wkStats(env); s.WorkersPolling != 0 {
		t.Errorf("everyone over 30 s ago: workers_polling %d, want 0", s.WorkersPolling)
	}
	// A poll brings a worker back; a refused poll (bad block_ms) is not a poll.
	h.poll(env, "w1")
	wantError(t, h.do("GET", "/environments/"+env+"/work/poll?block_ms=0", "", header("Worker-ID", "w3")), 400, "invalid_request_error", "block_ms")
	if s := h.wkStats(env); s.WorkersPolling != 1 {
		t.Errorf("w1 polled again: workers_polling %d, want 1", s.WorkersPolling)
	}
	if s := h.wkStats(other); s.WorkersPolling != 0 {
		t.Errorf("other environment (w9 51 s ago): workers_polling %d, want 0", s.WorkersPolling)
	}
}

// TestPollShutdown: Server.Shutdown makes a parked poll answer null at once, and a poll
// that arrives afterwards does not wait.
func TestPollShutdown(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		res := h.wkPollAsync(env, "block_ms=999", "w1")
		h.wkWaitParked(1)
		h.srv.Shutdown()
		p := <-res
		if w := p.item(t); w != nil {
			t.Fatalf("poll answered %s, want null", p.r.Body)
		}
		if string(p.r.Body) != "null" {
			t.Errorf("body %q, want null", p.r.Body)
		}
		p.wantWoken(t, "the parked poll, at Shutdown,")
		start := time.Now()
		r := h.do("GET", "/environments/"+env+"/work/poll?block_ms=999", "")
		if string(r.Body) != "null" {
			t.Errorf("poll after Shutdown: %s", r.Body)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a poll after Shutdown waited %v", d)
		}
	})
}

// TestPollConcurrentNoDuplicates: N concurrent polls on M < N items never deliver the
// same item twice inside the reclaim window, and deliver all M (a poll answers null only
// when nothing is deliverable).
func TestPollConcurrentNoDuplicates(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	const n, m = 16, 5
	delivered := map[string]bool{}
	for round := range 4 {
		var want []string
		for range m {
			want = append(want, h.queuedItem(env).ID)
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var got []string
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r, err := h.wkTry("GET", "/environments/"+env+"/work/poll", "", header("Worker-ID", fmt.Sprintf("w%d", i)))
				if err != nil {
					t.Errorf("poll: %v", err)
					return
				}
				if r.Status != 200 {
					t.Errorf("poll: %d %s", r.Status, r.Body)
					return
				}
				if string(r.Body) == "null" {
					return
				}
				var w workJSON
				if err := json.Unmarshal(r.Body, &w); err != nil {
					t.Errorf("poll body %s: %v", r.Body, err)
					return
				}
				mu.Lock()
				got = append(got, w.ID)
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if len(got) != m {
			t.Errorf("round %d: %d deliveries, want %d (one per item): %v", round, len(got), m, got)
		}
		for _, id := range got {
			if delivered[id] {
				t.Errorf("round %d: item %s delivered twice", round, id)
			}
			delivered[id] = true
		}
		for _, id := range want {
			if !delivered[id] {
				t.Errorf("round %d: item %s never delivered", round, id)
			}
		}
	}
	if s := h.wkStats(env); s.Depth != 0 || s.Pending != 4*m || s.WorkersPolling != n {
		t.Errorf("stats after the rounds: %v, want depth 0, pending %d, polling %d", s, 4*m, n)
	}
}

// TestPollConcurrentLongPolls: parked long pollers and a burst of new items: every item
// goes to exactly one poller.
func TestPollConcurrentLongPolls(t *testing.T) {
	t.Parallel()
	syncTest(t, testPollConcurrentLongPolls)
}

func testPollConcurrentLongPolls(t *testing.T, h *harness) {
	env := h.env(true)
	const n, m = 8, 5
	var results []<-chan wkPollResult
	for i := range n {
		results = append(results, h.wkPollAsync(env, "block_ms=999", fmt.Sprintf("w%d", i)))
	}
	h.wkWaitParked(n)
	var wg sync.WaitGroup
	for range m {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := h.wkTry("POST", "/sessions", `{"agent":"a","environment_id":"`+env+`"}`); err != nil {
				t.Errorf("create session: %v", err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, ch := range results {
		p := <-ch
		if w := p.item(t); w != nil {
			if seen[w.ID] {
				t.Errorf("item %s delivered twice", w.ID)
			}
			seen[w.ID] = true
			p.wantWoken(t, "a poll that got "+w.ID)
		}
	}
	if len(seen) != m {
		t.Errorf("%d items delivered to %d parked pollers, want %d", len(seen), n, m)
	}
}

// TestWorkStats checks depth, pending, oldest_queued_at and workers_polling (API.md §4.3)
// through queued, delivered, acknowledged and reclaimable items, and the key order.
func TestWorkStats(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	env := h.env(true)
	check := func(what string, depth, pending int, oldest *string, polling int) {
		t.Helper()
		s := h.wkStats(env)
		if s.Depth != depth || s.Pending != pending || wkNull(s.OldestQueuedAt) != wkNull(oldest) || s.WorkersPolling != polling {
			t.Errorf("%s: %v, want {depth %d pending %d oldest %s polling %d}", what, s, depth, pending, wkNull(oldest), polling)
		}
	}
	check("empty", 0, 0, nil, 0)

	a := h.queuedItem(env)
	h.clock.Advance(time.Second)
	b := h.queuedItem(env)
	h.clock.Advance(time.Second)
	c := h.queuedItem(env)
	h.clock.Advance(time.Second)
	check("three queued", 3, 0, a.CreatedAt, 0)

	if w := h.poll(env, "w1"); w == nil || w.ID != a.ID {
		t.Fatalf("poll: %+v", w)
	}
	check("one delivered", 2, 1, a.CreatedAt, 1)

	wantStatus(t, h.do("POST", workPath(env, a.ID, "/ack"), "{}\n", header("Worker-ID", "w1")), 200)
	check("delivered one acknowledged", 2, 0, b.CreatedAt, 1)

	if w := h.poll(env, "w2"); w == nil || w.ID != b.ID {
		t.Fatalf("poll: %+v", w)
	}
	check("second delivered", 1, 1, b.CreatedAt, 2)

	h.clock.Advance(5 * time.Second) // b's delivery is now reclaimable
	check("delivery past the reclaim window", 2, 0, b.CreatedAt, 2)

	wantStatus(t, h.do("POST", workPath(env, c.ID, "/ack"), "{}\n"), 200) // acked without delivery
	check("c acknowledged", 1, 0, b.CreatedAt, 2)

	h.wkBeat(env, a.ID, "")
	wantStatus(t, h.do("POST", workPath(env, b.ID, "/stop"), "{}"), 200) // queued → stopped
	check("only active/starting items", 0, 0, nil, 2)

	h.clock.Advance(31 * time.Second)
	check("pollers gone", 0, 0, nil, 0)
}

// TestPollWokenByReclaim: parked polls wake when a delivered item passes its reclaim
// window (API.md §4.2), without any new item: one poll per item, at that moment, not
// every parked poll.
func TestPollWokenByReclaim(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		w := h.queuedItem(env)
		if got := h.poll(env, "A"); got == nil || got.ID != w.ID {
			t.Fatalf("first delivery: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
		const n = 5
		var results []<-chan wkPollResult
		for i := range n {
			results = append(results, h.wkPollAsync(env, "block_ms=999&reclaim_older_than_ms=300", fmt.Sprint("B", i)))
			h.wkWaitParked(i + 1)
		}
		// 200 ms later the item passes its window: the oldest poll, and only it, wakes.
		time.Sleep(200 * time.Millisecond)
		h.wkWaitParked(n - 1)
		p := <-results[0]
		got := p.item(t)
		if got == nil || got.ID != w.ID {
			t.Fatalf("parked poll answered %s, want the reclaimed %s", p.r.Body, w.ID)
		}
		if p.elapsed != 200*time.Millisecond {
			t.Errorf("the reclaimed item came %v after the poll, want 200ms (when it passed its window)", p.elapsed)
		}
		wantStatus(t, h.do("POST", workPath(env, w.ID, "/ack"), "", header("Worker-ID", "B0")), 200)
		for _, ch := range results[1:] {
			if w := (<-ch).item(t); w != nil {
				t.Errorf("a second poll got %s", w.ID)
			}
		}
	})
}

// TestPollNoItemLostToDeadlines: sessions are created while polls with a 1–3 ms block
// come and go, so that items are handed to polls whose block is running out. Every item
// reaches exactly one poll. The polls never reclaim (a one-hour window), so an item
// delivered to a poll that then answered null would never arrive.
func TestPollNoItemLostToDeadlines(t *testing.T) {
	t.Parallel()
	syncTest(t, func(t *testing.T, h *harness) {
		env := h.env(true)
		const sessions, pollers = 60, 6
		var mu sync.Mutex
		got := map[string]int{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := range pollers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					r := h.do("GET", fmt.Sprintf("/environments/%s/work/poll?block_ms=%d&reclaim_older_than_ms=3600000", env, 1+(i+n)%3), "",
						header("Worker-ID", fmt.Sprintf("w%d", i)))
					if r.Status != 200 || string(r.Body) == "null" {
						continue
					}
					var w workJSON
					r.decode(t, &w)
					mu.Lock()
					got[w.ID]++
					mu.Unlock()
				}
			}()
		}
		for range sessions {
			h.session(env)
			time.Sleep(time.Millisecond)
		}
		// Every item reaches a poll within a block or two (fake time): give it ten
		// seconds' worth of them.
		for range 10000 {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n == sessions {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if len(got) != sessions {
			t.Errorf("%d of %d items reached a poll", len(got), sessions)
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("%s delivered %d times", id, n)
			}
		}
	})
}
