package lambdaapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// racingFunctions is the real functions service where another change
// lands just before the next deploy, configure or publish: the window
// between a handler's read and its change.
type racingFunctions struct {
	*functions.Service
	mu    sync.Mutex
	races map[string]func() // by "deploy", "configure", "publish"; each runs once
}

func (r *racingFunctions) before(op string) {
	r.mu.Lock()
	f := r.races[op]
	delete(r.races, op)
	r.mu.Unlock()
	if f != nil {
		f()
	}
}

// race makes f land just before the next op.
func (r *racingFunctions) race(op string, f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.races[op] = f
}

func (r *racingFunctions) Deploy(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, bool, error) {
	r.before("deploy")
	return r.Service.Deploy(ctx, name, cfg, code)
}

func (r *racingFunctions) DeployNew(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, error) {
	r.before("deploy")
	return r.Service.DeployNew(ctx, name, cfg, code)
}

func (r *racingFunctions) DeployIf(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader, cond func(*stratus.Version) error) (*stratus.Function, bool, error) {
	r.before("deploy")
	return r.Service.DeployIf(ctx, name, cfg, code, cond)
}

func (r *racingFunctions) Configure(ctx context.Context, name string, change func(*stratus.FunctionConfig) error) (*stratus.Function, error) {
	r.before("configure")
	return r.Service.Configure(ctx, name, change)
}

func (r *racingFunctions) Publish(ctx context.Context, name, description string) (*stratus.Version, error) {
	r.before("publish")
	return r.Service.Publish(ctx, name, description)
}

func (r *racingFunctions) PublishIf(ctx context.Context, name, description string, cond func(*stratus.Version) error) (*stratus.Version, error) {
	r.before("publish")
	return r.Service.PublishIf(ctx, name, description, cond)
}

// newRacingAPI is the API over the real functions service and SQLite,
// with function "model" made through it and the racing wrapper.
func newRacingAPI(t *testing.T) (*testAPI, *racingFunctions) {
	t.Helper()
	ctx := t.Context()
	data := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(data, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fns, err := functions.Open(ctx, functions.Config{Store: st, Pools: &recordingPools{pools: map[string]*stratus.Version{}}, DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	r := &racingFunctions{Service: fns, races: map[string]func(){}}
	ta := &testAPI{API: New(Config{Functions: r, Queue: &fakeQueue{}, Token: testToken, Arch: stratus.ArchX86})}
	return ta, r
}

// nativeDeploy deploys code to name as the native API does, with the
// configuration of function model, and returns its digest.
func nativeDeploy(t *testing.T, r *racingFunctions, name, model string, code []byte) string {
	t.Helper()
	m, err := r.Service.Get(context.Background(), model)
	if err != nil {
		t.Error(err)
		return ""
	}
	f, _, err := r.Service.Deploy(context.Background(), name, m.Config, bytes.NewReader(code))
	if err != nil {
		t.Error(err)
		return ""
	}
	return f.CodeSHA
}

func headSHA(t *testing.T, r *racingFunctions, name string) string {
	t.Helper()
	h, ok := r.Service.Head(name)
	if !ok {
		t.Fatalf("function %s is gone", name)
	}
	return h.CodeSHA
}

// A function made between CreateFunction's look and its deploy (here a
// native deploy) is a conflict: its code stays.
func TestCreateFunctionDoesNotReplace(t *testing.T) {
	ta, r := newRacingAPI(t)
	ta.createPython(t, "model", nil)
	var theirs string
	r.race("deploy", func() {
		theirs = nativeDeploy(t, r, "fn", "model", testZip(t, "app.py", "def handler(e, c): return 'theirs'"))
	})
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions", map[string]any{
		"FunctionName": "fn", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
		"Code": map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(testZip(t, "app.py", "def handler(e, c): return 'mine'"))},
	}), http.StatusConflict, "ResourceConflictException")
	if got := headSHA(t, r, "fn"); got != theirs {
		t.Errorf("the refused create replaced the code: %s, want %s", got, theirs)
	}
}

// Of concurrent CreateFunction calls of one name, one answers 201.
func TestCreateFunctionConcurrent(t *testing.T) {
	ta, _ := newRacingAPI(t)
	const n = 4
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			codes[i] = ta.do(t, "POST", "/2015-03-31/functions", map[string]any{
				"FunctionName": "fn", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
				"Code": map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(testZip(t, "app.py", "def handler(e, c): return "+string(rune('0'+i))))},
			}).Code
		})
	}
	wg.Wait()
	created := 0
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("status %d", c)
		}
	}
	if created != 1 {
		t.Errorf("%d creates answered 201 (%v), want 1", created, codes)
	}
}

// RevisionId and CodeSha256 are checked on the head that is changed or
// published, not on a copy read before another change landed (here a
// native deploy of other code).
func TestPreconditionsAgainstRaces(t *testing.T) {
	mine := testZip(t, "app.py", "def handler(e, c): return 'mine'")
	other := testZip(t, "app.py", "def handler(e, c): return 'other'")
	cases := []struct {
		name, op, method, path string
		body                   func(read functionConfiguration) map[string]any
		status                 int
		typ                    string
	}{
		{"PublishVersion CodeSha256", "publish", "POST", "versions",
			func(read functionConfiguration) map[string]any { return map[string]any{"CodeSha256": read.CodeSha256} },
			http.StatusPreconditionFailed, "PreconditionFailedException"},
		{"PublishVersion RevisionId", "publish", "POST", "versions",
			func(read functionConfiguration) map[string]any { return map[string]any{"RevisionId": read.RevisionID} },
			http.StatusPreconditionFailed, "PreconditionFailedException"},
		{"UpdateFunctionCode RevisionId", "deploy", "PUT", "code",
			func(read functionConfiguration) map[string]any {
				return map[string]any{"ZipFile": mine, "RevisionId": read.RevisionID}
			},
			http.StatusPreconditionFailed, "PreconditionFailedException"},
		{"UpdateFunctionCode", "deploy", "PUT", "code",
			func(functionConfiguration) map[string]any { return map[string]any{"ZipFile": mine} },
			http.StatusConflict, "ResourceConflictException"},
		// It publishes what it deployed, or nothing.
		{"UpdateFunctionCode Publish", "publish", "PUT", "code",
			func(functionConfiguration) map[string]any { return map[string]any{"ZipFile": mine, "Publish": true} },
			http.StatusConflict, "ResourceConflictException"},
		{"UpdateFunctionConfiguration RevisionId", "configure", "PUT", "configuration",
			func(read functionConfiguration) map[string]any {
				return map[string]any{"Description": "mine", "RevisionId": read.RevisionID}
			},
			http.StatusPreconditionFailed, "PreconditionFailedException"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ta, r := newRacingAPI(t)
			read := ta.createPython(t, "fn", nil)
			var theirs string
			r.race(c.op, func() { theirs = nativeDeploy(t, r, "fn", "fn", other) })
			wantError(t, ta.do(t, c.method, "/2015-03-31/functions/fn/"+c.path, c.body(read)), c.status, c.typ)
			if vs, _ := r.Service.PublishedVersions(t.Context(), "fn"); len(vs) != 0 {
				t.Errorf("published %+v", vs)
			}
			if c.op == "publish" {
				return
			}
			h, _ := r.Service.Head("fn")
			if h.CodeSHA != theirs || h.Config.Description == "mine" {
				t.Errorf("the refused change changed the function: %+v", h)
			}
		})
	}

	// Unraced, the same calls succeed.
	ta, _ := newRacingAPI(t)
	cur := ta.createPython(t, "fn", nil)
	var up functionConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Description": "mine", "RevisionId": cur.RevisionID}), http.StatusOK, &up)
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": mine, "RevisionId": up.RevisionID}), http.StatusOK, &up)
	var v functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/fn/versions", map[string]any{"CodeSha256": up.CodeSha256, "RevisionId": up.RevisionID}), http.StatusCreated, &v)
	if v.Version != "1" || v.CodeSha256 != up.CodeSha256 || v.Description != "mine" {
		t.Errorf("published %s %s %q", v.Version, v.CodeSha256, v.Description)
	}
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": testZip(t, "app.py", "x = 1"), "Publish": true}), http.StatusOK, &v)
	if v.Version != "2" {
		t.Errorf("UpdateFunctionCode with Publish: version %s", v.Version)
	}
}
