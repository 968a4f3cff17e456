package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berth-sh/berth/internal/id"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath finds the browser: BERTH_CHROMIUM, else Debian's chromium on PATH. Without
// one the test is skipped, unless BERTH_REQUIRE_BROWSER=1 (scripts/with-chromium, which
// `make test` runs under) makes that a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("BERTH_CHROMIUM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	const msg = "no Chromium: install Debian's chromium (scripts/with-chromium does) or set BERTH_CHROMIUM to a Chromium binary"
	if os.Getenv("BERTH_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " (BERTH_REQUIRE_BROWSER=1)")
	}
	t.Skip(msg)
	return ""
}

// artifactDir is where screenshots go: BERTH_ARTIFACTS, else berth-artifacts in the
// temporary directory. Never the repository.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BERTH_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "berth-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	return dir
}

// browser is one headless Chromium tab on the fixture's dashboard.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string

	mu       sync.Mutex
	problems []string // exceptions and CSP violations seen in the page
}

// Do runs actions, failing the test (with a screenshot) if one fails.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes its value.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
	if err != nil {
		b.fail("evaluate "+js, err)
	}
	return v
}

// wait waits until the JavaScript expression js is true; while it throws (the page is
// still changing), it is false. It waits as long as it takes, up to a little before the
// test's deadline, leaving time for the failure's screenshot.
func (b *browser) wait(what, js string) {
	b.t.Helper()
	ctx := b.ctx
	if dl, ok := ctx.Deadline(); ok {
		c, cancel := context.WithDeadline(ctx, dl.Add(-10*time.Second))
		defer cancel()
		ctx = c
	}
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("(() => { try { return !!("+js+"); } catch (_) { return false; } })()",
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if err != nil {
		b.fail("wait for "+what, err)
	}
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	text, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	b.screenshot("failure")
	b.t.Fatalf("%s: %v\npage text:\n%s", what, err, text)
}

// screenshot writes a full-page PNG to the artifact directory and logs its path.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(b.dir, "dashboard-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", path)
}

// activeID is the id of the element that has the focus.
func (b *browser) activeID() string {
	b.t.Helper()
	return eval[string](b, `document.activeElement ? document.activeElement.id : ""`)
}

// press sends keys to the focused element, as a keyboard would.
func (b *browser) press(keys string) {
	b.t.Helper()
	b.do("press "+fmt.Sprintf("%q", keys), chromedp.KeyEvent(keys))
}

// gate stands for a server that restarts: while down, it answers the live views (the
// stream and the view the page asks for when a stream is refused) 503. It also counts the
// streams opened, by query.
type gate struct {
	mu      sync.Mutex
	down    bool
	streams map[string]int
	// refused receives (without blocking) when a stream is refused while down.
	refused chan struct{}
}

func newGate() *gate { return &gate{streams: map[string]int{}, refused: make(chan struct{}, 1)} }

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ui/stream" && r.URL.Path != "/ui/view" {
			next.ServeHTTP(w, r)
			return
		}
		g.mu.Lock()
		down := g.down
		if r.URL.Path == "/ui/stream" {
			g.streams[r.URL.RawQuery]++
		}
		g.mu.Unlock()
		if !down {
			next.ServeHTTP(w, r)
			return
		}
		http.Error(w, "restarting", http.StatusServiceUnavailable)
		if r.URL.Path == "/ui/stream" {
			select {
			case g.refused <- struct{}{}:
			default:
			}
		}
	})
}

func (g *gate) set(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
}

// streamsWith counts the streams whose query held s.
func (g *gate) streamsWith(s string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for q, c := range g.streams {
		if strings.Contains(q, s) {
			n += c
		}
	}
	return n
}

// TestDashboardInBrowser drives the dashboard in headless Chromium against a real API
// server: keyboard sign-in, the overview's live stats, a work item that appears without a
// reload, stops through the confirmation dialog (which a navigation closes), a session made
// from the page and its events, the work list's outcomes, workers and filters, a lost
// connection, addresses of things that do not exist, and a phone-sized viewport.
func TestDashboardInBrowser(t *testing.T) {
	t.Parallel()
	exe := chromiumPath(t)
	g := newGate()
	// The API's clock stands still: what the pages show must not depend on how fast a busy
	// machine runs the scenario (workers_polling counts the pollers of the last 30 seconds).
	start := time.Now()
	f := newFixture(t, fixtureOpt{
		interval: 100 * time.Millisecond,
		server:   func(s *http.Server) { s.Handler = g.wrap(s.Handler) },
		now:      func() time.Time { return start },
	})

	// The data a dashboard would show: a self_hosted environment with an item a worker
	// runs and one queued, an empty one, and a cloud one.
	byoc := f.apiDo(f.admin, "POST", "/environments",
		`{"name":"byoc-lab","description":"GPU workers in the lab","config":{"type":"self_hosted"}}`, 201)["id"].(string)
	staging := f.environment("staging")
	f.apiDo(f.admin, "POST", "/environments", `{"name":"cloud-sandbox"}`, 201)
	sessA := f.apiDo(f.admin, "POST", "/sessions",
		`{"agent":"agent_build","environment_id":"`+byoc+`","title":"nightly build","metadata":{"repo":"berth","branch":"main"}}`, 201)["id"].(string)
	itemA := f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work/poll", "", 200, "Worker-ID", "worker-a")["id"].(string)
	f.apiDo(f.admin, "POST", "/environments/"+byoc+"/work/"+itemA+"/ack", "", 200, "Worker-ID", "worker-a")
	f.apiDo(f.admin, "POST", "/environments/"+byoc+"/work/"+itemA+"/heartbeat?expected_last_heartbeat=NO_HEARTBEAT", "", 200)
	_, itemB := f.session(byoc)
	_ = sessA

	// Results of berth worker: one item succeeded, one failed, one runs, one waits.
	results := f.environment("results")
	_, itemOK := f.titled(results, `"title":"deploy ok"`)
	f.run(results, itemOK, "runner-1", "0")
	_, itemBad := f.titled(results, `"title":"deploy broken"`)
	f.run(results, itemBad, "runner-2.build-farm.example.internal", "3")
	_, itemRun := f.titled(results, `"title":"deploy running"`)
	f.run(results, itemRun, "runner-3", "")
	_, itemWait := f.titled(results, "")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(func(string, ...any) {}))
	// The browser lives until a little before the test's deadline, whatever happens.
	ctx, cancelTimeout := context.WithCancel(tabCtx)
	if dl, ok := t.Deadline(); ok {
		ctx, cancelTimeout = context.WithDeadline(tabCtx, dl.Add(-20*time.Second))
	}
	var proc *os.Process
	defer func() {
		// Chromium and all its processes end with the allocator, whatever happened.
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		if proc != nil && proc.Signal(syscall.Signal(0)) == nil {
			t.Errorf("Chromium (pid %d) still runs after the test", proc.Pid)
		}
	}()
	b := &browser{t: t, ctx: ctx, dir: artifactDir(t)}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium %s: %v", exe, err)
	}
	if c := chromedp.FromContext(ctx); c != nil && c.Browser != nil {
		proc = c.Browser.Process()
	}
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("page problem: %s", p)
		}
	}()

	// Sign in with the keyboard alone: Tab to the token field, a wrong token and Enter,
	// then the right one, Tab to the button and Enter.
	b.do("open the dashboard", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(f.url+"/"))
	b.wait("the sign-in form", `document.querySelector('#signin:not([hidden])') && document.activeElement.id === 'token'`)
	eval[bool](b, `(document.activeElement.blur(), true)`)
	for i := 0; b.activeID() != "token"; i++ {
		if i == 10 {
			b.fail("tab to the token field", fmt.Errorf("focus on %q", b.activeID()))
		}
		b.press(kb.Tab)
	}
	b.press("pt-" + strings.Repeat("x", 43))
	b.press(kb.Enter)
	b.wait("the sign-in error", `document.getElementById('signin-error').textContent === 'Invalid or revoked token.'`)
	if id := b.activeID(); id != "token" {
		t.Errorf("after a failed sign-in the focus is on %q, want the token field", id)
	}
	b.screenshot("signin-error")
	b.press(f.admin) // replaces the wrong token, which the form selected
	b.press(kb.Tab)
	if id := b.activeID(); id != "signin-submit" {
		t.Errorf("Tab from the token field went to %q, want the Sign in button", id)
	}
	b.press(kb.Enter)
	b.wait("the environments page", `document.getElementById('page-title')?.textContent === 'Environments'`)
	if c := eval[string](b, `document.cookie`); strings.Contains(c, "pt-") {
		t.Errorf("the token is readable by scripts: document.cookie = %q", c)
	}

	// The overview lists the environment with its live stats: depth 1 (item B), one
	// worker polling.
	row := "#env-" + byoc
	b.wait("byoc-lab's stats", `document.querySelector('`+row+` .stat-depth')?.textContent === '1' &&
		document.querySelector('`+row+` .stat-pending')?.textContent === '0' &&
		document.querySelector('`+row+` .stat-workers')?.textContent === '1'`)
	b.wait("the four environments", `document.querySelectorAll('#ov-body tbody tr').length === 4 && document.getElementById('live').textContent === 'Live'`)
	b.screenshot("overview")

	// The environment's work items; a session made through the API, outside the browser,
	// shows its item without a reload.
	b.do("open byoc-lab", chromedp.Click(chromedp.ID("link-"+byoc)))
	b.wait("items A and B", `document.getElementById('row-`+itemA+`') && document.getElementById('row-`+itemB+`')`)
	eval[bool](b, `(window.__sameDocument = true)`)
	sessC := f.apiDo(f.admin, "POST", "/sessions",
		`{"agent":"agent_review","environment_id":"`+byoc+`","title":"review PR 42","metadata":{"pr":"42","repo":"berth"},"initial_events":[{"type":"user.message","content":[{"type":"text","text":"Please review PR 42."}]}]}`, 201)["id"].(string)
	var itemC string
	for _, it := range f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work?state=queued", "", 200)["data"].([]any) {
		if w := it.(map[string]any); w["data"].(map[string]any)["id"] == sessC {
			itemC = w["id"].(string)
		}
	}
	b.wait("item C, live", `document.querySelector('#row-`+itemC+`[data-state="queued"]')`)
	b.wait("the stats, live", `document.getElementById('stat-depth').textContent === '2'`)
	if !eval[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
	b.screenshot("environment")

	// The state filter.
	eval[bool](b, `(() => { const s = document.getElementById('state-filter'); s.value = 'active'; s.dispatchEvent(new Event('change')); return true; })()`)
	b.wait("only the active item", `document.getElementById('row-`+itemA+`') && !document.getElementById('row-`+itemC+`') &&
		document.querySelectorAll('#work-body tbody tr').length === 1`)
	eval[bool](b, `(() => { const s = document.getElementById('state-filter'); s.value = ''; s.dispatchEvent(new Event('change')); return true; })()`)
	b.wait("all items", `document.querySelectorAll('#work-body tbody tr').length === 3`)

	// Item C's timeline follows a worker live: delivered, acknowledged, heartbeat.
	b.do("open item C", chromedp.Click(chromedp.ID("link-"+itemC)))
	b.wait("item C queued, with its metadata", `document.getElementById('item-state').textContent === 'queued' &&
		document.getElementById('tl-delivered').textContent.includes('Not delivered yet') &&
		document.getElementById('metadata').textContent === 'pr42repoberth'`)
	for i := 0; ; i++ { // the oldest deliverable item comes first: B, then C
		if i == 3 {
			t.Fatal("item C was never delivered")
		}
		if w := f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work/poll", "", 200, "Worker-ID", "worker-b"); w["id"] == itemC {
			break
		}
	}
	f.apiDo(f.admin, "POST", "/environments/"+byoc+"/work/"+itemC+"/ack", "", 200, "Worker-ID", "worker-b")
	f.apiDo(f.admin, "POST", "/environments/"+byoc+"/work/"+itemC+"/heartbeat?expected_last_heartbeat=NO_HEARTBEAT&desired_ttl_seconds=120", "", 200)
	b.wait("item C active, with its worker and lease", `document.getElementById('item-state').textContent === 'active' &&
		document.getElementById('tl-delivered').textContent.includes('Delivered to worker-b') &&
		document.getElementById('tl-acknowledged').textContent.includes('by worker-b') &&
		document.getElementById('tl-heartbeat').textContent.includes('Lease expires') &&
		document.getElementById('tl-heartbeat').textContent.includes('TTL 120s')`)

	// A dialog does not outlive its page: open Stop gracefully on item C, go to item A
	// (the browser's Back or a typed address): the dialog is gone, the new page has the
	// focus, and nothing was stopped.
	b.do("open Stop gracefully on item C", chromedp.Click(chromedp.ID("stop-graceful")))
	b.wait("the dialog for item C", `document.getElementById('dialog').open &&
		document.getElementById('dialog-body').textContent.includes('`+itemC+`')`)
	eval[bool](b, `(location.hash = `+jsString("#/env/"+byoc+"/work/"+itemA)+`, true)`)
	b.wait("item A's page, without the dialog", `!document.getElementById('dialog').open &&
		document.getElementById('page-title').textContent.includes('`+itemA+`') &&
		document.getElementById('item-state').textContent === 'active' &&
		document.activeElement.id === 'page-title'`)
	for _, it := range []string{itemA, itemC} {
		if s := f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work/"+it, "", 200)["state"]; s != "active" {
			t.Fatalf("item %s is %v after the navigation, want active", it, s)
		}
	}
	eval[bool](b, `(history.back(), true)`)
	b.wait("item C again", `document.getElementById('page-title').textContent.includes('`+itemC+`') &&
		document.getElementById('item-state').textContent === 'active' && !document.getElementById('dialog').open`)

	// The graceful stop's dialog: opened by keyboard, the focus inside and trapped, Escape
	// closes it and the focus comes back; then confirmed.
	b.do("focus Stop gracefully", chromedp.Focus(chromedp.ID("stop-graceful")))
	b.press(kb.Enter)
	b.wait("the dialog", `document.getElementById('dialog').open && document.activeElement.id === 'dialog-cancel'`)
	for range 3 {
		b.press(kb.Tab)
		if !eval[bool](b, `document.getElementById('dialog').contains(document.activeElement)`) {
			t.Fatalf("Tab left the dialog: focus on %q", b.activeID())
		}
	}
	b.press(kb.Escape)
	b.wait("the dialog closed by Escape, the focus back on its button",
		`!document.getElementById('dialog').open && document.activeElement.id === 'stop-graceful'`)
	if s := f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work/"+itemC, "", 200)["state"]; s != "active" {
		t.Fatalf("Escape changed the item: %v", s)
	}
	b.press(kb.Enter)
	b.wait("the dialog again", `document.getElementById('dialog').open`)
	b.screenshot("dialog")
	b.do("confirm the graceful stop", chromedp.Click(chromedp.ID("dialog-confirm")))
	b.wait("item C stopping, live", `document.getElementById('item-state').textContent === 'stopping' &&
		document.getElementById('tl-stop-requested').classList.contains('warn')`)
	b.screenshot("item-stopping")

	b.do("force stop", chromedp.Click(chromedp.ID("stop-force")))
	b.wait("the force dialog", `document.getElementById('dialog').open && document.getElementById('dialog-confirm').textContent === 'Force stop'`)
	b.do("confirm the force stop", chromedp.Click(chromedp.ID("dialog-confirm")))
	b.wait("item C stopped, live", `document.getElementById('item-state').textContent === 'stopped' &&
		document.getElementById('stop-force').getAttribute('aria-disabled') === 'true'`)
	if !eval[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
	b.screenshot("item-stopped")

	// A session made in the page, in its environment; its item shows in the list.
	b.do("back to byoc-lab", chromedp.Click(chromedp.ID("crumb-env")))
	b.wait("the work list", `document.getElementById('row-`+itemC+`')`)
	b.do("new session", chromedp.Click(chromedp.ID("new-session")))
	b.wait("the new-session dialog", `document.getElementById('dialog').open && document.activeElement.id === 'f-agent'`)
	b.do("fill in the session",
		chromedp.SendKeys(chromedp.ID("f-agent"), "agent_dashboard"),
		chromedp.SendKeys(chromedp.ID("f-title"), "made in the dashboard"),
		chromedp.SendKeys(chromedp.ID("f-message"), "Hello from the browser."),
		chromedp.Click(chromedp.ID("dialog-confirm")))
	b.wait("the dialog closed", `!document.getElementById('dialog').open && document.getElementById('toast').textContent.includes('created')`)
	var sessD, itemD string
	for _, s := range f.apiDo(f.admin, "GET", "/sessions?environment_id="+byoc, "", 200)["data"].([]any) {
		if m := s.(map[string]any); m["title"] == "made in the dashboard" {
			sessD = m["id"].(string)
		}
	}
	if sessD == "" {
		t.Fatal("the session made in the page is not in the API")
	}
	for _, it := range f.apiDo(f.admin, "GET", "/environments/"+byoc+"/work?state=queued", "", 200)["data"].([]any) {
		if w := it.(map[string]any); w["data"].(map[string]any)["id"] == sessD {
			itemD = w["id"].(string)
		}
	}
	b.wait("its work item", `document.getElementById('row-`+itemD+`')`)

	// Sessions, and one session's events.
	b.do("sessions tab", chromedp.Click(chromedp.ID("tab-sessions")))
	b.wait("the sessions", `document.getElementById('row-`+sessD+`') && document.getElementById('row-`+sessC+`')`)
	b.screenshot("sessions")
	b.do("open session D", chromedp.Click(chromedp.ID("link-"+sessD)))
	b.wait("its first message", `document.getElementById('events').textContent.includes('Hello from the browser.')`)
	f.apiDo(f.admin, "POST", "/sessions/"+sessD+"/events", `{"events":[{"type":"user.message","content":[{"type":"text","text":"And a second message."}]}]}`, 200)
	b.wait("the second message, live", `document.querySelectorAll('#events li').length === 2 &&
		document.getElementById('events').textContent.includes('And a second message.')`)
	eval[bool](b, `(window.__sameDocument = true)`)

	// The agent's side, posted through the API: a tool use with its name and input, and a
	// message; each shows its type and a readable body, live.
	toolUse := f.apiDo(f.admin, "POST", "/sessions/"+sessD+"/events",
		`{"events":[{"type":"agent.tool_use","name":"read_file","input":{"path":"README.md"}}]}`, 200)["data"].([]any)[0].(map[string]any)["id"].(string)
	b.wait("the tool use, live", `document.querySelector('#ev-`+toolUse+` .ev-type').textContent === 'agent.tool_use' &&
		document.querySelector('#ev-`+toolUse+` .ev-tool').textContent === 'read_file' &&
		document.querySelector('#ev-`+toolUse+` .ev-input').textContent.includes('"path": "README.md"') &&
		document.querySelector('#ev-`+toolUse+` time').getAttribute('datetime') !== ''`)
	f.apiDo(f.admin, "POST", "/sessions/"+sessD+"/events",
		`{"events":[{"type":"user.tool_result","tool_use_id":"`+toolUse+`","content":[{"type":"text","text":"# berth"}]}]}`, 200)
	b.wait("the tool result, live", `document.querySelector('#events li:last-child').dataset.type === 'user.tool_result' &&
		document.querySelector('#events li:last-child').textContent.includes('Result for evt_…`+toolUse[len(toolUse)-8:]+`# berth')`)
	f.apiDo(f.admin, "POST", "/sessions/"+sessD+"/events",
		`{"events":[{"type":"agent.message","content":[{"type":"text","text":"I read the README."}]}]}`, 200)
	b.wait("the agent's message, live, in order", `document.querySelectorAll('#events li').length === 5 &&
		document.querySelector('#events li:last-child').dataset.type === 'agent.message' &&
		document.querySelector('#events li:last-child .ev-text').textContent === 'I read the README.'`)

	// The message box: typed and sent with the keyboard, the message comes back live and is
	// in the session's history.
	b.do("focus the message box", chromedp.Focus(chromedp.ID("send-text")))
	b.press("Here is the tool's answer.")
	b.do("send", chromedp.Click(chromedp.ID("send-submit")))
	b.wait("the sent message, live", `document.querySelectorAll('#events li').length === 6 &&
		document.querySelector('#events li:last-child').dataset.type === 'user.message' &&
		document.querySelector('#events li:last-child .ev-text').textContent === "Here is the tool's answer." &&
		document.getElementById('send-text').value === ''`)
	hist := f.apiDo(f.admin, "GET", "/sessions/"+sessD+"/events?order=desc&limit=1", "", 200)["data"].([]any)[0].(map[string]any)
	if txt := hist["content"].([]any)[0].(map[string]any)["text"]; hist["type"] != "user.message" || txt != "Here is the tool's answer." {
		t.Errorf("the last event of the history is %v, want the message sent from the box", hist)
	}
	b.press("")
	b.do("send an empty message", chromedp.Click(chromedp.ID("send-submit")))
	b.wait("the box's complaint", `document.getElementById('send-error').textContent === 'Write a message first.' &&
		document.activeElement.id === 'send-text'`)

	// The connection is lost: the browser's EventSource reconnects with the ID of the last
	// event it got, and what was posted meanwhile comes, once.
	f.srv.CloseClientConnections()
	f.srv.Client().CloseIdleConnections() // the test's own, closed too
	f.apiDo(f.admin, "POST", "/sessions/"+sessD+"/events",
		`{"events":[{"type":"user.message","content":[{"type":"text","text":"Posted while the page reconnects."}]}]}`, 200)
	b.wait("the message posted meanwhile, once", `document.querySelectorAll('#events li').length === 7 &&
		document.querySelector('#events li:last-child .ev-text').textContent === 'Posted while the page reconnects.'`)
	if !eval[bool](b, `window.__sameDocument === true`) {
		t.Fatal("the page was reloaded")
	}
	b.screenshot("session")

	// Session C's item ran and was stopped: its status events are in its history.
	b.do("open session C", chromedp.Navigate(f.url+"/#/session/"+sessC))
	b.wait("session C's status events", `document.querySelector('#events li[data-type="session.status_running"] .ev-status')?.textContent === 'Session is running' &&
		document.querySelector('#events li[data-type="session.status_idle"] .ev-status')?.textContent.startsWith('Session is idle')`)
	b.screenshot("session-status")

	// A session deleted while its page is open: the page says it is gone.
	sessE := f.apiDo(f.admin, "POST", "/sessions", `{"agent":"agent_gone","environment_id":"`+f.environment("gone")+`"}`, 201)["id"].(string)
	b.do("open session E", chromedp.Navigate(f.url+"/#/session/"+sessE))
	b.wait("session E, live", `document.getElementById('no-events') && document.getElementById('live').textContent === 'Live'`)
	f.apiDo(f.admin, "DELETE", "/sessions/"+sessE, "", 200)
	b.wait("session E gone", `document.getElementById('page-title').textContent === 'Session not found' &&
		document.getElementById('error-message').textContent.includes(`+jsString(sessE)+`)`)

	// Paging, by keyboard: 25 items are a page of 20, newest first, and an older page of 5.
	for i := range 25 {
		f.apiDo(f.admin, "POST", "/sessions", fmt.Sprintf(`{"agent":"agent_batch","environment_id":"%s","title":"batch %d"}`, staging, i), 201)
	}
	b.do("open staging", chromedp.Navigate(f.url+"/#/env/"+staging))
	b.wait("the newest page", `document.querySelectorAll('#work-body tbody tr').length === 20 && document.getElementById('page-older')`)
	b.do("focus Older", chromedp.Focus(chromedp.ID("page-older")))
	b.press(kb.Enter)
	b.wait("the older page, the focus kept", `document.querySelectorAll('#work-body tbody tr').length === 5 &&
		document.getElementById('page-newer') && !document.getElementById('page-older') && document.activeElement.id === 'page-title'`)
	b.do("focus Newer", chromedp.Focus(chromedp.ID("page-newer")))
	b.press(kb.Enter)
	b.wait("the newer page, the newest", `document.querySelectorAll('#work-body tbody tr').length === 20 &&
		!document.getElementById('page-newer') && document.getElementById('page-older')`)

	// Filtered by outcome, the same list pages alike: 22 of the 25 failed.
	for i := range 25 {
		code := "1"
		if i >= 22 {
			code = "0"
		}
		f.apiDo(f.admin, "POST", "/sessions", fmt.Sprintf(`{"agent":"agent_batch","environment_id":"%s","title":"batch %d","metadata":{"exit_code":"%s"}}`, staging, i, code), 201)
	}
	b.do("failed items of staging", chromedp.Navigate(f.url+"/#/env/"+staging+"?outcome=failed"))
	b.wait("the newest page of failed items", `document.querySelectorAll('#work-body tbody tr[data-outcome="failed"]').length === 20 &&
		document.querySelectorAll('#work-body tbody tr').length === 20 && document.getElementById('outcome-filter').value === 'failed' &&
		document.getElementById('page-older')`)
	b.do("older failed items", chromedp.Click(chromedp.ID("page-older")))
	b.wait("the older page of failed items", `document.querySelectorAll('#work-body tbody tr[data-outcome="failed"]').length === 2 &&
		document.querySelectorAll('#work-body tbody tr').length === 2 && !document.getElementById('page-older') &&
		document.getElementById('page-newer') && location.hash.includes('outcome=failed')`)

	// The work list's outcomes, workers and session titles.
	b.do("open results", chromedp.Navigate(f.url+"/#/env/"+results))
	tr := func(id string) string { return `document.getElementById('row-` + id + `')` }
	b.wait("the results", tr(itemOK)+`.dataset.outcome === 'succeeded' &&
		`+tr(itemOK)+`.querySelector('td.outcome').textContent === 'exit 0' &&
		`+tr(itemOK)+`.querySelector('td.worker').textContent === 'runner-1' &&
		`+tr(itemOK)+`.querySelector('td.session').textContent.startsWith('deploy ok') &&
		`+tr(itemBad)+`.dataset.outcome === 'failed' &&
		`+tr(itemBad)+`.querySelector('td.outcome').textContent === 'exit 3' &&
		`+tr(itemBad)+`.querySelector('td.worker').textContent === 'runner-2.build-farm.example.internal' &&
		`+tr(itemRun)+`.querySelector('td.outcome').textContent === '—' &&
		`+tr(itemRun)+`.querySelector('td.worker').textContent === 'runner-3' &&
		`+tr(itemRun)+`.querySelector('td.session').textContent.startsWith('deploy running') &&
		`+tr(itemWait)+`.querySelector('td.outcome').textContent === '—' &&
		`+tr(itemWait)+`.querySelector('td.worker').textContent === '—' &&
		`+tr(itemWait)+`.querySelector('td.session .title') === null`)
	b.screenshot("results")

	// The connection is lost (the server restarts): the page says so and tries again, and
	// when the server is back it is live again.
	b.wait("live", `document.getElementById('live').textContent === 'Live'`)
	g.set(true)
	f.srv.CloseClientConnections()
	select {
	case <-g.refused: // the page tried to reconnect, and the server refused
	case <-patience(t, 30*time.Second).Done():
		b.fail("wait for the page to find the server down", context.DeadlineExceeded)
	}
	b.wait("reconnecting", `document.getElementById('live').textContent === 'Reconnecting…' && `+tr(itemBad))
	g.set(false)
	_, itemAfter := f.titled(results, `"title":"after the outage"`)
	b.wait("live again, with what happened meanwhile", `document.getElementById('live').textContent === 'Live' &&
		`+tr(itemAfter)+`.querySelector('td.session').textContent.startsWith('after the outage')`)

	// The outcome filter, with the state filter and without.
	filter := func(state, outcome string) {
		t.Helper()
		eval[bool](b, `(() => {
			const s = document.getElementById('state-filter'); s.value = `+jsString(state)+`; s.dispatchEvent(new Event('change'));
			const o = document.getElementById('outcome-filter'); o.value = `+jsString(outcome)+`; o.dispatchEvent(new Event('change'));
			return true; })()`)
	}
	only := func(what string, ids ...string) {
		t.Helper()
		js := `document.querySelectorAll('#work-body tbody tr').length === ` + fmt.Sprint(len(ids))
		for _, id := range ids {
			js += ` && ` + tr(id)
		}
		b.wait(what, js)
	}
	filter("", "failed")
	only("the failed item", itemBad)
	filter("", "succeeded")
	only("the item that succeeded", itemOK)
	filter("", "none")
	only("the items without exit code", itemRun, itemWait, itemAfter)
	filter("active", "none")
	only("the running item", itemRun)
	if h := eval[string](b, `location.hash`); !strings.Contains(h, "state=active") || !strings.Contains(h, "outcome=none") {
		t.Errorf("the address does not keep both filters: %s", h)
	}
	filter("stopped", "none")
	b.wait("no stopped item without exit code", `document.getElementById('work-body').textContent === 'No work items match these filters.' &&
		document.getElementById('state-filter').value === 'stopped' && document.getElementById('outcome-filter').value === 'none'`)
	filter("", "")
	only("all the results", itemOK, itemBad, itemRun, itemWait, itemAfter)

	// Addresses of things that do not exist, or that cannot be IDs: each page says what
	// is wrong under a clear heading, with a way back, and does not try again.
	unknownEnv, unknownWork, unknownSess := id.New(id.Environment), id.New(id.Work), id.New(id.Session)
	for _, tc := range []struct {
		name, hash, title, message string
		envLink                    bool
	}{
		{"malformed environment", "#/env/env_nope", "Environment not found", "“env_nope” is not a valid environment ID", false},
		{"unknown environment", "#/env/" + unknownEnv, "Environment not found", "No environment has the ID " + unknownEnv + ":", false},
		{"unknown environment's sessions", "#/env/" + unknownEnv + "/sessions", "Environment not found", "No environment has the ID " + unknownEnv + ":", false},
		{"malformed work item", "#/env/" + byoc + "/work/garbage", "Work item not found", "“garbage” is not a valid work item ID", true},
		{"unknown work item", "#/env/" + byoc + "/work/" + unknownWork, "Work item not found", "No work item has the ID " + unknownWork + ":", true},
		{"malformed session", "#/session/sess_0000", "Session not found", "“sess_0000” is not a valid session ID", false},
		{"unknown session", "#/session/" + unknownSess, "Session not found", "No session has the ID " + unknownSess + ":", false},
		{"unknown page", "#/work/garbage", "Page not found", "The dashboard has no page at #/work/garbage.", false},
		{"malformed cursor", "#/env/" + byoc + "?before=garbage", "Invalid address", `before: "garbage" is not a valid work item ID`, true},
	} {
		eval[bool](b, `(location.hash = `+jsString(tc.hash)+`, true)`)
		b.wait(tc.name, `document.getElementById('page-title').textContent === `+jsString(tc.title)+` &&
			document.getElementById('error-message').textContent.includes(`+jsString(tc.message)+`) &&
			document.getElementById('error-back').getAttribute('href') === '#/' &&
			!!document.getElementById('error-env') === `+fmt.Sprint(tc.envLink)+` &&
			document.getElementById('live').textContent === '' && document.title === `+jsString(tc.title+" · berth"))
		b.screenshot("error-" + strings.ReplaceAll(tc.name, " ", "-"))
	}
	// The way back from the cursor's error: the environment's newest page, live.
	b.do("back to byoc-lab", chromedp.Click(chromedp.ID("error-env")))
	b.wait("byoc-lab, live", `document.getElementById('row-`+itemA+`') && document.getElementById('live').textContent === 'Live'`)
	// A stream was opened once for each address that is an ID, and never for the others.
	for _, tc := range []struct {
		id   string
		want int
	}{{unknownEnv, 2}, {unknownWork, 1}, {unknownSess, 1}, {"env_nope", 0}, {"sess_0000", 0}, {"garbage", 1}} {
		if n := g.streamsWith(tc.id); n != tc.want {
			t.Errorf("streams for %s: %d, want %d", tc.id, n, tc.want)
		}
	}

	// A phone: the same pages in one column, nothing wider than the screen.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch),
		chromedp.Navigate(f.url+"/#/"))
	// byoc-lab: D queued, and B pending (delivered to worker-b, which never acknowledged it;
	// the API's clock stands still, so its reclaim window never ends).
	b.wait("the overview on a phone", `document.querySelector('`+row+` .stat-depth')?.textContent === '1' &&
		document.querySelector('`+row+` .stat-pending')?.textContent === '1'`)
	for _, page := range []struct{ name, hash, ready string }{
		{"phone-overview", "#/", `document.querySelector('` + row + ` .stat-depth')`},
		{"phone-environment", "#/env/" + byoc, `document.getElementById('row-` + itemC + `')`},
		{"phone-item", "#/env/" + byoc + "/work/" + itemC, `document.getElementById('item-state').textContent === 'stopped'`},
		{"phone-session", "#/session/" + sessD, `document.querySelectorAll('#events li').length === 7 && document.getElementById('send-text')`},
		{"phone-results", "#/env/" + results, `document.getElementById('row-` + itemBad + `')`},
		{"phone-error", "#/env/" + unknownEnv, `document.getElementById('error-message')`},
	} {
		eval[bool](b, `(location.hash = `+jsString(page.hash)+`, true)`)
		b.wait(page.name, page.ready)
		if w := eval[[]int](b, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
			t.Errorf("%s: the page is %dpx wide on a %dpx screen", page.name, w[0], w[1])
		}
		if out := eval[[]string](b, `[...document.querySelectorAll('body *')].filter((e) => {
				const r = e.getBoundingClientRect();
				return r.width > 0 && (r.left < -1 || r.right > window.innerWidth + 1);
			}).map((e) => e.tagName + '#' + e.id + '.' + e.className)`); len(out) > 0 {
			t.Errorf("%s: elements beyond the screen's edges: %v", page.name, out)
		}
		b.screenshot(page.name)
	}

	// Sign out: the cookie is gone, the form is back.
	b.do("sign out", chromedp.Click(chromedp.ID("signout")))
	b.wait("the sign-in form again", `!document.getElementById('signin').hidden`)
	if s := eval[int](b, `fetch('/ui/me').then((r) => r.status)`); s != 401 {
		t.Errorf("after sign-out /ui/me answers %d, want 401", s)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
