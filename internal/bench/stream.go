package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berth-sh/berth/client"
)

// The stream scenario's defaults, and its targets (issue 13), reported against.
const (
	streamSessions      = 100
	streamPerSession    = 10
	streamRate          = 200 // events/s over all sessions
	streamWriters       = 16
	streamDuration      = 30 * time.Second
	streamOpenTimeout   = 2 * time.Minute
	streamDrainTimeout  = 30 * time.Second
	streamRetryPause    = 100 * time.Millisecond
	StreamTargetP99MS   = 10.0 // SQLite, one server
	StreamTargetP99PGMS = 50.0 // PostgreSQL, streams and writers on different replicas
	StreamTargetRSSMiB  = 200
	// benchStamp is the field of each event the writers post that carries its send time
	// (UnixNano), read back by the readers from the frame.
	benchStamp = "bench_sent_ns"
)

// StreamResult is the outcome of the stream scenario.
type StreamResult struct {
	Target            string `json:"target"`
	Sessions          int    `json:"sessions"`
	StreamsPerSession int    `json:"streams_per_session"`
	Streams           int    `json:"streams"`
	// Replicas is 2 when the streams read from one server and the writers post to
	// another (on one PostgreSQL database), else 1.
	Replicas int `json:"replicas"`
	Writers  int `json:"writers"`
	// Rate is the events/s asked of the writers, over all sessions.
	Rate float64 `json:"rate"`
	// OpenSeconds is how long the streams took to open, all of them.
	OpenSeconds float64 `json:"open_seconds"`
	// Seconds is how long the writers posted; Events the events posted (answered 200)
	// and EventsPerSec their rate. Late counts the sends the pacer had to wait for a
	// writer for: the writers could not keep the rate.
	Seconds      float64 `json:"seconds"`
	Events       int64   `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
	Late         int64   `json:"late"`
	WriteErrors  int64   `json:"write_errors"`
	// Post is the latency of each POST …/events (one event each).
	Post Latency `json:"post"`
	// Latency is each event frame's latency: from just before its POST was sent (the
	// time stamped in the event) to the frame's arrival at a stream, over every frame of
	// every stream (each event counts once per stream of its session). It includes the
	// POST up to its commit, so it errs on the slow side of commit → frame.
	Latency Latency `json:"latency"`
	// AfterAnswer is, for every frame, its arrival less the arrival of its POST's answer
	// (0 when the frame came first): commit happened before the answer, so this is a lower
	// bound of commit → frame as Latency is an upper one.
	AfterAnswer Latency `json:"after_answer"`
	// Frames is the event frames the streams received; FramesPerSec their rate over
	// Seconds plus DrainSeconds.
	Frames       int64   `json:"frames"`
	FramesPerSec float64 `json:"frames_per_sec"`
	// DrainSeconds is how long after the writers stopped it took every stream to
	// receive its session's last event.
	DrainSeconds float64 `json:"drain_seconds"`
	// Reconnects counts the streams that ended early (cut as slow readers, or failed)
	// and were resumed with Last-Event-ID; SlowCut is the server's count of streams cut
	// for being slow (berth_event_stream_slow_readers_total, over the run).
	Reconnects int64 `json:"reconnects"`
	SlowCut    int64 `json:"slow_cut"`
	// The check of every stream against the session's history (every event after the
	// stream's start, in order, each once): events missed, received twice, received
	// out of order, and received that the history does not have. All must be 0.
	// NotInHistory counts events whose POST was answered but that the history lacks.
	Missed       int64 `json:"missed"`
	Duplicated   int64 `json:"duplicated"`
	OutOfOrder   int64 `json:"out_of_order"`
	Unknown      int64 `json:"unknown"`
	NotInHistory int64 `json:"not_in_history"`
	// StreamErrors counts failed stream requests (a transport error or an answer but
	// 200); ErrorSamples shows the first few errors of any kind.
	StreamErrors int64    `json:"stream_errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// OpenStreams is the stream server's berth_event_streams once every stream was
	// open.
	OpenStreams int `json:"open_streams"`
	// Server is the stream server's process over the window from the streams' opening
	// to the drain's end (nil unless spawned); WriterServer the writers' replica's when
	// there are two.
	Server        *ProcStats    `json:"server,omitempty"`
	WriterServer  *ProcStats    `json:"writer_server,omitempty"`
	LoadGenerator *ProcStats    `json:"load_generator,omitempty"`
	ServerRuntime *RuntimeStats `json:"server_runtime,omitempty"`
}

// TargetP99MS is the p99 latency target that applies to r: across replicas, or on one
// server.
func (r *StreamResult) TargetP99MS() float64 {
	if r.Replicas > 1 {
		return StreamTargetP99PGMS
	}
	return StreamTargetP99MS
}

// Clean reports whether every stream received every event once, in order.
func (r *StreamResult) Clean() bool {
	return r.Missed == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.Unknown == 0 && r.NotInHistory == 0
}

// streamRun is one run of the stream scenario.
type streamRun struct {
	o       Options
	read    *target // the streams' server
	write   *target // the writers' server (read, unless there are two)
	rt      *http.Transport
	runCtx  context.Context
	readers []*streamReader
	// answered holds when each posted event's POST was answered (UnixNano), by ID.
	answered sync.Map
	opened   sync.WaitGroup
	caught   sync.WaitGroup

	reconnects atomic.Int64
	streamErrs atomic.Int64
	errMu      sync.Mutex
	errSamples []string
}

// streamSession is one session of the run.
type streamSession struct {
	id       string
	baseline string // its last event before the streams opened

	mu     sync.Mutex
	posted []string // events the writers posted
	last   string   // the last event posted ("" until the writers stop: see drain)
}

// streamReader is one stream: it reads frames, and resumes with Last-Event-ID when its
// stream ends early.
type streamReader struct {
	run  *streamRun
	sess *streamSession

	mu      sync.Mutex
	ids     []string
	at      []int64 // when each of ids arrived (UnixNano)
	lastID  string
	target  string // once set: the event whose arrival means caught up
	caughtU bool
	lat     []time.Duration
}

// Stream opens Options.StreamsPerSession streams (default 10) on each of
// Options.Sessions sessions (default 100) and, once they are all open, has
// Options.Writers writers post events to the sessions for Options.Duration (default
// 30 s), at Options.Rate events/s in all (default 200), round robin over the sessions.
// Each event carries its send time, which the stream reader compares with the frame's
// arrival. A stream that ends early resumes with Last-Event-ID, as the official
// clients do. After the writers stop, it waits for every stream to receive its session's
// last event, then checks every stream's events against the session's history: none
// missed, none twice, in order.
//
// With Options.Replicas = 2 (PostgreSQL, the servers started by the bench), or
// Options.WriterURL for an external second server, the streams read from one server
// and the writers post to the other.
func Stream(ctx context.Context, o Options) (_ *StreamResult, err error) {
	if o.Sessions <= 0 {
		o.Sessions = streamSessions
	}
	if o.StreamsPerSession <= 0 {
		o.StreamsPerSession = streamPerSession
	}
	if o.Rate <= 0 {
		o.Rate = streamRate
	}
	if o.Writers <= 0 {
		o.Writers = streamWriters
	}
	if o.Duration <= 0 {
		o.Duration = streamDuration
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	o.defaults()
	if o.Replicas > 2 {
		return nil, fmt.Errorf("stream: --replicas is 1 or 2")
	}
	if o.Replicas == 2 && (o.URL != "" || !o.Spawn || o.DatabaseURL == "") {
		return nil, fmt.Errorf("stream: two replicas are two berth serve processes on one PostgreSQL database: --replicas 2 needs --database-url, and neither --url nor --in-process (for external servers use --url and --writer-url)")
	}
	if o.WriterURL != "" && o.URL == "" {
		return nil, fmt.Errorf("stream: --writer-url goes with --url")
	}
	streams := o.Sessions * o.StreamsPerSession
	t, err := start(ctx, o, streams+o.Writers+16)
	if err != nil {
		return nil, err
	}
	defer t.closeInto(&err)
	r := &streamRun{o: o, read: t, write: t}
	res := &StreamResult{
		Target: t.kind, Sessions: o.Sessions, StreamsPerSession: o.StreamsPerSession, Streams: streams,
		Replicas: 1, Writers: o.Writers, Rate: o.Rate,
	}
	switch {
	case o.Replicas == 2:
		w, err := startReplica(ctx, o, o.Writers+8)
		if err != nil {
			return nil, fmt.Errorf("start the writers' replica: %w", err)
		}
		t.cleanup = append(t.cleanup, w.close)
		r.write, res.Replicas = w, 2
		res.Target = fmt.Sprintf("%s (streams); %s (writers)", t.kind, w.kind)
	case o.WriterURL != "":
		w := &target{hc: &http.Client{Transport: transport(o.Writers + 8)}, base: o.WriterURL, token: o.Token, kind: "external"}
		if w.c, err = client.New(w.base, w.token, client.WithHTTPClient(w.hc), client.WithMaxRetries(0)); err != nil {
			return nil, err
		}
		r.write, res.Replicas = w, 2
		res.Target = fmt.Sprintf("%s (streams); %s (writers)", o.URL, o.WriterURL)
	}

	// The sessions, each with a first event: where a stream cut before its first
	// frame resumes from.
	sessions := make([]*streamSession, o.Sessions)
	for i := range sessions {
		progress(o, "stream: creating sessions, %d of %d", i, o.Sessions)
		s, err := t.c.CreateSession(ctx, client.CreateSessionParams{Agent: "agent_bench", EnvironmentID: t.env, Title: fmt.Sprintf("stream bench %d", i)})
		if err != nil {
			return nil, fmt.Errorf("create session: %w", err)
		}
		evs, err := t.c.SendEvents(ctx, s.ID, []any{agentMessage(0)})
		if err != nil {
			return nil, fmt.Errorf("post the first event: %w", err)
		}
		sessions[i] = &streamSession{id: s.ID, baseline: evs[0].ID}
	}

	base, err := url.Parse(t.base)
	if err != nil {
		return nil, err
	}
	r.rt = &http.Transport{
		MaxIdleConnsPerHost: streams,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ReadBufferSize:      16 << 10,
		WriteBufferSize:     4 << 10,
	}
	defer r.rt.CloseIdleConnections()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.runCtx = runCtx

	// Open every stream, tail-only, as a live follower does, and wait until every one
	// is open: its answer's headers come once the server has subscribed it.
	openStart := time.Now()
	var wg sync.WaitGroup
	r.opened.Add(streams)
	r.caught.Add(streams)
	for _, s := range sessions {
		for range o.StreamsPerSession {
			rd := &streamReader{run: r, sess: s}
			r.readers = append(r.readers, rd)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rd.loop(base)
			}()
		}
	}
	defer func() { cancel(); wg.Wait() }()
	allOpen := make(chan struct{})
	go func() { r.opened.Wait(); close(allOpen) }()
	openTimeout := time.NewTimer(streamOpenTimeout)
	defer openTimeout.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-allOpen:
			break wait
		case <-tick.C:
			progress(o, "stream: opening %d streams, %.0f s, %d errors", streams, time.Since(openStart).Seconds(), r.streamErrs.Load())
		case <-openTimeout.C:
			return nil, fmt.Errorf("stream: the streams did not all open within %s (%d errors: %q)", streamOpenTimeout, r.streamErrs.Load(), r.samples())
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res.OpenSeconds = time.Since(openStart).Seconds()
	if m, ok := scrapeMetrics(ctx, t, t.metricsRoot(), "berth_event_streams"); ok {
		res.OpenStreams = int(m["berth_event_streams"])
	}
	slowBefore := r.slowCut(ctx)

	win, err := t.beginWindow()
	if err != nil {
		return nil, err
	}
	var writerWin *procWindow
	if r.write != t && r.write.server != nil {
		if writerWin, err = watchProc(r.write.server.cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("measure the writers' berth serve: %w", err)
		}
	}

	// Write: a pacer hands a session to a free writer every 1/Rate s.
	post := newRecorder()
	var events, writeErrs, late atomic.Int64
	jobs := make(chan *streamSession, o.Writers)
	var writers sync.WaitGroup
	for range o.Writers {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for s := range jobs {
				sent := time.Now()
				evs, err := r.write.c.SendEvents(runCtx, s.id, []any{agentMessage(sent.UnixNano())})
				answered := time.Now()
				post.add("post", answered.Sub(sent))
				if err != nil {
					if runCtx.Err() == nil {
						writeErrs.Add(1)
						r.fail(fmt.Errorf("post events: %w", err))
					}
					continue
				}
				events.Add(1)
				r.answered.Store(evs[0].ID, answered.UnixNano())
				s.mu.Lock()
				s.posted = append(s.posted, evs[0].ID)
				s.mu.Unlock()
			}
		}()
	}
	writeStart := time.Now()
	interval := time.Duration(float64(time.Second) / o.Rate)
	pace := time.NewTicker(interval)
	end := time.NewTimer(o.Duration)
	next := 0
	lastEvents, lastAt := int64(0), writeStart
writing:
	for {
		select {
		case <-pace.C:
			s := sessions[next%len(sessions)]
			next++
			select {
			case jobs <- s:
			default:
				late.Add(1)
				select {
				case jobs <- s:
				case <-end.C:
					break writing
				case <-ctx.Done():
					break writing
				}
			}
		case now := <-tick.C:
			if o.Progress != nil {
				n := events.Load()
				progress(o, "stream: %d streams, %.0f events/s, %d reconnects, %d errors", streams, float64(n-lastEvents)/now.Sub(lastAt).Seconds(), r.reconnects.Load(), writeErrs.Load()+r.streamErrs.Load())
				lastEvents, lastAt = n, now
			}
		case <-end.C:
			break writing
		case <-ctx.Done():
			break writing
		}
	}
	pace.Stop()
	close(jobs)
	writers.Wait()
	res.Seconds = time.Since(writeStart).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Drain: every stream receives its session's last event.
	drainStart := time.Now()
	for _, s := range sessions {
		s.mu.Lock()
		s.last = s.baseline
		if len(s.posted) > 0 {
			s.last = slices.Max(s.posted)
		}
		s.mu.Unlock()
	}
	for _, rd := range r.readers {
		rd.mu.Lock()
		rd.target = rd.sess.last
		rd.checkCaughtUp()
		rd.mu.Unlock()
	}
	caught := make(chan struct{})
	go func() { r.caught.Wait(); close(caught) }()
	drainTimeout := time.NewTimer(streamDrainTimeout)
	defer drainTimeout.Stop()
	select {
	case <-caught:
	case <-drainTimeout.C:
		r.fail(fmt.Errorf("not every stream received its session's last event within %s of the writers' stop", streamDrainTimeout))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res.DrainSeconds = time.Since(drainStart).Seconds()
	server, self, err := win.end()
	if err != nil {
		return nil, err
	}
	res.Server, res.LoadGenerator = server, self
	if writerWin != nil {
		if res.WriterServer, err = writerWin.end(); err != nil {
			return nil, fmt.Errorf("measure the writers' berth serve: %w", err)
		}
	}
	res.ServerRuntime = serverRuntime(ctx, t)
	if slowBefore >= 0 {
		if after := r.slowCut(ctx); after >= 0 {
			res.SlowCut = after - slowBefore
		}
	}
	progressDone(o)
	cancel()
	wg.Wait()

	res.Events = events.Load()
	res.EventsPerSec = float64(res.Events) / res.Seconds
	res.Late = late.Load()
	res.WriteErrors = writeErrs.Load()
	res.Post = post.summary()["post"]
	var all, after []time.Duration
	for _, rd := range r.readers {
		all = append(all, rd.lat...)
		res.Frames += int64(len(rd.ids))
		for i, id := range rd.ids {
			if a, ok := r.answered.Load(id); ok {
				after = append(after, time.Duration(max(0, rd.at[i]-a.(int64))))
			}
		}
	}
	res.Latency = summarize(all)
	res.AfterAnswer = summarize(after)
	res.FramesPerSec = float64(res.Frames) / (res.Seconds + res.DrainSeconds)
	res.Reconnects = r.reconnects.Load()
	res.StreamErrors = r.streamErrs.Load()
	if err := r.check(ctx, sessions, res); err != nil {
		return nil, err
	}
	r.errMu.Lock()
	res.ErrorSamples = r.errSamples
	r.errMu.Unlock()
	return res, nil
}

// startReplica starts a second `berth serve` on o's database, for the writers.
func startReplica(ctx context.Context, o Options, conns int) (*target, error) {
	w := &target{hc: &http.Client{Transport: transport(conns)}}
	ro := o
	ro.DataDir = "" // a directory of its own
	// A CPU profile is the stream server's only.
	ro.ServerArgs = nil
	for i := 0; i < len(o.ServerArgs); i++ {
		if o.ServerArgs[i] == "--cpuprofile" {
			i++
			continue
		}
		ro.ServerArgs = append(ro.ServerArgs, o.ServerArgs[i])
	}
	if err := w.startSpawned(ctx, ro); err != nil {
		w.close()
		return nil, err
	}
	c, err := client.New(w.base, w.token, client.WithHTTPClient(w.hc), client.WithMaxRetries(0))
	if err != nil {
		w.close()
		return nil, err
	}
	w.c = c
	return w, nil
}

// agentMessage is the event the writers post: an agent.message stamped with its send
// time (UnixNano).
func agentMessage(sentNS int64) json.RawMessage {
	return json.RawMessage(`{"type":"agent.message","content":[{"type":"text","text":"bench"}],"` + benchStamp + `":` + strconv.FormatInt(sentNS, 10) + `}`)
}

// slowCut reads the stream server's count of slow readers cut, -1 when it cannot.
func (r *streamRun) slowCut(ctx context.Context) int64 {
	const name = "berth_event_stream_slow_readers_total"
	m, ok := scrapeMetrics(ctx, r.read, r.read.metricsRoot(), name)
	if !ok {
		return -1
	}
	v, ok := m[name]
	if !ok {
		return -1
	}
	return int64(v)
}

// fail keeps err among the first few distinct errors.
func (r *streamRun) fail(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) >= maxErrorSamples {
		return
	}
	msg := err.Error()
	if !slices.Contains(r.errSamples, msg) {
		r.errSamples = append(r.errSamples, msg)
	}
}

func (r *streamRun) samples() []string {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return slices.Clone(r.errSamples)
}

// check compares every stream's events with its session's history after the baseline.
func (r *streamRun) check(ctx context.Context, sessions []*streamSession, res *StreamResult) error {
	byID := map[*streamSession][]string{}
	for _, s := range sessions {
		var hist []string
		for e, err := range r.read.c.AllEvents(ctx, s.id, client.ListEventsParams{ListParams: client.ListParams{Limit: 1000, AfterID: s.baseline}}) {
			if err != nil {
				return fmt.Errorf("read the history of %s: %w", s.id, err)
			}
			hist = append(hist, e.ID)
		}
		byID[s] = hist
		in := make(map[string]bool, len(hist))
		for _, id := range hist {
			in[id] = true
		}
		for _, id := range s.posted {
			if !in[id] {
				res.NotInHistory++
			}
		}
	}
	for _, rd := range r.readers {
		hist := byID[rd.sess]
		want := make(map[string]bool, len(hist))
		for _, id := range hist {
			want[id] = true
		}
		seen := make(map[string]bool, len(rd.ids))
		prev := ""
		for _, id := range rd.ids {
			switch {
			case seen[id]:
				res.Duplicated++
				continue
			case !want[id]:
				res.Unknown++
			case id < prev:
				res.OutOfOrder++
			}
			seen[id] = true
			prev = max(prev, id)
		}
		for _, id := range hist {
			if !seen[id] {
				res.Missed++
			}
		}
	}
	return nil
}

// loop reads the reader's stream until the run ends, resuming it with Last-Event-ID
// whenever it ends early.
func (rd *streamReader) loop(base *url.URL) {
	r := rd.run
	u := base.JoinPath("sessions", rd.sess.id, "events", "stream").String()
	first := true
	defer func() {
		if first {
			r.opened.Done() // never opened: do not hold the run up
		}
	}()
	for r.runCtx.Err() == nil {
		resume := ""
		if !first {
			rd.mu.Lock()
			resume = rd.lastID
			rd.mu.Unlock()
			if resume == "" {
				resume = rd.sess.baseline
			}
		}
		err := rd.read(u, resume, &first)
		if r.runCtx.Err() != nil {
			return
		}
		if err != nil {
			r.streamErrs.Add(1)
			r.fail(err)
			select {
			case <-time.After(streamRetryPause):
			case <-r.runCtx.Done():
				return
			}
			continue
		}
		if !first {
			r.reconnects.Add(1)
		}
	}
}

// read opens the stream (resuming after resume, unless "") and reads its frames until it
// ends; an error is a request that failed, nil a stream that ended.
func (rd *streamReader) read(u, resume string, first *bool) error {
	r := rd.run
	req, err := http.NewRequestWithContext(r.runCtx, "GET", u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.read.token)
	req.Header.Set("Accept", "text/event-stream")
	if resume != "" {
		req.Header.Set("Last-Event-ID", resume)
	}
	res, err := r.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("stream: %s: %s", res.Status, bytes.TrimSpace(b))
	}
	if *first {
		*first = false
		r.opened.Done()
	}
	br := bufio.NewReaderSize(res.Body, 8<<10)
	var id, typ string
	var data []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("stream: a line longer than %d bytes", br.Size())
			}
			return nil // the stream ended
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if id != "" {
				rd.frame(id, data)
				if typ == "session.deleted" {
					return nil
				}
			}
			id, typ, data = "", "", data[:0]
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("id: ")):
			id = string(line[4:])
		case bytes.HasPrefix(line, []byte("event: ")):
			typ = string(line[7:])
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[6:]...)
		}
	}
}

// frame records one event frame.
func (rd *streamReader) frame(id string, data []byte) {
	now := time.Now()
	var d time.Duration
	stamped := false
	key := []byte(`"` + benchStamp + `":`)
	if i := bytes.Index(data, key); i >= 0 {
		rest := data[i+len(key):]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if ns, err := strconv.ParseInt(string(rest[:j]), 10, 64); err == nil && ns > 0 {
			d, stamped = now.Sub(time.Unix(0, ns)), true
		}
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	rd.ids = append(rd.ids, id)
	rd.at = append(rd.at, now.UnixNano())
	if id > rd.lastID {
		rd.lastID = id
	}
	if stamped {
		rd.lat = append(rd.lat, d)
	}
	rd.checkCaughtUp()
}

// checkCaughtUp marks the reader caught up once it has its target; rd.mu is held.
func (rd *streamReader) checkCaughtUp() {
	if !rd.caughtU && rd.target != "" && rd.lastID >= rd.target {
		rd.caughtU = true
		rd.run.caught.Done()
	}
}
