package lambdaapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestFunctionConcurrency(t *testing.T) {
	ta, mf := newMetaAPI(t, 100)
	ta.createPython(t, "fn", nil)
	const path = "/2017-10-31/functions/fn/concurrency"
	get := func() map[string]int {
		t.Helper()
		var out map[string]int
		decodeInto(t, ta.do(t, "GET", "/2019-09-30/functions/fn/concurrency", nil), 200, &out)
		return out
	}
	if got := get(); len(got) != 0 {
		t.Fatalf("no reserved concurrency: %v, want {}", got)
	}
	var out map[string]int
	decodeInto(t, ta.do(t, "PUT", path, map[string]int{"ReservedConcurrentExecutions": 7}), 200, &out)
	if out["ReservedConcurrentExecutions"] != 7 {
		t.Errorf("put answered %v", out)
	}
	if f, _ := mf.Head("fn"); f.Config.MaxConcurrency != 7 || f.Config.Throttled {
		t.Errorf("after 7: max %d throttled %v", f.Config.MaxConcurrency, f.Config.Throttled)
	}
	if got := get(); got["ReservedConcurrentExecutions"] != 7 {
		t.Errorf("get: %v", got)
	}
	decodeInto(t, ta.do(t, "PUT", path, map[string]int{"ReservedConcurrentExecutions": 0}), 200, &out)
	if f, _ := mf.Head("fn"); !f.Config.Throttled {
		t.Error("0 did not throttle")
	}
	if got, ok := get()["ReservedConcurrentExecutions"]; !ok || got != 0 {
		t.Errorf("get after 0: %v", get())
	}

	// Refused, changing nothing.
	before, _ := mf.Head("fn")
	body := wantError(t, ta.do(t, "PUT", path, map[string]int{"ReservedConcurrentExecutions": 101}), 400, "InvalidParameterValueException")
	if !strings.Contains(body["message"], "ConcurrentExecutions (100") {
		t.Errorf("over the cap: %q", body["message"])
	}
	wantError(t, ta.do(t, "PUT", path, map[string]int{"ReservedConcurrentExecutions": -1}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", path, `{}`), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", path, `{"ReservedConcurrentExecutions": "x"}`), 400, "InvalidRequestContentException")
	wantError(t, ta.do(t, "PUT", "/2017-10-31/functions/fn:1/concurrency", map[string]int{"ReservedConcurrentExecutions": 1}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", "/2017-10-31/functions/nope/concurrency", map[string]int{"ReservedConcurrentExecutions": 1}), 404, "ResourceNotFoundException")
	if after, _ := mf.Head("fn"); after.Version != before.Version {
		t.Errorf("a refused put made version %d after %d", after.Version, before.Version)
	}

	w := ta.do(t, "DELETE", path, nil)
	if w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if f, _ := mf.Head("fn"); f.Config.Throttled || f.Config.MaxConcurrency != 100 {
		t.Errorf("after delete: max %d throttled %v", f.Config.MaxConcurrency, f.Config.Throttled)
	}
	if got := get(); len(got) != 0 {
		t.Errorf("get after delete: %v", got)
	}
	// Deleting none is no error and makes no new $LATEST.
	before, _ = mf.Head("fn")
	if w := ta.do(t, "DELETE", path, nil); w.Code != http.StatusNoContent {
		t.Fatalf("second delete: %d %s", w.Code, w.Body)
	}
	if after, _ := mf.Head("fn"); after.Version != before.Version {
		t.Error("deleting no reserved concurrency made a new $LATEST")
	}
	wantError(t, ta.do(t, "GET", "/2019-09-30/functions/nope/concurrency", nil), 404, "ResourceNotFoundException")
}

// On a server capped below Lambda's default, the default is the cap.
func TestFunctionConcurrencySmallServer(t *testing.T) {
	ta, _ := newMetaAPI(t, 10)
	ta.createPython(t, "fn", map[string]any{})
	_, err := ta.fns.Configure(t.Context(), "fn", func(c *stratus.FunctionConfig) error { c.MaxConcurrency = 10; return nil })
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]int
	decodeInto(t, ta.do(t, "GET", "/2019-09-30/functions/fn/concurrency", nil), 200, &out)
	if len(out) != 0 {
		t.Errorf("the cap as the default: %v, want {}", out)
	}
	wantError(t, ta.do(t, "PUT", "/2017-10-31/functions/fn/concurrency", map[string]int{"ReservedConcurrentExecutions": 11}), 400, "InvalidParameterValueException")
}
