package lambdaapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// state is what a request could change: the functions, their versions
// and aliases, tags and URLs, and what was invoked or queued.
type state struct {
	Functions map[string]stratus.Function
	Published map[string][]stratus.Version
	Aliases   map[string]map[string]stratus.Alias
	Calls     []string
	Events    []string
	Tags      map[string]map[string]string
	URLs      []string
}

func snapshot(ta *testAPI, mf *metaFake) state {
	f := mf.fakeFunctions
	f.mu.Lock()
	s := state{Functions: map[string]stratus.Function{}, Published: map[string][]stratus.Version{}, Aliases: map[string]map[string]stratus.Alias{}}
	for k, v := range f.fns {
		s.Functions[k] = *v
	}
	for k, v := range f.published {
		s.Published[k] = slices.Clone(v)
	}
	for k, m := range f.aliases {
		s.Aliases[k] = map[string]stratus.Alias{}
		for n, a := range m {
			s.Aliases[k][n] = *a
		}
	}
	s.Calls = slices.Clone(f.calls)
	f.mu.Unlock()
	ta.queue.mu.Lock()
	s.Events = slices.Clone(ta.queue.events)
	ta.queue.mu.Unlock()
	mf.mu.Lock()
	s.Tags = map[string]map[string]string{}
	for k, v := range mf.tags {
		s.Tags[k] = maps.Clone(v)
	}
	s.URLs = slices.Sorted(maps.Keys(mf.urls))
	mf.mu.Unlock()
	return s
}

// requestFor is a request path for op: each path parameter a value that
// names something that exists where it can (the function "fn"), and the
// op's fixed query.
func requestFor(op *operation) string {
	path, query, _ := strings.Cut(op.URI, "?")
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if !isParam(s) {
			continue
		}
		switch s {
		case "{FunctionName}":
			segs[i] = "fn"
		case "{Name}":
			segs[i] = "live"
		default:
			segs[i] = "x1"
		}
	}
	p := strings.Join(segs, "/")
	if query != "" {
		p += "?" + query
	}
	return p
}

// Every operation of the model that Stratus does not implement answers
// UnsupportedOperationException in Lambda's error shape, naming the
// operation, and changes nothing: never a silent success.
func TestEveryUnimplementedOperationIsRefused(t *testing.T) {
	ta, mf := newMetaAPI(t, 100)
	ta.createPython(t, "fn", map[string]any{"Publish": true})
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/fn/aliases", map[string]any{"Name": "live", "FunctionVersion": "1"}), 201, nil)
	before := snapshot(ta, mf)
	unsupported := 0
	for i := range operations {
		op := &operations[i]
		if _, ok := handlers[op.Name]; ok {
			continue
		}
		unsupported++
		path := requestFor(op)
		for _, body := range []any{nil, `{"FunctionName": "fn", "Tags": {"a": "b"}, "ReservedConcurrentExecutions": 0}`} {
			w := ta.do(t, op.Method, path, body)
			if w.Code < 400 {
				t.Errorf("%s (%s %s): status %d, want an error; body %s", op.Name, op.Method, path, w.Code, w.Body)
				continue
			}
			if typ := w.Header().Get("X-Amzn-ErrorType"); typ != "UnsupportedOperationException" {
				t.Errorf("%s (%s %s): X-Amzn-ErrorType %q, want UnsupportedOperationException; body %s", op.Name, op.Method, path, typ, w.Body)
				continue
			}
			var e map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Errorf("%s: body %s: %v", op.Name, w.Body, err)
				continue
			}
			if e["Type"] != "User" || e["Message"] != op.Name+" is not supported by Stratus" {
				t.Errorf("%s: body %v, want Type User and a Message naming the operation", op.Name, e)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: Content-Type %q", op.Name, ct)
			}
		}
	}
	if unsupported == 0 || unsupported == len(operations) {
		t.Fatalf("%d of %d operations unsupported: the walk checks nothing", unsupported, len(operations))
	}
	if diff := cmp.Diff(before, snapshot(ta, mf)); diff != "" {
		t.Errorf("unsupported operations changed the state (-before +after):\n%s", diff)
	}
	t.Logf("%d of %d operations answer UnsupportedOperationException", unsupported, len(operations))
}

// The operations this part of the API implements are registered.
func TestConfigurationOperationsImplemented(t *testing.T) {
	for _, op := range []string{
		"PutFunctionConcurrency", "GetFunctionConcurrency", "DeleteFunctionConcurrency",
		"PutFunctionEventInvokeConfig", "GetFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
		"DeleteFunctionEventInvokeConfig", "ListFunctionEventInvokeConfigs",
		"CreateFunctionUrlConfig", "GetFunctionUrlConfig", "UpdateFunctionUrlConfig", "DeleteFunctionUrlConfig", "ListFunctionUrlConfigs",
		"TagResource", "UntagResource", "ListTags", "GetAccountSettings",
	} {
		if _, ok := handlers[op]; !ok {
			t.Errorf("%s has no handler", op)
		}
	}
	if w := newTestAPI(t).do(t, "GET", "/2016-08-19/account-settings", nil); w.Code != http.StatusOK {
		t.Errorf("GetAccountSettings: %d %s", w.Code, w.Body)
	}
}
