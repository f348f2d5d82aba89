package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// TestConsoleFunctionPage opens a function's page from the overview,
// invokes it from the page (an invalid payload is refused before
// anything is sent) and sees the result and its log lines, sees the
// invocations chart's last point move, finds the invocation in the table
// and opens its log lines (with the mouse, and another with the
// keyboard), pauses and resumes the live log tail, queues an invocation
// and sees its attempts and on-success destination, changes the range,
// changes memory and env through the form (a refused value is shown in
// place and changes nothing), and deletes the function after a
// cancelled and then a confirmed dialog. Screenshots: empty, invoked,
// async, light, dark, phone (390 px), confirm.
func TestConsoleFunctionPage(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "sink", "--runtime", "provided.al2023", fixture("gonoop"))
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", "--memory", "256", "--env", "GREETING=hi", "--on-success", "function:sink", fixture("goecho"))
	b := newBrowser(t)
	b.signIn(s)
	pagesHelpers(t, b)
	b.run(chromedp.WaitVisible(testid("fn-row-echo")), chromedp.Click(`[data-testid="fn-row-echo"] a`), chromedp.WaitVisible(testid("invoke-payload")))
	b.waitText("h1", "echo")
	b.waitText(`[data-testid="invocations-table"]`, "No invocations yet")
	b.waitText(`[data-testid="config"]`, "provided.al2023")
	pagesWait(b, "the invocations chart has its points", `(() => {
		const e = document.querySelector('[data-testid="chart-invocations"]');
		return !!e && Number(e.dataset.points) > 0 && e.dataset.last === '0';
	})()`)
	b.shot("empty")

	// A payload that is not JSON is refused in place; nothing is sent.
	b.run(chromedp.SetValue(testid("invoke-payload"), `{"print": `), chromedp.Click(testid("invoke-submit")))
	b.waitText(".field-error", "Not valid JSON")
	for _, r := range b.requests() {
		if strings.HasSuffix(r.URL, "/invoke") {
			t.Fatalf("an invalid payload was sent: %s %s", r.Method, r.URL)
		}
	}

	// Every value the invocations chart's last point takes from now on
	// (a poll after the minute turns starts a new, empty, last point).
	pagesEval[bool](b, `(() => {
		const e = document.querySelector('[data-testid="chart-invocations"]');
		window.__lastSeen = [e.dataset.last];
		new MutationObserver(() => window.__lastSeen.push(e.dataset.last)).observe(e, {attributes: true, attributeFilter: ['data-last']});
		return true;
	})()`)

	// Invoke from the page: status, result, log lines. The invocation is
	// made 15 s or more before the minute turns, so that the page's next
	// polls (every 5 s) find it in the chart's last point, not in the one
	// before a new, empty, minute.
	eventually.True(t, time.Minute, "15 s or more before the minute turns", func() bool { return time.Now().Second() < 45 })
	b.run(chromedp.SetValue(testid("invoke-payload"), `{"print": "hello from the console", "echo": {"n": 7}}`), chromedp.Click(testid("invoke-submit")))
	b.waitText(`[data-testid="invoke-status"]`, "200")
	b.waitText(`[data-testid="invoke-body"]`, `"n": 7`)
	b.waitText(`[data-testid="invoke-result"]`, "Cold start")
	b.waitText(`[data-testid="invoke-logs"]`, "hello from the console")
	b.waitText(`[data-testid="invoke-logs"]`, "REPORT")
	reqID := pagesEval[string](b, `document.querySelector('[data-testid="invoke-result"]').dataset.requestId || ''`)
	if reqID == "" {
		t.Fatal("the invoke result names no request ID")
	}

	// The chart's last point counts it.
	pagesWait(b, "the invocations chart's last point counts the invocation",
		`window.__lastSeen.some((v) => Number((v || '').split(',')[0]) >= 1)`)

	// The invocation's row opens its log lines.
	row := testid("invocation-row-" + reqID)
	b.run(chromedp.WaitVisible(row), chromedp.Click(row))
	b.waitText(`[data-testid="invocation-logs"]`, "hello from the console")
	b.waitText(`[data-testid="invocation-detail"]`, reqID)

	// A second invocation, from the API; its row opens with the keyboard.
	resp, body := s.invoke("echo", `{"print": "second line"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	second := resp.Header.Get(v1.HeaderRequestID)
	row2 := testid("invocation-row-" + second)
	b.run(chromedp.WaitVisible(row2), chromedp.Focus(row2+" button.row-open"), chromedp.KeyEvent("\r"))
	b.waitText(`[data-testid="invocation-logs"]`, "second line")
	if v := pagesEval[string](b, `document.querySelector('[data-testid="invocation-row-`+second+`"] button.row-open').getAttribute('aria-expanded')`); v != "true" {
		t.Errorf("the open invocation's button has aria-expanded=%q, want true", v)
	}
	if n := pagesEval[int](b, `document.querySelectorAll('tr[tabindex], tr[aria-selected]').length`); n != 0 {
		t.Errorf("%d table rows carry tabindex or aria-selected", n)
	}
	b.shot("invoked")

	// The live tail shows both; paused, it shows nothing new until it
	// resumes, then what it missed.
	b.waitText(`[data-testid="log-tail"]`, "hello from the console")
	b.waitText(`[data-testid="log-tail"]`, "second line")
	b.run(chromedp.Click(testid("log-tail-pause")))
	b.waitText(`[data-testid="log-tail-pause"]`, "Resume")
	if resp, body := s.invoke("echo", `{"print": "printed while paused"}`); resp.StatusCode != 200 {
		t.Fatalf("invoke: %d %s", resp.StatusCode, body)
	}
	b.run(chromedp.Click(testid("log-tail-pause")))
	b.waitText(`[data-testid="log-tail"]`, "printed while paused")
	if n := pagesEval[int](b, `[...document.querySelectorAll('[data-testid="log-tail"] li')].filter((li) => li.textContent.includes('second line')).length`); n != 1 {
		t.Errorf("after resuming, the tail shows the line %d times, want once", n)
	}

	// Queued from the page: its row shows its attempts and the
	// on-success destination.
	b.run(
		chromedp.SetValue(testid("invoke-type"), "Event"),
		chromedp.SetValue(testid("invoke-payload"), `{"print": "queued line"}`),
		chromedp.Click(testid("invoke-submit")),
	)
	b.waitText(`[data-testid="invoke-status"]`, "202")
	asyncID := pagesEval[string](b, `document.querySelector('[data-testid="invoke-result"]').dataset.requestId || ''`)
	if asyncID == "" || asyncID == reqID {
		t.Fatalf("the queued invoke's request ID is %q", asyncID)
	}
	row3 := testid("invocation-row-" + asyncID)
	b.run(chromedp.WaitVisible(row3), chromedp.Click(row3))
	b.waitText(`[data-testid="invocation-logs"]`, "queued line")
	b.waitText(`[data-testid="invocation-detail"]`, "succeeded")
	b.waitText(`[data-testid="invocation-detail"]`, "function:sink (delivered)")
	b.shot("async")

	// The usage and advice cards show the invocations' figures.
	b.waitText(`[data-testid="usage"]`, "Cost")
	pagesWait(b, "the usage card's requests", `(() => {
		const dd = [...document.querySelectorAll('[data-testid="usage"] dt')].find((dt) => dt.textContent === 'Requests');
		return !!dd && Number(dd.nextElementSibling.textContent) >= 3;
	})()`)
	b.waitText(`[data-testid="advice"]`, "Recommended:")
	pagesWait(b, "the advice's options priced", `(() => {
		const cells = [...document.querySelectorAll('[data-testid="advice"] table td.num')].map((td) => td.textContent.trim());
		return cells.length > 0 && cells.some((c) => c.startsWith('$') || c.startsWith('<$'));
	})()`)

	// Other ranges: the charts, usage and advice follow each, with the
	// range's points (15 s, 60 s, 10 min, 1 h steps).
	for _, r := range []struct {
		name   string
		points int
	}{{"15m", 60}, {"24h", 144}, {"7d", 168}, {"1h", 60}} {
		b.run(chromedp.Click(testid("range-" + r.name)))
		pagesWait(b, "the "+r.name+" figures", fmt.Sprintf(`document.querySelector('[data-testid="range-%[1]s"]').getAttribute('aria-pressed') === 'true'
			&& ['chart-invocations', 'chart-duration', 'chart-instances'].every((id) => document.querySelector('[data-testid="' + id + '"]').dataset.points === '%[2]d')
			&& performance.getEntriesByType('resource').some((e) => e.name.includes('/v1/usage?since=%[1]s'))
			&& performance.getEntriesByType('resource').some((e) => e.name.includes('window=%[1]s'))`, r.name, r.points))
	}

	// A value the server refuses is shown in place and changes nothing.
	b.run(chromedp.SetValue(testid("config-memory"), "64"), chromedp.Click(testid("config-save")))
	b.waitText(`[data-testid="config-form"]`, "must be between")
	if got := pagesFunction(t, s, "echo"); got.Config.MemoryMB != 256 {
		t.Fatalf("memory after a refused change = %d, want 256", got.Config.MemoryMB)
	}

	// Memory and env through the form, checked through the API.
	b.run(
		chromedp.SetValue(testid("config-memory"), "512"),
		chromedp.SetValue(testid("config-env"), "GREETING=hola\nEXTRA=from the console"),
		chromedp.Click(testid("config-save")),
	)
	b.waitText(`[data-testid="config-saved"]`, "Saved")
	got := pagesFunction(t, s, "echo")
	if got.Config.MemoryMB != 512 || got.Config.Env["GREETING"] != "hola" || got.Config.Env["EXTRA"] != "from the console" || len(got.Config.Env) != 2 {
		t.Fatalf("after the form: memory %d env %v, want 512 and GREETING=hola EXTRA=from the console", got.Config.MemoryMB, got.Config.Env)
	}
	b.waitText(`[data-testid="config"]`, "512 MB")
	b.waitText(`[data-testid="config"]`, "from the console")
	// A line removed from the form removes its variable (the page sends
	// null for it in the merge patch).
	b.run(
		chromedp.SetValue(testid("config-env"), "EXTRA=from the console"),
		chromedp.Click(testid("config-save")),
	)
	eventually.True(t, 30*time.Second, "GREETING removed through the form", func() bool {
		env := pagesFunction(t, s, "echo").Config.Env
		return len(env) == 1 && env["EXTRA"] == "from the console"
	})
	b.waitText(`[data-testid="config-saved"]`, "Saved")

	// A change made elsewhere (the CLI) while the form is being edited is
	// not undone by saving the form: the page says so and offers to
	// reload it.
	before := pagesFunction(t, s, "echo")
	b.run(chromedp.SetValue(testid("config-timeout"), ""), chromedp.SendKeys(testid("config-timeout"), "20"))
	resp, body = s.do("PATCH", "/v1/functions/echo", []byte(`{"memoryMB": 384}`), true, "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH from outside the page: %d %s", resp.StatusCode, body)
	}
	b.waitText(`[data-testid="fn-status"]`, fmt.Sprintf("version %d", before.Version+1))
	b.run(chromedp.Click(testid("config-save")))
	b.waitText(`[data-testid="config-stale"]`, "was deployed after this form was filled")
	if got := pagesFunction(t, s, "echo"); got.Config.MemoryMB != 384 || got.Config.TimeoutSec == 20 {
		t.Fatalf("after saving a stale form: memory %d timeout %d, want 384 and the timeout unchanged", got.Config.MemoryMB, got.Config.TimeoutSec)
	}
	b.run(chromedp.Click(testid("config-reload")))
	pagesWait(b, "the form reloaded with the new memory", `document.querySelector('[data-testid="config-memory"]').value === '384'`)

	b.shot("light")
	pagesScheme(b, "dark")
	b.shot("dark")
	pagesScheme(b, "light")
	pagesPhone(b, func() { b.shot("phone") })

	// Delete: Escape closes the dialog and gives the focus back to the
	// Delete button; then cancel; then confirm.
	b.run(chromedp.Click(testid("delete")), chromedp.WaitVisible("dialog.dialog"))
	b.shot("confirm")
	b.run(chromedp.KeyEvent(kb.Escape), chromedp.WaitNotPresent("dialog.dialog"))
	if id := pagesEval[string](b, `document.activeElement.dataset.testid || document.activeElement.tagName`); id != "delete" {
		t.Errorf("after Escape the focus is on %q, want the Delete button", id)
	}
	b.run(chromedp.Click(testid("delete")), chromedp.WaitVisible("dialog.dialog"))
	b.run(chromedp.Click("dialog.dialog button.secondary"), chromedp.WaitNotPresent("dialog.dialog"))
	if resp, _ := s.do("GET", "/v1/functions/echo", nil, true); resp.StatusCode != 200 {
		t.Fatalf("the function is gone after a cancelled delete: %d", resp.StatusCode)
	}
	b.run(chromedp.Click(testid("delete")), chromedp.WaitVisible(testid("confirm-ok")), chromedp.Click(testid("confirm-ok")))
	pagesWait(b, "back on the overview", `location.hash === '#/' || location.hash === ''`)
	if resp, body := s.do("GET", "/v1/functions/echo", nil, true); resp.StatusCode != 404 {
		t.Fatalf("GET of the deleted function: %d %s", resp.StatusCode, body)
	}
}

// TestConsoleServicePage opens a service's page during a load burst and
// sees its replicas rise above one, on the replicas figure, on the
// replicas chart and in the replicas table, then shows one replica's log
// lines. Screenshots: burst, replica-logs, light, dark, phone (390 px).
func TestConsoleServicePage(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--max", "4", "--concurrency", "1")
	b := newBrowser(t)
	b.signIn(s)
	b.run(chromedp.WaitVisible(testid("svc-row-web")), chromedp.Click(`[data-testid="svc-row-web"] a`), chromedp.WaitVisible(testid("replicas-now")))
	b.waitText("h1", "web")
	b.waitText(`[data-testid="replicas-now"]`, "1")
	b.waitText(`[data-testid="traffic"]`, "web-00001")
	b.waitText(`[data-testid="revision-row-1"]`, "web-00001")
	b.waitText(`[data-testid="revision-row-1"]`, "100 %")
	b.waitText(`[data-testid="revision-row-1"]`, "gosvc:v1")
	b.waitText(`[data-testid="replicas-table"]`, "ready")
	// 15 s steps: the burst spans several points.
	b.run(chromedp.Click(testid("range-15m")))
	pagesWait(b, "the replicas chart has its 15m points", `(() => {
		const e = document.querySelector('[data-testid="chart-replicas"]');
		return !!e && Number(e.dataset.points) >= 59 && performance.getEntriesByType('resource').some((r) => r.name.includes('/series?range=15m'));
	})()`)

	// A burst: 8 clients at once on replicas of concurrency 1, until the
	// page has seen more than one replica (at most 2 minutes).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				req, err := http.NewRequest("GET", s.URL+"/svc/web/sleep?ms=200", nil)
				if err != nil {
					return
				}
				req.Header.Set("Authorization", "Bearer "+s.Token)
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	stopBurst := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopBurst()

	pagesWait(b, "replicas-now above 1 during the burst", `Number(document.querySelector('[data-testid="replicas-now"]').textContent) > 1`)
	pagesWait(b, "the replicas chart's last point above 1", `(() => {
		const e = document.querySelector('[data-testid="chart-replicas"]');
		return !!e && Number((e.dataset.last || '').split(',')[0]) > 1;
	})()`)
	pagesWait(b, "the replicas table lists the new replicas", `document.querySelectorAll('[data-testid^="replica-row-"]').length > 1`)
	// The autoscaler's own decision is plotted beside what the replicas
	// follow (its third series), and it rose with the burst.
	pagesWait(b, "the autoscaler's decision above 1", `(() => {
		const e = document.querySelector('[data-testid="chart-replicas"]');
		const last = (e.dataset.last || '').split(',');
		return last.length === 3 && Number(last[2]) > 1 && e.textContent.includes('Autoscaler decision');
	})()`)
	b.shot("burst")
	stopBurst()

	// The replica logs show one replica's lines when it is chosen.
	pagesWait(b, "the replica logs", `document.querySelectorAll('[data-testid="svc-log-tail"] li.log-line').length > 0`)
	id := pagesEval[string](b, `(() => {
		const sel = document.querySelector('[data-testid="replica-filter"]');
		const lines = [...document.querySelectorAll('[data-testid="svc-log-tail"] li.log-line')];
		const opt = [...sel.options].find((o) => o.value && lines.some((li) => li.line.instance === o.value));
		return opt ? opt.value : '';
	})()`)
	if id == "" {
		t.Fatal("no replica in the filter has log lines")
	}
	// Chosen as a user does: the select's value, then the change event
	// the browser fires for it.
	b.run(chromedp.SetValue(testid("replica-filter"), id))
	pagesEval[bool](b, `document.querySelector('[data-testid="replica-filter"]').dispatchEvent(new Event('change', {bubbles: true}))`)
	pagesWait(b, "only "+id+"'s lines", fmt.Sprintf(`(() => {
		const shown = [...document.querySelectorAll('[data-testid="svc-log-tail"] li.log-line')].filter((li) => !li.hidden);
		return shown.length > 0 && shown.every((li) => li.line.instance === %q);
	})()`, id))
	b.shot("replica-logs")

	pagesWait(b, "the requests chart counts the burst", `(() => {
		const e = document.querySelector('[data-testid="chart-requests"]');
		return !!e && e.dataset.points > 0 && (e.dataset.last || '').split(',')[0] !== 'null';
	})()`)
	b.shot("light")
	pagesScheme(b, "dark")
	b.shot("dark")
	pagesScheme(b, "light")
	pagesPhone(b, func() { b.shot("phone") })
}

// pagesHelpers checks the pages' pure helpers in b's page, as the
// browser runs them: the panic windows drawn from a panic series, the
// break-even lines (the service's line meets the function's at the
// advice's break-even rate) and the env form's parser.
func pagesHelpers(t *testing.T, b *browser) {
	t.Helper()
	got := browserGet(b, chromedp.Evaluate[string](`(async () => {
		const w = await import('/ui/js/pages/workload.js');
		const fa = await import('/ui/js/pages/function-actions.js');
		const out = {};
		out.bands = w.panicBands([0, 10, 20, 30, 40], [0, 1, 1, 0, 1], 10);
		out.noBands = w.panicBands([0, 10], [0, 0], 10);
		const be = w.breakEven({
			traffic: {meanRps: 1},
			breakEvenRps: 20,
			options: [{model: 'function', monthlyCostUSD: 1}, {model: 'service', monthlyCostUSD: 10, minInstances: 1}],
		});
		const i = be.xs.indexOf(20);
		out.atBreakEven = [be.ys[0][i], be.ys[1][i]];
		out.atMean = [be.ys[0][be.xs.indexOf(1)], be.ys[1][be.xs.indexOf(1)]];
		out.noTraffic = w.breakEven({traffic: {meanRps: 0}, options: []});
		out.env = fa.parseEnv('A=1\n\nB=x=y\n');
		out.envErrors = ['A', 'A=1\nA=2', '=1'].map((e) => { try { fa.parseEnv(e); return ''; } catch (err) { return err.message; } });
		return JSON.stringify(out);
	})()`, chromedp.EvalAwaitPromise))
	want := `{"bands":[[10,30],[40,50]],"noBands":[],"atBreakEven":[20,20],"atMean":[1,10],"noTraffic":null,` +
		`"env":{"A":"1","B":"x=y"},"envErrors":["line 1: want KEY=VALUE","line 2: A is set twice","line 1: want KEY=VALUE"]}`
	if got != want {
		t.Errorf("the pages' helpers gave\n%s\nwant\n%s", got, want)
	}
}

// pagesFunction is GET /v1/functions/NAME.
func pagesFunction(t *testing.T, s *server, name string) v1.Function {
	t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+name, nil, true)
	if resp.StatusCode != 200 {
		t.Fatalf("GET function %s: %d %s", name, resp.StatusCode, body)
	}
	return decode[v1.Function](t, body)
}

// pagesEval evaluates a JavaScript expression in b's page.
func pagesEval[T any](b *browser, expr string) T {
	b.t.Helper()
	return browserGet(b, chromedp.Evaluate[T](expr))
}

// pagesWait waits until the JavaScript expression cond is true in b's
// page (at most a minute), or fails the test saying what it waited for.
func pagesWait(b *browser, what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(browserStep))); err != nil {
		b.shotIfOpen("failed-wait")
		b.t.Fatalf("wait for %s: %v\nreported so far: %q", what, err, b.problemsSoFar())
	}
}

// pagesScheme makes the page see the system's colour scheme as scheme
// ("light" or "dark"), as prefers-color-scheme does.
func pagesScheme(b *browser, scheme string) {
	b.t.Helper()
	b.run(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
	// The charts redraw in the theme's colours on the change.
	waitThemed(b, scheme)
}

// pagesPhone runs f with the page at a phone's width (390 px), then puts
// the window's size back; it fails the test if the page is wider than
// the screen (a horizontal scroll of the whole page).
func pagesPhone(b *browser, f func()) {
	b.t.Helper()
	b.run(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(1)))
	pagesWait(b, "the phone layout", `innerWidth === 390`)
	wide := pagesEval[float64](b, `document.documentElement.scrollWidth`)
	if wide > 390 {
		b.t.Errorf("at 390 px the page is %v px wide", wide)
	}
	f()
	b.run(chromedp.EmulateViewport(1280, 900))
}
