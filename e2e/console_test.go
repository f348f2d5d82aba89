package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The console's shell, sign-in, overview and events pages, driven in
// headless Chromium against a real server (browser harness:
// browser_test.go). Screenshots go to e2e/artifacts/console/<Test>/.

// TestConsoleSignIn: a wrong token is refused in place and leaves no
// cookie; the right one gives an HttpOnly, SameSite=Strict session cookie
// that every later API call carries; the token is in no URL and not in the
// page; signing out returns to the sign-in view and the old session is
// refused by the server.
func TestConsoleSignIn(t *testing.T) {
	s := startServer(t)
	b := newBrowser(t)
	b.run(
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(testid("signin-form")),
	)
	// The form's field has a label.
	if got := browserGet(b, chromedp.Evaluate[string](`document.querySelector('label[for="signin-token"]')?.textContent || ''`)); got == "" {
		t.Error("the token field has no <label>")
	}
	consoleShots(b, "signin")

	b.run(
		chromedp.SendKeys(testid("signin-token"), "not-the-token"),
		chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("signin-error")),
	)
	b.waitText(`[data-testid="signin-error"]`, "not the server")
	if c := sessionCookies(b, s); len(c) != 0 {
		t.Errorf("a wrong token left cookies: %+v", c)
	}
	if v := browserGet(b, chromedp.Value(testid("signin-token"))); v != "" {
		t.Errorf("the token field still holds %q after a refusal", v)
	}
	b.shot("signin-refused")

	b.run(
		chromedp.SendKeys(testid("signin-token"), s.Token),
		chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("signout")),
		chromedp.WaitVisible(`h1`),
	)
	b.waitText("h1", "Overview")
	// A fresh server: every list of the overview says what to do next.
	for _, want := range []string{"No functions yet.", "stratus deploy NAME", "No services yet.", "stratus service deploy NAME", "No topics yet.", "No schedules yet."} {
		b.waitText("main", want)
	}
	b.shot("overview-empty")
	cs := sessionCookies(b, s)
	if len(cs) != 1 {
		t.Fatalf("after sign-in, cookies %+v, want one stratus_session", cs)
	}
	c := cs[0]
	if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/v1/" || c.Value == "" || c.Value == s.Token {
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/v1/, a value of its own", c)
	}
	// The token is not kept by the page.
	for _, where := range []string{`document.documentElement.outerHTML`, `JSON.stringify(Object.entries(localStorage))`, `JSON.stringify(Object.entries(sessionStorage))`, `document.cookie`, `location.href`} {
		if v := browserGet(b, chromedp.Evaluate[string](where)); strings.Contains(v, s.Token) {
			t.Errorf("the token is in %s", where)
		}
	}
	checkConsoleRequests(t, b, s)

	// Sign out: back to the sign-in view; the old cookie is refused.
	b.run(
		chromedp.Click(testid("signout")),
		chromedp.WaitVisible(testid("signin-form")),
	)
	if got := browserGet(b, chromedp.Evaluate[bool](`document.getElementById('topbar').hidden`)); !got {
		t.Error("the top bar still shows after sign-out")
	}
	req, _ := http.NewRequest("GET", s.URL+"/v1/functions", nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	if resp, body := s.roundTrip(req); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the signed-out session still works: %d %s", resp.StatusCode, body)
	}
	// A reload shows the sign-in view again (the browser dropped the cookie).
	b.run(chromedp.Reload(), chromedp.WaitVisible(testid("signin-form")))
	if cs := sessionCookies(b, s); len(cs) != 0 {
		t.Errorf("after sign-out the browser keeps %+v", cs)
	}
	b.shot("signed-out")

	// A session that ends elsewhere (signed out from another tab, or
	// expired) brings the sign-in view back at the next update; the page
	// at a phone's width does not scroll sideways.
	b.signIn(s)
	b.run(chromedp.WaitVisible(`h1`))
	cs = sessionCookies(b, s)
	if len(cs) != 1 {
		t.Fatalf("after the second sign-in, cookies %+v", cs)
	}
	req, _ = http.NewRequest("DELETE", s.URL+"/v1/session", nil)
	req.AddCookie(&http.Cookie{Name: cs[0].Name, Value: cs[0].Value})
	req.Header.Set("X-Stratus-CSRF", "1")
	if resp, body := s.roundTrip(req); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE /v1/session: %d %s", resp.StatusCode, body)
	}
	b.run(chromedp.WaitVisible(testid("signin-form")))
	b.waitText("main", "Your session has ended")
	emulate(b, "light", 390, 844, true)
	if w := browserGet(b, chromedp.Evaluate[string](`document.documentElement.scrollWidth + ' ' + innerWidth`)); !fitsWidth(w) {
		t.Errorf("sign-in at 390 px: scrollWidth innerWidth = %s", w)
	}
	b.shot("signin-phone")
}

// TestConsoleOverview: the overview lists a function and a service the
// test deployed, its sparkline counts the invocations made, it
// updates in place (no reload, same rows), it is keyboard usable and fits
// a phone's width.
func TestConsoleOverview(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", fixture("goecho"))
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1")
	s.mustCLI("topic", "create", "orders")
	s.mustCLI("subscribe", "orders", "--function", "echo")
	s.mustCLI("schedule", "create", "nightly", "--function", "echo", "--cron", "0 3 * * ? *")

	b := newBrowser(t)
	watchLayoutShifts(b)
	b.signIn(s)
	b.run(
		chromedp.WaitVisible(testid("fn-row-echo")),
		chromedp.WaitVisible(testid("svc-row-web")),
	)
	b.waitText(`[data-testid="fn-row-echo"]`, "provided.al2023")
	b.waitText(`[data-testid="svc-row-web"]`, "Ready")
	b.waitText(`[data-testid="ov-topic-row-orders"]`, "1")
	b.waitText(`[data-testid="ov-schedule-row-nightly"]`, "0 3 * * ? *")
	spark := `document.querySelector('[data-testid="fn-spark-invocations-echo"]')`
	waitJS(b, spark+`?.dataset.points > 0`, "the invocations sparkline has points")
	// The sparkline's total over its window (its aria-label says it):
	// the last point alone may not show the invocations, when the step
	// they fell in is no longer the last once the page polls.
	total := `Number((/: (\S+) in the window/.exec(` + spark + `.getAttribute('aria-label')) || [])[1])`
	before := browserGet(b, chromedp.Evaluate[float64](total))

	// Mark the page and a row: an update must keep both (no reload, rows
	// updated in place).
	browserGet(b, chromedp.Evaluate[bool](`window.__sameDocument = true; document.querySelector('[data-testid="fn-row-echo"]').__sameRow = true; true`))
	for i := 0; i < 3; i++ {
		if resp, body := s.invoke("echo", `{"echo":1}`); resp.StatusCode != 200 {
			t.Fatalf("invoke: %d %s", resp.StatusCode, body)
		}
	}
	waitJS(b, fmt.Sprintf(`%s >= %v`, total, before+3), "the sparkline's total grows by 3 after 3 invocations")
	after := browserGet(b, chromedp.Evaluate[float64](total))
	t.Logf("sparkline total: %v -> %v", before, after)
	if ok := browserGet(b, chromedp.Evaluate[bool](`window.__sameDocument === true && document.querySelector('[data-testid="fn-row-echo"]').__sameRow === true`)); !ok {
		t.Error("the overview reloaded or rebuilt its rows on update")
	}
	b.waitText(`[data-testid="fn-row-echo"]`, "3")
	// The hour's duration, cost and carbon of the invoked function are
	// figures, not '—', and read on one line.
	waitJS(b, `(() => {
		const cells = [...document.querySelector('[data-testid="fn-row-echo"]').cells].slice(5, 9).map((td) => td.textContent.trim());
		return cells.length === 4 && cells.every((c) => c !== '' && c !== '—');
	})()`, "echo's p50, p99, cost and carbon cells show figures")
	cells := browserGet(b, chromedp.Evaluate[string](`[...document.querySelector('[data-testid="fn-row-echo"]').cells].slice(5, 9).map((td) => td.textContent.trim()).join(' | ')`))
	t.Logf("echo's p50 | p99 | cost | carbon: %s", cells)
	if n := browserGet(b, chromedp.Evaluate[int](`[...document.querySelectorAll('.stat-value, .fig')].filter((e) => e.getClientRects().length > 1 || e.offsetHeight > 2 * parseFloat(getComputedStyle(e).lineHeight)).length`)); n != 0 {
		t.Errorf("%d figures wrap onto more than one line", n)
	}

	// Keyboard: the first Tab reaches the skip link, which moves the focus
	// to the main content. The page loads without a layout jump: once its
	// first figures show, the next two updates shift nothing that counts.
	b.run(chromedp.Reload(), chromedp.WaitVisible(testid("fn-row-echo")))
	waitJS(b, `Number(document.querySelector('[data-testid="fn-spark-invocations-echo"]')?.dataset.points) > 0
		&& document.querySelector('[data-testid="stat-cost"]').textContent !== '—'`, "the overview's first figures")
	checkLayoutShifts(b)
	b.run(chromedp.KeyEvent("\t"))
	if cls := browserGet(b, chromedp.Evaluate[string](`document.activeElement.className`)); cls != "skip-link" {
		t.Errorf("the first Tab focuses %q, want the skip link", cls)
	}
	b.run(chromedp.KeyEvent("\r"))
	if id := browserGet(b, chromedp.Evaluate[string](`document.activeElement.id`)); id != "main" {
		t.Errorf("the skip link moved the focus to %q, want main", id)
	}
	// Every table says what it holds.
	if n := browserGet(b, chromedp.Evaluate[int](`[...document.querySelectorAll('main table')].filter(t => !t.caption && !t.getAttribute('aria-label')).length`)); n != 0 {
		t.Errorf("%d tables without a caption or label", n)
	}
	// The function's name leads to its page.
	b.run(chromedp.Click(`[data-testid="fn-row-echo"] a`), chromedp.WaitVisible(`h1`))
	b.waitText("h1", "echo")
	b.run(chromedp.Click(testid("nav-overview")), chromedp.WaitVisible(testid("fn-row-echo")))

	consoleShots(b, "overview")
	phoneCheck(b, "overview")
	checkConsoleRequests(t, b, s)

	// The server stops: the page keeps its rows and says so in place,
	// with a Retry button; it never goes blank.
	b.allowErrors("ERR_CONNECTION_REFUSED")
	b.allowErrors("Failed to fetch")
	s.Stop()
	waitJS(b, `[...document.querySelectorAll('main .error-box')].some((e) => e.textContent.includes('cannot reach the Stratus server')
		&& [...e.querySelectorAll('button')].some((x) => x.textContent === 'Retry'))`, "an error with Retry in place once the server is gone")
	if ok := browserGet(b, chromedp.Evaluate[bool](`document.querySelector('h1')?.textContent === 'Overview' && !!document.querySelector('[data-testid="fn-row-echo"]')`)); !ok {
		t.Error("with the server gone, the overview lost its heading or its rows")
	}
	b.run(chromedp.Click(`main .error-box button`))
	b.shot("server-stopped")
}

// layoutShiftScript runs in each page before its own scripts: it records
// the page's layout shifts (not those right after an input) in
// window.__shifts.
const layoutShiftScript = `window.__shifts = [];
new PerformanceObserver((list) => {
	for (const e of list.getEntries()) if (!e.hadRecentInput) window.__shifts.push({t: e.startTime, v: e.value});
}).observe({type: 'layout-shift', buffered: true});`

// watchLayoutShifts makes every page b opens from now on record its
// layout shifts (see layoutShiftScript).
func watchLayoutShifts(b *browser) {
	b.t.Helper()
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: layoutShiftScript})
		return err
	}))
}

// checkLayoutShifts waits for two more updates of the page (its /v1/series
// polls) and fails the test if the layout shifts after now add up to 0.1
// or more (the "good" cumulative layout shift); it logs the shift of the
// whole load too.
func checkLayoutShifts(b *browser) {
	b.t.Helper()
	mark := browserGet(b, chromedp.Evaluate[float64](`performance.now()`))
	waitJS(b, fmt.Sprintf(`performance.getEntriesByType('resource').filter((e) => e.name.includes('/v1/series') && e.responseEnd > %f).length >= 2`, mark), "two more updates")
	js := fmt.Sprintf(`JSON.stringify([window.__shifts.filter((s) => s.t > %f).reduce((a, s) => a + s.v, 0), window.__shifts.reduce((a, s) => a + s.v, 0)])`, mark)
	var after, total float64
	if _, err := fmt.Sscanf(strings.Trim(browserGet(b, chromedp.Evaluate[string](js)), "[]"), "%g,%g", &after, &total); err != nil {
		b.t.Fatalf("read the layout shifts: %v", err)
	}
	b.t.Logf("layout shift: %.4f after the first figures, %.4f from the load", after, total)
	if after >= 0.1 {
		b.t.Errorf("the page's layout shifted by %.3f after its first figures, want < 0.1", after)
	}
}

// TestConsoleEvents: the events page lists topics, subscriptions, async
// queues and schedules; publishing a test CloudEvent from its form
// reaches the subscriber, and the topic's pending figure follows.
func TestConsoleEvents(t *testing.T) {
	type delivered struct {
		ContentType string
		Event       map[string]any
	}
	var (
		mu   sync.Mutex
		got  []delivered
		once sync.Once
	)
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		got = append(got, delivered{r.Header.Get("Content-Type"), ev})
		mu.Unlock()
		// Hold the delivery until the test has seen it pending.
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	defer once.Do(func() { close(release) })

	s := startServer(t)
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", fixture("goecho"))
	s.mustCLI("topic", "create", "orders")
	s.mustCLI("topic", "create", "quiet")
	s.mustCLI("subscribe", "orders", "--url", hook.URL+"/in", "--filter", "type=com.example.console")
	s.mustCLI("schedule", "create", "tick", "--function", "echo", "--rate", "1 hour")

	b := newBrowser(t)
	b.signIn(s)
	b.run(chromedp.Click(testid("nav-events")), chromedp.WaitVisible(testid("topic-row-orders")))
	b.waitText(`[data-testid="topic-row-orders"]`, "orders")
	b.waitText(`[data-testid="topic-pending-orders"]`, "0")
	b.waitText(`table[aria-label], main`, "type=com.example.console")
	b.waitText(`[data-testid="queue-row-echo"]`, "echo")
	b.waitText(`[data-testid="schedule-row-tick"]`, "rate(1 hour)")
	consoleShots(b, "events")

	// Bad JSON is refused in place; nothing is sent.
	b.run(
		chromedp.Click(testid("publish-orders")),
		chromedp.SetValue(testid("publish-type"), "com.example.console"),
		chromedp.SetValue(testid("publish-source"), "/console/test"),
		chromedp.SetValue(testid("publish-data"), `{"n": `),
		chromedp.Click(testid("publish-submit")),
	)
	b.waitText(`[data-testid="publish-result"]`, "not valid JSON")
	if v := browserGet(b, chromedp.Value(testid("publish-topic"))); v != "orders" {
		t.Errorf("the publish button of orders chose topic %q", v)
	}

	b.run(
		chromedp.SetValue(testid("publish-data"), `{"n": 42}`),
		chromedp.Click(testid("publish-submit")),
	)
	b.waitText(`[data-testid="publish-result"]`, "Published event")
	b.waitText(`[data-testid="topic-pending-orders"]`, "1")
	b.shot("events-pending")
	once.Do(func() { close(release) })
	b.waitText(`[data-testid="topic-pending-orders"]`, "0")

	mu.Lock()
	if len(got) != 1 {
		t.Fatalf("the subscriber got %d deliveries, want 1: %+v", len(got), got)
	}
	d := got[0]
	mu.Unlock()
	data, _ := json.Marshal(d.Event["data"])
	if !strings.HasPrefix(d.ContentType, "application/cloudevents+json") || d.Event["type"] != "com.example.console" ||
		d.Event["source"] != "/console/test" || string(data) != `{"n":42}` || d.Event["specversion"] != "1.0" || d.Event["id"] == "" {
		t.Errorf("the subscriber got %q %v", d.ContentType, d.Event)
	}
	phoneCheck(b, "events")
	checkConsoleRequests(t, b, s)
}

// waitJS waits until the JavaScript expression expr is true in b's page.
func waitJS(b *browser, expr, what string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(browserStep))); err != nil {
		b.shotIfOpen("failed-wait")
		b.t.Fatalf("wait until %s: %v\nreported so far: %q", what, err, b.problemsSoFar())
	}
}

// sessionCookies returns the browser's cookies for s's API.
func sessionCookies(b *browser, s *server) []*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	var out []*network.Cookie
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.URL + "/v1/functions"}})
		if err != nil {
			return err
		}
		out = r.Cookies
		return nil
	}))
	if err != nil {
		b.t.Fatalf("read cookies: %v", err)
	}
	return out
}

// emulate sets b's viewport and colour scheme.
func emulate(b *browser, scheme string, width, height int64, mobile bool) {
	b.t.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch)
	}
	b.run(
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return err
		}),
		chromedp.EmulateViewport(width, height, opts...),
	)
}

// consoleShots saves the page at a laptop's size in the light and the dark
// theme, checking that the theme follows the system's.
func consoleShots(b *browser, name string) {
	b.t.Helper()
	var bg []string
	for _, scheme := range []string{"light", "dark"} {
		emulate(b, scheme, 1366, 768, false)
		waitThemed(b, scheme)
		bg = append(bg, browserGet(b, chromedp.Evaluate[string](`getComputedStyle(document.body).backgroundColor`)))
		b.shot(name + "-" + scheme)
	}
	if bg[0] == bg[1] {
		b.t.Errorf("%s: the page's background is %s in both themes", name, bg[0])
	}
	emulate(b, "light", 1366, 768, false)
}

// waitThemed waits until every chart and sparkline of b's page has been
// drawn again in scheme's colours (chart.js marks each with data-theme).
func waitThemed(b *browser, scheme string) {
	b.t.Helper()
	waitJS(b, fmt.Sprintf(`matchMedia('(prefers-color-scheme: %[1]s)').matches
		&& [...document.querySelectorAll('.chart, .spark')].every((e) => e.dataset.theme === %[1]q)`, scheme), "the charts drawn in the "+scheme+" theme")
}

// phoneCheck renders the page at a phone's width (390×844): no horizontal
// page scroll, and the navigation collapses behind its Menu button.
func phoneCheck(b *browser, name string) {
	b.t.Helper()
	emulate(b, "light", 390, 844, true)
	waitJS(b, `document.getElementById('nav-toggle').offsetParent !== null`, "the Menu button shows at 390 px")
	if w := browserGet(b, chromedp.Evaluate[string](`document.documentElement.scrollWidth + ' ' + innerWidth`)); !fitsWidth(w) {
		b.t.Errorf("%s at 390 px: scrollWidth innerWidth = %s: the page scrolls sideways", name, w)
	}
	if vis := browserGet(b, chromedp.Evaluate[bool](`document.getElementById('nav').offsetParent !== null`)); vis {
		b.t.Errorf("%s at 390 px: the navigation shows before the Menu button is pressed", name)
	}
	b.shot(name + "-phone")
	b.run(chromedp.Click("#nav-toggle"), chromedp.WaitVisible(testid("nav-events")))
	b.shot(name + "-phone-menu")
	b.run(chromedp.Click("#nav-toggle"))
	emulate(b, "dark", 390, 844, true)
	b.shot(name + "-phone-dark")
	emulate(b, "light", 1366, 768, false)
}

func fitsWidth(pair string) bool {
	var sw, iw int
	if _, err := fmt.Sscan(pair, &sw, &iw); err != nil {
		return false
	}
	return sw <= iw
}

// checkConsoleRequests checks what the page sent: after sign-in, every
// call to /v1 carried the session cookie and X-Stratus-CSRF; no URL holds
// the token; no request left the server's origin.
func checkConsoleRequests(t *testing.T, b *browser, s *server) {
	t.Helper()
	reqs := b.requests()
	signedIn := false
	n := 0
	for _, r := range reqs {
		if strings.Contains(r.URL, s.Token) {
			t.Errorf("a URL holds the token: %s %s", r.Method, r.URL)
		}
		if !strings.HasPrefix(r.URL, s.URL+"/") && !strings.HasPrefix(r.URL, "data:") {
			t.Errorf("a request left the server's origin: %s %s", r.Method, r.URL)
		}
		if !strings.HasPrefix(r.URL, s.URL+"/v1/") {
			continue
		}
		session := strings.HasPrefix(r.URL, s.URL+"/v1/session")
		if r.Method == "POST" && session && r.Status == 200 {
			signedIn = true
			continue
		}
		if r.Method == "DELETE" && session {
			if !strings.Contains(r.Header("Cookie"), "stratus_session=") {
				t.Errorf("sign-out without the session: %+v", r)
			}
			signedIn = false
			continue
		}
		if !signedIn {
			if !session {
				t.Errorf("%s %s sent before sign-in", r.Method, r.URL)
			}
			continue
		}
		n++
		if !strings.Contains(r.Header("Cookie"), "stratus_session=") {
			t.Errorf("%s %s went without the session cookie (headers %v)", r.Method, r.URL, r.Headers)
		}
		if r.Header("X-Stratus-CSRF") != "1" {
			t.Errorf("%s %s went without X-Stratus-CSRF: 1", r.Method, r.URL)
		}
		if r.Header("Authorization") != "" {
			t.Errorf("%s %s carried an Authorization header", r.Method, r.URL)
		}
	}
	if n == 0 {
		t.Errorf("no API call seen after sign-in: %d requests", len(reqs))
	}
	if !slices.ContainsFunc(reqs, func(r observedRequest) bool { return strings.HasSuffix(r.URL, "/ui/js/app.js") }) {
		t.Error("the page did not load /ui/js/app.js")
	}
}
