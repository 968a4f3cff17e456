package api_test

// Linearizability of the work item state machine (API.md §4): concurrent histories of poll,
// ack, heartbeat, stop and get, recorded over HTTP from many goroutines against a real
// server, are checked with porcupine against a sequential model of the transition table.
// The normal suite records a few hundred operations; BERTH_SOAK=1 (make soak) records tens
// of thousands. TestLinearizability also proves that the check can fail: the same history
// checked against deliberately broken models (one rule altered), and the same history with
// one impossible answer appended (a double delivery, a state moving backwards), must both
// be reported Illegal.
//
// # The model and its partitioning
//
// A history is a number of rounds; each round creates two fresh self_hosted
// environments holding linItems queued items each (one session each, created before the
// round starts, so the set of items is fixed while operations run) and then lets
// linClients goroutines send random operations on them. Every operation names one
// environment, and an environment's operations touch only its own items: poll delivers an
// item of its environment, and ack, heartbeat, stop and get address one item of it. So the
// whole history is linearizable if and only if each environment's sub-history is, and the
// model partitions by environment. Within an environment the model is exact: its state is
// every item of the environment, so poll's "oldest deliverable item" rule is checked too,
// not only each item's own transitions. A partition has a few dozen operations from 8
// clients, which porcupine checks in milliseconds; partitions are checked in parallel.
//
// The server's clock is the harness's hand-moved clock, and it does not move during a
// history. That makes every time-dependent rule exact without putting time in the model:
//   - A poll with the default reclaim window (5 s) never redelivers a delivered item; a
//     poll with reclaim_older_than_ms=0 always may. Both are sent.
//   - No lease expires (nothing runs expiry and the clock stands still), so no item moves
//     on its own and no item is requeued.
//
// The state of an item is what API.md makes observable: its state, its latest heartbeat
// (the fencing token), whether it was delivered and to which Worker-ID, and which Worker-ID
// acknowledged it. The model is deterministic except for the value of a new heartbeat:
// API.md requires only that last_heartbeat be the new latest_heartbeat_at, and the
// compare-and-set needs it to differ from every earlier one, so the model accepts any
// value strictly greater than the previous heartbeat (berth makes it max(now, previous +
// 1 µs)) and adopts it. Everything else in an answer is predicted exactly: the status,
// the delivered item (or null), the state in the answer, latest_heartbeat_at, and for a
// 412 the current_state it carries.

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/berth-sh/berth/internal/api"
	"github.com/berth-sh/berth/internal/work"
)

const (
	linItems   = 3 // items per environment
	linClients = 8 // goroutines sending operations
)

// linSoak reports whether BERTH_SOAK asks for the long versions.
func linSoak() bool {
	v := os.Getenv("BERTH_SOAK")
	return v != "" && v != "0"
}

type linKind uint8

const (
	linPoll linKind = iota
	linAck
	linHeartbeat
	linStop
	linGet
)

func (k linKind) String() string {
	return [...]string{"poll", "ack", "heartbeat", "stop", "get"}[k]
}

type linExpect uint8

const (
	linExpectAny  linExpect = iota // expected_last_heartbeat absent
	linExpectNone                  // NO_HEARTBEAT
	linExpectAt                    // a timestamp (linIn.At)
)

// linIn is an operation's input.
type linIn struct {
	Env      int // the environment's index in the history: the partition key
	Kind     linKind
	Item     int    // ack, heartbeat, stop, get: index of the item in its environment (0 = oldest)
	Worker   string // poll, ack: the Worker-ID header ("" = absent)
	Reclaim0 bool   // poll: reclaim_older_than_ms=0 (else the default window)
	Force    bool   // stop
	Expect   linExpect
	At       int64 // heartbeat with linExpectAt: µs since the Unix epoch
}

// linOut is an operation's answer, as far as the model predicts it.
type linOut struct {
	Status int
	Item   int    // poll: index of the delivered item, -1 for null
	State  string // the state in a work object, a heartbeat answer or a 412's current_state
	Beat   int64  // its latest heartbeat, µs since the Unix epoch (0: null)
}

// linItem is one item in the model.
type linItem struct {
	State       work.State
	Beat        int64 // latest_heartbeat_at (µs), 0 = none
	Delivered   bool
	DeliveredTo string
	AckedBy     string
}

// linState is the model's state of one environment (one partition). It is a comparable
// value, so porcupine's default == compares states, and Step returns a modified copy.
type linState [linItems]linItem

// linRules selects deliberately broken rules; the zero value is API.md.
type linRules struct {
	heartbeatStoppingConflicts bool // heartbeat on stopping → 409 (API.md: 200, stays stopping)
	ignoreExpectation          bool // expected_last_heartbeat never fails (API.md: mismatch → 412)
	gracefulStopStops          bool // stop force=false on starting/active → stopped (API.md: stopping)

}

// step applies in to s and reports whether out is the answer the model gives.
func (r linRules) step(s linState, in linIn, out linOut) (bool, linState) {
	if in.Kind == linPoll {
		for i := range s {
			it := &s[i]
			if it.State == work.Queued && (!it.Delivered || in.Reclaim0) {
				it.Delivered, it.DeliveredTo = true, in.Worker
				return out.Status == 200 && out.Item == i && out.State == string(work.Queued) && out.Beat == 0, s
			}
		}
		return out.Status == 200 && out.Item == -1, s
	}
	it := &s[in.Item]
	answer := func(status int) bool { // an answer carrying the (new) item
		return out.Status == status && out.State == string(it.State) && out.Beat == it.Beat
	}
	switch in.Kind {
	case linAck:
		switch it.State {
		case work.Queued:
			if in.Worker != "" && it.DeliveredTo != "" && in.Worker != it.DeliveredTo {
				return out.Status == 409, s
			}
			it.State, it.AckedBy = work.Starting, in.Worker
			if it.AckedBy == "" {
				it.AckedBy = it.DeliveredTo
			}
			return answer(200), s
		case work.Starting, work.Active:
			if in.Worker != "" && it.AckedBy != "" && in.Worker != it.AckedBy {
				return out.Status == 409, s
			}
			return answer(200), s
		default:
			return out.Status == 409, s
		}
	case linHeartbeat:
		if it.State == work.Queued || it.State == work.Stopped ||
			(r.heartbeatStoppingConflicts && it.State == work.Stopping) {
			return out.Status == 409, s
		}
		match := true
		switch in.Expect {
		case linExpectNone:
			match = it.Beat == 0
		case linExpectAt:
			match = it.Beat != 0 && it.Beat == in.At
		}
		if !match && !r.ignoreExpectation {
			return answer(412), s // current_state: the item as it is
		}
		if out.Status != 200 || out.Beat <= it.Beat {
			return false, s
		}
		if it.State == work.Starting {
			it.State = work.Active
		}
		it.Beat = out.Beat
		return answer(200), s
	case linStop:
		switch {
		case it.State == work.Stopped:
		case !in.Force && !r.gracefulStopStops && (it.State == work.Starting || it.State == work.Active):
			it.State = work.Stopping
		default:
			it.State = work.Stopped
		}
		return answer(200), s
	case linGet:
		return answer(200), s
	}
	return false, s
}

// linModel is the porcupine model of rules r, partitioned by environment.
func linModel(r linRules) porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byEnv := map[int][]porcupine.Operation{}
			var order []int
			for _, op := range history {
				e := op.Input.(linIn).Env
				if _, ok := byEnv[e]; !ok {
					order = append(order, e)
				}
				byEnv[e] = append(byEnv[e], op)
			}
			out := make([][]porcupine.Operation, 0, len(order))
			for _, e := range order {
				out = append(out, byEnv[e])
			}
			return out
		},
		Init: func() any {
			var s linState
			for i := range s {
				s[i].State = work.Queued
			}
			return s
		},
		Step: func(state, input, output any) (bool, any) {
			return r.step(state.(linState), input.(linIn), output.(linOut))
		},
		Hash: func(state any) uint64 {
			h := fnv.New64a()
			fmt.Fprintf(h, "%v", state.(linState))
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(linIn), output.(linOut)
			var b strings.Builder
			fmt.Fprintf(&b, "%s", in.Kind)
			switch in.Kind {
			case linPoll:
				fmt.Fprintf(&b, "(worker=%q reclaim0=%v)", in.Worker, in.Reclaim0)
			case linAck:
				fmt.Fprintf(&b, "(#%d worker=%q)", in.Item, in.Worker)
			case linHeartbeat:
				exp := "any"
				switch in.Expect {
				case linExpectNone:
					exp = work.NoHeartbeat
				case linExpectAt:
					exp = linFmtBeat(in.At)
				}
				fmt.Fprintf(&b, "(#%d expect=%s)", in.Item, exp)
			case linStop:
				fmt.Fprintf(&b, "(#%d force=%v)", in.Item, in.Force)
			default:
				fmt.Fprintf(&b, "(#%d)", in.Item)
			}
			fmt.Fprintf(&b, " → %d", out.Status)
			if in.Kind == linPoll && out.Status == 200 {
				if out.Item < 0 {
					b.WriteString(" null")
				} else {
					fmt.Fprintf(&b, " #%d", out.Item)
				}
			}
			if out.State != "" {
				fmt.Fprintf(&b, " %s beat=%s", out.State, linFmtBeat(out.Beat))
			}
			return b.String()
		},
		DescribeState: func(state any) string {
			s := state.(linState)
			parts := make([]string, len(s))
			for i, it := range s {
				parts[i] = fmt.Sprintf("#%d %s beat=%s delivered=%v to=%q acked_by=%q",
					i, it.State, linFmtBeat(it.Beat), it.Delivered, it.DeliveredTo, it.AckedBy)
			}
			return strings.Join(parts, "; ")
		},
	}
}

func linFmtBeat(us int64) string {
	if us == 0 {
		return "null"
	}
	return time.UnixMicro(us).UTC().Format(work.TimeLayout)
}

// linRun is one recording: a harness, an HTTP client and the history so far.
type linRun struct {
	t       *testing.T
	h       *harness
	client  *http.Client
	history []porcupine.Operation
	envs    int // environments created so far
}

func newLinRun(t *testing.T) *linRun {
	h := newHarness(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * linClients
	client := &http.Client{Transport: tr, Timeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	return &linRun{t: t, h: h, client: client}
}

// linEnv is an environment of a round: its path ID, a worker token bound to it, and its
// items' IDs, oldest first.
type linEnv struct {
	index int
	id    string
	token string
	items [linItems]string
}

// round creates envs fresh environments of linItems items each, then lets linClients
// goroutines send ops random operations each on them, and appends what they saw to the
// history.
func (lr *linRun) round(seed uint64, envs, ops int) {
	h := lr.h
	es := make([]*linEnv, envs)
	for i := range es {
		e := &linEnv{index: lr.envs, id: h.env(true)}
		lr.envs++
		e.token = h.token(api.RoleWorker, e.id)
		for j := range e.items {
			e.items[j] = h.queuedItem(e.id).ID // sessions are created in order: ascending IDs
		}
		es[i] = e
	}
	// Heartbeat tokens seen by any client, so that clients send the same expectation
	// concurrently: of those, exactly one may win.
	var mu sync.Mutex
	seen := map[[2]int]int64{}
	var wg sync.WaitGroup
	results := make([][]porcupine.Operation, linClients)
	for c := range linClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(c)))
			mine := map[[2]int]int64{} // tokens this client saw itself
			for range ops {
				e := es[rng.IntN(len(es))]
				in := linIn{Env: e.index, Item: rng.IntN(linItems)}
				key := [2]int{e.index, in.Item}
				workers := []string{"", "wa", "wb"}
				switch n := rng.IntN(100); {
				case n < 20:
					in.Kind, in.Item, in.Worker, in.Reclaim0 = linPoll, 0, workers[rng.IntN(3)], rng.IntN(2) == 0
				case n < 38:
					in.Kind, in.Worker = linAck, workers[rng.IntN(3)]
				case n < 72:
					in.Kind = linHeartbeat
					mu.Lock()
					shared := seen[key]
					mu.Unlock()
					switch m := rng.IntN(100); {
					case m < 15:
						in.Expect = linExpectAny
					case m < 35:
						in.Expect = linExpectNone
					case m < 60 && mine[key] != 0:
						in.Expect, in.At = linExpectAt, mine[key]
					case m < 90 && shared != 0:
						in.Expect, in.At = linExpectAt, shared
					case shared != 0:
						in.Expect, in.At = linExpectAt, shared-1 // stale by a microsecond
					default:
						in.Expect = linExpectNone
					}
				case n < 77: // rarely: a stop ends an item's interesting life
					in.Kind, in.Force = linStop, rng.IntN(5) == 0
				default:
					in.Kind = linGet
				}
				op, ok := lr.send(rng, e, in)
				if !ok {
					return
				}
				op.ClientId = c
				results[c] = append(results[c], op)
				if out := op.Output.(linOut); out.Beat != 0 {
					mine[key] = max(mine[key], out.Beat)
					mu.Lock()
					seen[key] = max(seen[key], out.Beat)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range results {
		lr.history = append(lr.history, r...)
	}
}

// send sends in over HTTP and returns it as an operation, timed from just before the
// request is sent to just after its answer is read. ok is false (and the test has failed)
// when the request did not get an answer.
func (lr *linRun) send(rng *rand.Rand, e *linEnv, in linIn) (op porcupine.Operation, ok bool) {
	base := lr.h.url + api.BasePath + "/environments/" + e.id + "/work"
	method, u, body := "POST", "", ""
	hdr := http.Header{}
	q := make([]string, 0, 2)
	switch in.Kind {
	case linPoll:
		method, u = "GET", base+"/poll"
		if in.Reclaim0 {
			q = append(q, "reclaim_older_than_ms=0")
		}
		if rng.IntN(8) == 0 {
			q = append(q, "block_ms=1")
		}
	case linAck:
		u = base + "/" + e.items[in.Item] + "/ack"
	case linHeartbeat:
		u = base + "/" + e.items[in.Item] + "/heartbeat"
		switch in.Expect {
		case linExpectNone:
			q = append(q, "expected_last_heartbeat="+work.NoHeartbeat)
		case linExpectAt:
			q = append(q, "expected_last_heartbeat="+linExpectation(rng, in.At))
		}
		if rng.IntN(4) == 0 {
			q = append(q, "desired_ttl_seconds="+strconv.Itoa(1+rng.IntN(900)))
		}
	case linStop:
		u = base + "/" + e.items[in.Item] + "/stop"
		body = [...]string{`{"force":false}`, `{}`, ``}[rng.IntN(3)]
		if in.Force {
			body = `{"force":true}`
		}
	case linGet:
		method, u = "GET", base+"/"+e.items[in.Item]
	}
	if in.Worker != "" {
		hdr.Set("Worker-ID", in.Worker)
	}
	if len(q) > 0 {
		u += "?" + strings.Join(q, "&")
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		lr.t.Errorf("new request: %v", err)
		return op, false
	}
	req.Header = hdr
	req.Header.Set("Authorization", "Bearer "+e.token)

	call := time.Now().UnixNano()
	res, err := lr.client.Do(req)
	if err != nil {
		lr.t.Errorf("%s %s: %v", method, u, err)
		return op, false
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	ret := time.Now().UnixNano()
	if err != nil {
		lr.t.Errorf("%s %s: read body: %v", method, u, err)
		return op, false
	}
	r := &response{Status: res.StatusCode, Header: res.Header, Body: b}
	lr.h.check(method, req.URL, r) // every answer also matches the OpenAPI document
	return porcupine.Operation{Input: in, Call: call, Output: lr.output(e, in, r), Return: ret}, true
}

// linExpectation writes a heartbeat token as expected_last_heartbeat, in one of the forms
// API.md allows: Z or +00:00, another offset, or with digits below the microsecond.
func linExpectation(rng *rand.Rand, us int64) string {
	t := time.UnixMicro(us).UTC()
	var s string
	switch rng.IntN(4) {
	case 0:
		s = t.Format(work.TimeLayout)
	case 1:
		s = t.Format("2006-01-02T15:04:05.000000-07:00") // +00:00
	case 2:
		s = t.In(time.FixedZone("", 5*3600+30*60)).Format(time.RFC3339Nano)
	default:
		s = t.Add(789 * time.Nanosecond).Format(time.RFC3339Nano) // ignored below the µs
	}
	return strings.ReplaceAll(s, "+", "%2B")
}

// output reads what the model predicts out of an answer. Anything unexpected (another
// status, an unknown item, a body that does not decode) is kept as it is, and the model
// refuses it.
func (lr *linRun) output(e *linEnv, in linIn, r *response) linOut {
	out := linOut{Status: r.Status, Item: -1}
	beat := func(s *string) int64 {
		if s == nil {
			return 0
		}
		t, err := time.Parse(time.RFC3339Nano, *s)
		if err != nil {
			return -1
		}
		return t.UnixMicro()
	}
	switch {
	case r.Status == 200 && in.Kind == linHeartbeat:
		var hb struct {
			LastHeartbeat *string `json:"last_heartbeat"`
			State         string  `json:"state"`
		}
		if json.Unmarshal(r.Body, &hb) != nil {
			out.Status = -1
		}
		out.State, out.Beat = hb.State, beat(hb.LastHeartbeat)
	case r.Status == 200:
		if in.Kind == linPoll && string(r.Body) == "null" {
			return out
		}
		var w workJSON
		if json.Unmarshal(r.Body, &w) != nil {
			out.Status = -1
		}
		out.State, out.Beat = w.State, beat(w.LatestHeartbeatAt)
		if in.Kind == linPoll {
			out.Item = -2 // not an item of this environment
			for i, id := range e.items {
				if w.ID == id {
					out.Item = i
				}
			}
		}
	case r.Status == 412:
		var env struct {
			Error struct {
				Details struct {
					CurrentState struct {
						State         string  `json:"state"`
						LastHeartbeat *string `json:"last_heartbeat"`
					} `json:"current_state"`
				} `json:"details"`
			} `json:"error"`
		}
		if json.Unmarshal(r.Body, &env) != nil {
			out.Status = -1
		}
		cs := env.Error.Details.CurrentState
		out.State, out.Beat = cs.State, beat(cs.LastHeartbeat)
	}
	return out
}

// check checks the history against model and reports the result; on anything but want it
// writes porcupine's visualization and logs its path.
func (lr *linRun) check(name string, model porcupine.Model, want porcupine.CheckResult, timeout time.Duration) {
	t := lr.t
	t.Helper()
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(model, lr.history, timeout)
	t.Logf("%s: %d operations in %d partitions: %s in %v", name, len(lr.history), lr.envs, res, time.Since(start).Round(time.Millisecond))
	if res == want {
		return
	}
	t.Errorf("%s: linearizability check: %s, want %s", name, res, want)
	if want == porcupine.Ok {
		linLogIllegal(t, model, lr.history, timeout)
	}
	_, info := porcupine.CheckOperationsVerbose(model, lr.history, timeout)
	// The visualization goes to $BERTH_TEST_ARTIFACTS, or to a fresh directory under the
	// system's temporary directory that outlives the test (t.TempDir would not).
	dir := os.Getenv("BERTH_TEST_ARTIFACTS")
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "berth-linearizability-")
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Errorf("artifacts: %v", err)
		return
	}
	file := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(name))
	path := filepath.Join(dir, "linearizability-"+file+".html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		t.Errorf("visualize: %v", err)
		return
	}
	t.Logf("visualization: %s", path)
}

// linWitnesses counts, per broken rule, the answers that no linearization can explain
// under it: a heartbeat 200 in state stopping (heartbeatStoppingConflicts), any 412
// (ignoreExpectation), any answer in state stopping (gracefulStopStops, under which nothing
// ever reaches stopping).
func linWitnesses(history []porcupine.Operation) (stoppingBeat, precondition, stopping int) {
	for _, op := range history {
		in, out := op.Input.(linIn), op.Output.(linOut)
		if in.Kind == linHeartbeat && out.Status == 200 && out.State == string(work.Stopping) {
			stoppingBeat++
		}
		if out.Status == 412 {
			precondition++
		}
		if out.State == string(work.Stopping) {
			stopping++
		}
	}
	return
}

// TestLinearizability records concurrent histories of poll, ack, heartbeat, stop and get
// over HTTP and checks that they are linearizable with respect to API.md §4's state
// machine (the model is described at the top of this file). The same history, checked
// against models with one rule altered, must be Illegal.
func TestLinearizability(t *testing.T) {
	t.Parallel()
	rounds, envs, ops, timeout := 4, 2, 12, time.Minute
	if linSoak() {
		rounds, ops, timeout = 300, 24, 30*time.Minute
	}
	if testing.Short() {
		rounds = 1
	}
	lr := newLinRun(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d: %d rounds × %d environments × %d items, %d clients × %d operations per round",
		seed, rounds, envs, linItems, linClients, ops)
	start := time.Now()
	for r := range rounds {
		lr.round(seed+uint64(r)<<32, envs, ops)
	}
	// The broken models and anomalies below are caught only if the history shows what
	// they need; random histories almost always do, and a few more rounds make sure.
	for extra := 0; extra < 20; extra++ {
		a, b, c := linWitnesses(lr.history)
		if a > 0 && b > 0 && c > 0 && len(linAnomalies(lr.history)) == 2 {
			break
		}
		lr.round(seed+uint64(rounds+extra)<<32, envs, ops)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("recorded %d operations in %v", len(lr.history), time.Since(start).Round(time.Millisecond))
	linLogSummary(t, lr.history)

	// The rules as API.md states them, on every store.
	rules := linRules{}
	lr.check("model", linModel(rules), porcupine.Ok, timeout)

	// And the right model catches a server that breaks the rules: the same history with one
	// answer added at its end, after every other operation, that no server following
	// API.md could give.
	for _, an := range linAnomalies(lr.history) {
		t.Run("anomaly/"+an.name, func(t *testing.T) {
			sub := *lr
			sub.t = t
			sub.history = append(slices.Clip(lr.history), an.op)
			sub.check("anomaly: "+an.name, linModel(rules), porcupine.Illegal, timeout)
		})
	}
	// Each broken model alters one rule; the history must refute it.
	a, b, c := linWitnesses(lr.history)
	broken := []struct {
		name      string
		rules     linRules
		witnesses int
	}{
		{"heartbeat on stopping is a conflict", linRules{heartbeatStoppingConflicts: true}, a},
		{"expected_last_heartbeat is ignored", linRules{ignoreExpectation: true}, b},
		{"graceful stop stops at once", linRules{gracefulStopStops: true}, c},
	}
	for _, bm := range broken {
		t.Run("broken/"+bm.name, func(t *testing.T) {
			if bm.witnesses == 0 {
				t.Fatalf("the history has nothing that this broken model forbids")
			}
			sub := *lr
			sub.t = t
			sub.check("broken model: "+bm.name, linModel(bm.rules), porcupine.Illegal, timeout)
		})
	}
}

// linLogSummary logs how often each operation got each answer, to show that the random
// histories exercise the whole table.
func linLogSummary(t *testing.T, history []porcupine.Operation) {
	counts := map[string]int{}
	for _, op := range history {
		in, out := op.Input.(linIn), op.Output.(linOut)
		k := fmt.Sprintf("%s %d", in.Kind, out.Status)
		if out.State != "" {
			k += " " + out.State
		} else if in.Kind == linPoll && out.Status == 200 {
			k += " null"
		}
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %d; ", k, counts[k])
	}
	t.Logf("answers: %s", b.String())
}

// linAnomaly is an answer no correct server gives, to append to a history.
type linAnomaly struct {
	name string
	op   porcupine.Operation
}

// linAnomalies makes, out of a history, answers that a correct server cannot give after
// all of it: a default-window poll that delivers an item already delivered (two workers
// holding the same item), and a get showing a stopped item back in queued (a state moving
// backwards).
func linAnomalies(history []porcupine.Operation) []linAnomaly {
	var end int64
	for _, op := range history {
		end = max(end, op.Return)
	}
	at := func(in linIn, out linOut) porcupine.Operation {
		return porcupine.Operation{ClientId: linClients, Input: in, Output: out, Call: end + 1, Return: end + 2}
	}
	var out []linAnomaly
	for _, op := range history {
		in, o := op.Input.(linIn), op.Output.(linOut)
		if in.Kind == linPoll && o.Status == 200 && o.Item >= 0 {
			out = append(out, linAnomaly{"double delivery", at(
				linIn{Env: in.Env, Kind: linPoll, Worker: "intruder"},
				linOut{Status: 200, Item: o.Item, State: string(work.Queued)})})
			break
		}
	}
	for _, op := range history {
		in, o := op.Input.(linIn), op.Output.(linOut)
		if in.Kind == linGet && o.State == string(work.Stopped) {
			out = append(out, linAnomaly{"stopped item back in queued", at(
				linIn{Env: in.Env, Kind: linGet, Item: in.Item},
				linOut{Status: 200, Item: -1, State: string(work.Queued), Beat: o.Beat})})
			break
		}
	}
	return out
}

// linLogIllegal logs, for every partition that is not linearizable, its operations in the
// order they were called, with their real-time intervals (µs from the partition's first
// call), so that a failure can be read without the visualization.
func linLogIllegal(t *testing.T, model porcupine.Model, history []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	for _, part := range model.Partition(history) {
		if porcupine.CheckOperationsTimeout(model, part, timeout) == porcupine.Ok {
			continue
		}
		part = slices.Clone(part)
		slices.SortFunc(part, func(a, b porcupine.Operation) int { return int(a.Call - b.Call) })
		var b strings.Builder
		t0 := part[0].Call
		for _, op := range part {
			fmt.Fprintf(&b, "\n  client %d [%8d, %8d] %s", op.ClientId, (op.Call-t0)/1000, (op.Return-t0)/1000,
				model.DescribeOperation(op.Input, op.Output))
		}
		t.Logf("environment %d is not linearizable:%s", part[0].Input.(linIn).Env, b.String())
	}
}
