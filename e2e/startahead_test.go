package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// TestStartAhead: in the default sandbox, a prepared sandbox of a python3
// or nodejs function has its interpreter and runtime client loaded and
// waiting; the cold start then runs the function's module-level code (not
// before the call), the function does not see the start descriptor's
// variable, and a sandbox dropped unstarted leaves nothing behind.
func TestStartAhead(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	needTool(t, "node")
	s := startServer(t)
	py := writeFiles(t, map[string]string{"app.py": `import os, time
LOADED = time.time()
def handler(event, context):
    return {"loaded": LOADED, "leaked": "_STRATUS_START_FD" in os.environ}
`})
	js := writeFiles(t, map[string]string{"index.js": `const loaded = Date.now() / 1000;
exports.handler = async () => ({ loaded, leaked: "_STRATUS_START_FD" in process.env });
`})
	for _, tc := range []struct{ name, runtime, handler, code string }{
		{"ahead-py", "python3", "app.handler", py},
		{"ahead-js", "nodejs", "index.handler", js},
	} {
		t.Run(tc.runtime, func(t *testing.T) {
			s.mustCLI("deploy", tc.name, "--runtime", tc.runtime, "--handler", tc.handler, tc.code)
			parked := func() bool {
				for _, p := range functionProcessesUnder(s.Data, tc.name) {
					if pid, _, _ := strings.Cut(p, ":"); parkedOnStart(pid) {
						return true
					}
				}
				return false
			}
			eventually.True(t, 30*time.Second, "a client waiting in a prepared sandbox", parked)
			sent := time.Now()
			c := s.mustInvoke(tc.name, `{}`)
			if !c.Cold() {
				t.Errorf("first call: %s; want a cold start", c)
			}
			var got struct {
				Loaded float64
				Leaked bool
			}
			if err := json.Unmarshal(c.Body, &got); err != nil {
				t.Fatalf("first call: %s: %v", c, err)
			}
			if loaded := time.UnixMilli(int64(got.Loaded * 1000)); loaded.Before(sent.Add(-time.Millisecond)) {
				t.Errorf("the function's code was loaded at %s, before the call was sent (%s)", loaded.Format(time.RFC3339Nano), sent.Format(time.RFC3339Nano))
			}
			if got.Leaked {
				t.Errorf("the function sees _STRATUS_START_FD")
			}
			// Removing the function drops its new prepared sandbox, whose
			// client waits: nothing of it stays.
			eventually.True(t, 30*time.Second, "a client waiting in the next prepared sandbox", parked)
			s.mustCLI("rm", tc.name)
			eventually.True(t, 30*time.Second, "no process of "+tc.name, func() bool { return len(functionProcessesUnder(s.Data, tc.name)) == 0 })
		})
	}
}
