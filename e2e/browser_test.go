package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserStep bounds each call of browser.run and browserGet.
const browserStep = 60 * time.Second

// cspBinding is the function the pages of a browser call with each
// securitypolicyviolation event (see newBrowser).
const cspBinding = "__stratusCSPViolation"

// cspListener runs in every frame before its own scripts: it reports
// each Content-Security-Policy violation to the test through cspBinding.
const cspListener = `document.addEventListener('securitypolicyviolation', (e) => {
	window.` + cspBinding + `(JSON.stringify({directive: e.violatedDirective, blocked: e.blockedURI,
		source: e.sourceFile, line: e.lineNumber, sample: e.sample, page: document.location.href}));
}, true);`

// browser is a headless Chromium driven through the DevTools protocol for
// one test: one tab, with what it logged and requested recorded.
type browser struct {
	t   *testing.T
	ctx context.Context // the tab's context; derive a bounded one per step

	mu       sync.Mutex
	problems []string // console errors, uncaught exceptions, CSP violations
	allowed  []string // substrings of the problems the test expects
	reqs     []*observedRequest
	byID     map[network.RequestID]*observedRequest
}

// observedRequest is a request the page made, as Chromium sent it
// (the raw headers, cookies included, once Chromium reported them) and
// the status of its answer (0 before or without one).
type observedRequest struct {
	URL     string
	Method  string
	Headers map[string]string
	Status  int
}

// Header returns the request's header name, in any case, or "".
func (r observedRequest) Header(name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// newBrowser starts headless Chromium (Debian's chromium, via chromedp) for t;
// a missing chromium skips unless CI=true (then fails). It records console
// errors, uncaught exceptions and CSP violations; t.Cleanup fails the test if
// any occurred (b.allowErrors(substr) excuses expected ones) and closes it.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	needTool(t, "chromium")
	exe, _ := exec.LookPath("chromium")
	b := &browser{t: t, byID: make(map[network.RequestID]*observedRequest)}
	// This run's screenshots only: the test's folder starts empty.
	if err := os.RemoveAll(filepath.Join("artifacts", "console", filepath.FromSlash(t.Name()))); err != nil {
		t.Fatalf("clear the screenshots of %s: %v", t.Name(), err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-features", "Translate"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
	)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithListener(b.observe))
	b.ctx = ctx
	closeAll := func() {
		cancel()
		cancelAlloc() // waits for the browser's process to end
	}
	// The first run starts the browser; its context must live as long as
	// the browser, so it has no timeout of its own.
	if err := chromedp.Do(ctx); err != nil {
		closeAll()
		t.Fatalf("start chromium: %v", err)
	}
	install := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, runtime.AddBinding, runtime.AddBindingParams{Name: cspBinding}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener})
		return err
	})
	if err := b.step(install); err != nil {
		closeAll()
		t.Fatalf("start chromium: install the CSP listener: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.shotIfOpen("failed")
		}
		closeAll()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			if !b.excused(p) {
				t.Errorf("the browser reported: %s", p)
			}
		}
	})
	return b
}

// observe records what the tab reports. It runs in the tab's event loop:
// it returns fast and sends no command.
func (b *browser) observe(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			b.problems = append(b.problems, "console."+string(ev.Type)+": "+argsText(ev.Args)+stackPlace(ev.StackTrace))
		}
	case *runtime.EventExceptionThrown:
		b.problems = append(b.problems, "uncaught exception: "+exceptionText(ev.ExceptionDetails))
	case *runtime.EventBindingCalled:
		if ev.Name == cspBinding {
			b.problems = append(b.problems, "CSP violation: "+ev.Payload)
		}
	case *cdplog.EventEntryAdded:
		e := ev.Entry
		if e == nil || e.Level != cdplog.EntryLevelError {
			break
		}
		switch {
		case e.Source == cdplog.EntrySourceSecurity, e.Source == cdplog.EntrySourceViolation:
			b.problems = append(b.problems, "browser "+string(e.Source)+" error: "+e.Text+" ("+e.URL+")")
		case e.Source == cdplog.EntrySourceNetwork && strings.Contains(e.URL, "/ui/"):
			// A console asset that did not load. (Other failed
			// requests, such as the 401 of GET /v1/session before
			// sign-in, are the pages' business.)
			b.problems = append(b.problems, "asset not loaded: "+e.Text+" ("+e.URL+")")
		}
	case *network.EventRequestWillBeSent:
		r := b.byID[ev.RequestID]
		if r == nil || ev.RedirectResponse != nil {
			r = &observedRequest{Headers: make(map[string]string)}
			b.byID[ev.RequestID] = r
			b.reqs = append(b.reqs, r)
		}
		r.URL, r.Method = ev.Request.URL, ev.Request.Method
		for k, v := range ev.Request.Headers {
			if _, raw := r.Headers[k]; !raw {
				r.Headers[k] = fmt.Sprint(v)
			}
		}
	case *network.EventRequestWillBeSentExtraInfo:
		// The raw headers (Cookie among them); this event may come
		// before or after the request's.
		r := b.byID[ev.RequestID]
		if r == nil {
			r = &observedRequest{Headers: make(map[string]string)}
			b.byID[ev.RequestID] = r
			b.reqs = append(b.reqs, r)
		}
		for k, v := range ev.Headers {
			r.Headers[k] = fmt.Sprint(v)
		}
	case *network.EventResponseReceived:
		if r := b.byID[ev.RequestID]; r != nil && ev.Response != nil {
			r.Status = int(ev.Response.Status)
		}
	}
}

func argsText(args []*runtime.RemoteObject) string {
	var parts []string
	for _, a := range args {
		switch {
		case a == nil:
		case len(a.Value) > 0:
			var s string
			if json.Unmarshal(a.Value, &s) == nil {
				parts = append(parts, s)
			} else {
				parts = append(parts, string(a.Value))
			}
		case a.Description != "":
			parts = append(parts, a.Description)
		default:
			parts = append(parts, string(a.Type))
		}
	}
	return strings.Join(parts, " ")
}

func stackPlace(st *runtime.StackTrace) string {
	if st == nil || len(st.CallFrames) == 0 {
		return ""
	}
	f := st.CallFrames[0]
	return fmt.Sprintf(" (%s:%d)", f.URL, f.LineNumber+1)
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d == nil {
		return "?"
	}
	text := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		text += " " + d.Exception.Description
	}
	return fmt.Sprintf("%s (%s:%d)", text, d.URL, d.LineNumber+1)
}

// excused reports whether the test expects problem p; b.mu is held.
func (b *browser) excused(p string) bool {
	for _, s := range b.allowed {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// allowErrors excuses the recorded problems (console errors, exceptions,
// CSP violations) whose text contains substr.
func (b *browser) allowErrors(substr string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.allowed = append(b.allowed, substr)
}

// problemsSoFar returns what the browser reported so far, excused or not.
func (b *browser) problemsSoFar() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// step runs actions in the tab, bounded by browserStep.
func (b *browser) step(actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// run runs actions in the tab, in order; it fails the test (with a
// screenshot) at the first error. Each call is bounded (60 s).
func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := b.step(actions...); err != nil {
		b.shotIfOpen("failed-step")
		b.t.Fatalf("browser: %v\nreported so far: %q", err, b.problemsSoFar())
	}
}

// browserGet runs one action that returns a value (chromedp.Evaluate,
// chromedp.Text, chromedp.Location...) in b's tab and returns it; it fails
// the test on error. Bounded as browser.run.
func browserGet[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.shotIfOpen("failed-step")
		b.t.Fatalf("browser: %v\nreported so far: %q", err, b.problemsSoFar())
	}
	return v
}

// shot saves a full-page PNG to e2e/artifacts/console/<Test>/<name>.png
// (gitignored).
func (b *browser) shot(name string) {
	b.t.Helper()
	if err := b.saveShot(name); err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
}

// shotIfOpen saves a screenshot if it can (for a failure's record).
func (b *browser) shotIfOpen(name string) {
	if err := b.saveShot(name); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

func (b *browser) saveShot(name string) error {
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	dir := filepath.Join("artifacts", "console", filepath.FromSlash(b.t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return err
	}
	b.t.Logf("screenshot: e2e/%s", path)
	return nil
}

// testid is the CSS selector of the element with data-testid id.
func testid(id string) chromedp.CSS {
	return chromedp.CSS(`[data-testid="` + id + `"]`)
}

// signIn opens s's console and signs in with s's token through the form
// (the signin-* testids); it returns once the shell (its sign-out
// button) shows.
func (b *browser) signIn(s *server) {
	b.t.Helper()
	b.run(
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(testid("signin-token")),
		chromedp.SendKeys(testid("signin-token"), s.Token),
		chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("signout")),
	)
}

// waitText waits until the text of the element CSS selector sel finds
// contains substr; it fails the test with the text it saw after 60 s.
func (b *browser) waitText(sel, substr string) {
	b.t.Helper()
	selJS, _ := json.Marshal(sel)
	subJS, _ := json.Marshal(substr)
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.textContent.includes(%s); })()`, selJS, subJS)
	ctx, cancel := context.WithTimeout(b.ctx, browserStep)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(browserStep)))
	if err != nil {
		peek, cancelPeek := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancelPeek()
		seen, _ := chromedp.Run(peek, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.textContent : "(no such element)"; })()`, selJS)))
		b.shotIfOpen("failed-wait")
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("timed out")
		}
		b.t.Fatalf("wait for %q in %s: %v; its text: %q\nreported so far: %q", substr, sel, err, seen, b.problemsSoFar())
	}
}

// requests returns every request the page made so far: URL, method,
// headers as sent, answer's status (to check that the calls carry the
// session and that no token is in a URL).
func (b *browser) requests() []observedRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]observedRequest, 0, len(b.reqs))
	for _, r := range b.reqs {
		c := *r
		c.Headers = make(map[string]string, len(r.Headers))
		for k, v := range r.Headers {
			c.Headers[k] = v
		}
		out = append(out, c)
	}
	return out
}
