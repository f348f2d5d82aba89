package lambdaapi

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// recordingPools are pools that run nothing: an invocation answers which
// pool it reached.
type recordingPools struct {
	mu    sync.Mutex
	pools map[string]*stratus.Version
}

func (p *recordingPools) Deploy(v *stratus.Version) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pools[v.PoolKey()] = v
}
func (p *recordingPools) Remove(string)            {}
func (p *recordingPools) RemoveVersion(key string) { p.mu.Lock(); delete(p.pools, key); p.mu.Unlock() }
func (p *recordingPools) InvokeAs(_ context.Context, key, _ string, req stratus.Request) (*stratus.Response, error) {
	p.mu.Lock()
	v := p.pools[key]
	p.mu.Unlock()
	return &stratus.Response{Body: []byte(`"` + key + `"`), Record: stratus.Invocation{RequestID: req.RequestID, Qualifier: v.RunsAs()}}, nil
}

// The API over the real functions service and a SQLite store: create,
// publish, update with publish, alias, list, invoke by qualifier, delete.
func TestWithRealFunctions(t *testing.T) {
	ctx := context.Background()
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
	ta := &testAPI{API: New(Config{Functions: fns, Queue: &fakeQueue{}, Token: testToken, Arch: stratus.ArchX86})}

	bad := map[string]any{"FunctionName": "badtags", "Runtime": "python3.12", "Handler": "app.handler", "Role": "r",
		"Code": map[string]any{"ZipFile": testZip(t, "app.py", "def handler(e, c): return 1")}, "Tags": map[string]string{"aws:x": "y"}}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions", bad), 400, "InvalidParameterValueException")
	if _, ok := fns.Head("badtags"); ok {
		t.Error("a create with bad tags made the function")
	}
	ta.createPython(t, "real", map[string]any{"Publish": true, "Tags": map[string]string{"team": "a"}})
	var got getFunctionResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/real", nil), 200, &got)
	if got.Tags["team"] != "a" || len(got.Tags) != 1 {
		t.Errorf("GetFunction tags %v", got.Tags)
	}
	zip := testZip(t, "app.py", "def handler(e, c): return 2")
	var up functionConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/real/code", map[string]any{"ZipFile": zip, "Publish": true}), 200, &up)
	if up.Version != "2" || up.FunctionArn != "arn:aws:lambda:local:000000000000:function:real:2" {
		t.Fatalf("UpdateFunctionCode with Publish: %s %s", up.Version, up.FunctionArn)
	}
	// Nothing changed: publishing again returns version 2.
	var again functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/real/versions", nil), 201, &again)
	if again.Version != "2" || again.CodeSha256 != up.CodeSha256 {
		t.Errorf("PublishVersion with nothing changed: %s", again.Version)
	}
	var vs listVersionsResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/real/versions", nil), 200, &vs)
	if len(vs.Versions) != 3 || vs.Versions[0].Version != "$LATEST" || vs.Versions[1].Version != "1" || vs.Versions[2].Version != "2" {
		t.Fatalf("ListVersionsByFunction: %+v", vs.Versions)
	}
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/real/aliases", map[string]any{
		"Name": "live", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.5}},
	}), 201, nil)
	var al aliasConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/real/aliases/live", nil), 200, &al)
	if al.FunctionVersion != "1" || al.RoutingConfig == nil || al.RoutingConfig.AdditionalVersionWeights["2"] != 0.5 {
		t.Errorf("GetAlias %+v", al)
	}
	var cfg functionConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/real/configuration?Qualifier=live", nil), 200, &cfg)
	if cfg.Version != "1" {
		t.Errorf("configuration of real:live is version %s, want the alias's 1", cfg.Version)
	}
	ran := map[string]int{}
	for range 40 {
		w := ta.do(t, "POST", "/2015-03-31/functions/real:live/invocations", `{}`)
		if w.Code != 200 || w.Body.String() != `"real:`+w.Header().Get("X-Amz-Executed-Version")+`"` {
			t.Fatalf("invoke real:live: %d %s %v", w.Code, w.Body, w.Header())
		}
		ran[w.Header().Get("X-Amz-Executed-Version")]++
	}
	if ran["1"] == 0 || ran["2"] == 0 {
		t.Errorf("a 50%% alias ran %v", ran)
	}
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/real?Qualifier=2", nil), 409, "ResourceConflictException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/real/aliases", map[string]any{"Name": "live", "FunctionVersion": "2"}), 409, "ResourceConflictException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/real/aliases", map[string]any{"Name": "next", "FunctionVersion": "9"}), 404, "ResourceNotFoundException")
	var cfgUp functionConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/real/configuration", map[string]any{"Description": "d", "Timeout": 30}), 200, &cfgUp)
	if cfgUp.Description != "d" || cfgUp.Timeout != 30 || cfgUp.Runtime != "python3.12" || cfgUp.CodeSha256 != up.CodeSha256 {
		t.Errorf("UpdateFunctionConfiguration %+v", cfgUp)
	}
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/real/aliases/live", nil); w.Code != http.StatusNoContent {
		t.Fatalf("DeleteAlias %d %s", w.Code, w.Body)
	}
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/real?Qualifier=2", nil); w.Code != http.StatusNoContent {
		t.Fatalf("DeleteFunction of version 2: %d %s", w.Code, w.Body)
	}
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/real", nil); w.Code != http.StatusNoContent {
		t.Fatalf("DeleteFunction: %d %s", w.Code, w.Body)
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/real", nil), 404, "ResourceNotFoundException")
}

var _ Functions = (*functions.Service)(nil)
