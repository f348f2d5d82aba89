package apiserver

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// What noPools (usage_test.go) needs to be a functions service's pools
// since published versions have pools of their own.
func (noPools) RemoveVersion(string) {}
func (noPools) InvokeAs(context.Context, string, string, stratus.Request) (*stratus.Response, error) {
	return nil, stratus.ErrUnavailable
}

// echoPools runs every invocation at once: the answer names the pool
// and the code that ran ({"key","code"}), and the record says what ran.
type echoPools struct {
	mu    sync.Mutex
	byKey map[string]*stratus.Version
}

func (p *echoPools) Deploy(v *stratus.Version) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.byKey[v.PoolKey()] = v
}

func (p *echoPools) Remove(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, v := range p.byKey {
		if v.Function == name {
			delete(p.byKey, k)
		}
	}
}

func (p *echoPools) RemoveVersion(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byKey, key)
}

func (p *echoPools) InvokeAs(_ context.Context, key, _ string, req stratus.Request) (*stratus.Response, error) {
	p.mu.Lock()
	v := p.byKey[key]
	p.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("pool %q: %w", key, stratus.ErrNotFound)
	}
	body, _ := json.Marshal(map[string]string{"key": key, "code": v.CodeSHA})
	return &stratus.Response{Body: body, Record: stratus.Invocation{
		RequestID: req.RequestID, Function: v.Function, Version: v.Version, Qualifier: v.RunsAs(),
	}}, nil
}

// recordingQueue keeps what was enqueued.
type recordingQueue struct {
	mu  sync.Mutex
	fns []string
}

func (q *recordingQueue) Enqueue(_ context.Context, fn string, _ []byte) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.fns = append(q.fns, fn)
	return fmt.Sprintf("req-%d", len(q.fns)), nil
}

func (q *recordingQueue) Depth(context.Context, string) (int, time.Duration, error) { return 0, 0, nil }

func (q *recordingQueue) Depths(context.Context) (map[string]events.AsyncDepth, error) {
	return nil, nil
}

func (q *recordingQueue) enqueued() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.fns...)
}

// recordingTargets is a scheduler and a topic service that keep the
// function each schedule or subscription was made for.
type recordingTargets struct {
	topicService
	mu  sync.Mutex
	fns []string
}

func (r *recordingTargets) keep(fn string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fns = append(r.fns, fn)
}

func (r *recordingTargets) kept() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.fns...)
}

func (r *recordingTargets) Create(_ context.Context, spec events.ScheduleSpec) (*stratus.Schedule, error) {
	r.keep(spec.Function)
	return &stratus.Schedule{Name: spec.Name, Function: spec.Function}, nil
}
func (r *recordingTargets) Delete(context.Context, string) error { return nil }
func (r *recordingTargets) List(context.Context) ([]stratus.Schedule, error) {
	return nil, nil
}
func (r *recordingTargets) Get(context.Context, string) (*stratus.Schedule, error) {
	return nil, stratus.ErrNotFound
}
func (r *recordingTargets) Subscribe(_ context.Context, sub stratus.Subscription) (*stratus.Subscription, error) {
	r.keep(sub.Function)
	return &sub, nil
}

// versionsRig is a server over a real store and functions service whose
// pools answer at once (echoPools).
type versionsRig struct {
	t       *testing.T
	s       *Server
	fns     *functions.Service
	queue   *recordingQueue
	targets *recordingTargets
}

func newVersionsRig(t *testing.T) *versionsRig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, filepath.Join(dir, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fns, err := functions.Open(ctx, functions.Config{Store: st, Pools: &echoPools{byKey: map[string]*stratus.Version{}}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r := &versionsRig{t: t, fns: fns, queue: &recordingQueue{}, targets: &recordingTargets{}}
	r.s = New(Config{
		Functions: fns, Store: st, Pools: stubPools{}, Logs: stubFlusher{}, Queue: r.queue, Token: "tok",
		Schedules: r.targets, Topics: r.targets,
	})
	return r
}

// deploy deploys function name with a bootstrap that holds code.
func (r *versionsRig) deploy(name, code string) string {
	r.t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err == nil {
		_, err = io.WriteString(w, "#!/bin/sh\n# "+code+"\n")
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		r.t.Fatal(err)
	}
	f, _, err := r.fns.Deploy(context.Background(), name, stratus.FunctionConfig{Runtime: "provided"}, &buf)
	if err != nil {
		r.t.Fatalf("deploy %s: %v", name, err)
	}
	return f.CodeSHA
}

// do answers method path (with the token) and returns the status, the
// answer's headers and its body.
func (r *versionsRig) do(method, path, body string, hdr ...string) (int, http.Header, []byte) {
	r.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	r.s.ServeHTTP(w, req)
	return w.Code, w.Header(), w.Body.Bytes()
}

// want checks that method path answers status, decoding a success's body
// into out (when not nil) or returning an error's message.
func (r *versionsRig) want(status int, method, path, body string, out any) string {
	r.t.Helper()
	code, _, b := r.do(method, path, body)
	if code != status {
		r.t.Fatalf("%s %s %s: %d %s, want %d", method, path, body, code, b, status)
	}
	if code >= 400 {
		var e v1.Error
		if err := json.Unmarshal(b, &e); err != nil {
			r.t.Fatalf("%s %s: %d %q is not an error answer", method, path, code, b)
		}
		return e.Message
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			r.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return ""
}

type echoed struct{ Key, Code string }

// invoke calls path (the invoke route or the function route) and returns
// what ran: the answer and X-Amz-Executed-Version.
func (r *versionsRig) invoke(method, path string) (echoed, string) {
	r.t.Helper()
	code, h, b := r.do(method, path, `{}`)
	if code != http.StatusOK {
		r.t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
	var e echoed
	if err := json.Unmarshal(b, &e); err != nil {
		r.t.Fatalf("%s %s: %v in %s", method, path, err, b)
	}
	return e, h.Get(v1.HeaderVersion)
}

func TestPublishAndVersions(t *testing.T) {
	r := newVersionsRig(t)
	r.want(404, "POST", "/v1/functions/fn/publish", "", nil)
	sha1 := r.deploy("fn", "one")
	var v v1.Version
	r.want(201, "POST", "/v1/functions/fn/publish", "", &v)
	if v.Function != "fn" || v.Version != "1" || v.CodeSHA != sha1 || v.Snapshot != 1 {
		t.Errorf("first publish: %+v", v)
	}
	// Nothing changed: the same version, 200.
	r.want(200, "POST", "/v1/functions/fn/publish", `{"description":"again"}`, &v)
	if v.Version != "1" || v.Description != "" {
		t.Errorf("publish of nothing new: %+v", v)
	}
	sha2 := r.deploy("fn", "two")
	r.want(201, "POST", "/v1/functions/fn/publish", `{"description":"the second"}`, &v)
	if v.Version != "2" || v.CodeSHA != sha2 || v.Description != "the second" {
		t.Errorf("second publish: %+v", v)
	}
	sha3 := r.deploy("fn", "three") // $LATEST only

	var l v1.VersionList
	r.want(200, "GET", "/v1/functions/fn/versions", "", &l)
	type row struct{ Version, SHA string }
	var got []row
	for _, v := range l.Versions {
		got = append(got, row{v.Version, v.CodeSHA})
	}
	want := []row{{stratus.LatestVersion, sha3}, {"1", sha1}, {"2", sha2}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	if l.Versions[0].Snapshot != 3 {
		t.Errorf("$LATEST is snapshot %d, want 3", l.Versions[0].Snapshot)
	}
	r.want(404, "GET", "/v1/functions/nope/versions", "", nil)

	// Bad bodies change nothing.
	for _, body := range []string{`{"description":`, `{"color":"red"}`, `[]`} {
		r.want(400, "POST", "/v1/functions/fn/publish", body, nil)
	}
	r.want(200, "GET", "/v1/functions/fn/versions", "", &l)
	if len(l.Versions) != 3 {
		t.Errorf("after refused publishes: %d versions, want 3", len(l.Versions))
	}
}

func TestInvokeQualified(t *testing.T) {
	r := newVersionsRig(t)
	sha1 := r.deploy("fn", "one")
	r.want(201, "POST", "/v1/functions/fn/publish", "", nil)
	sha2 := r.deploy("fn", "two")
	r.want(201, "POST", "/v1/functions/fn/publish", "", nil)
	sha3 := r.deploy("fn", "three")

	for _, tc := range []struct {
		path, version, sha string
	}{
		{"fn", stratus.LatestVersion, sha3},
		{"fn:$LATEST", stratus.LatestVersion, sha3},
		{"fn:1", "1", sha1},
		{"fn%3A1", "1", sha1},
		{"fn%3a2", "2", sha2},
		{"fn:2", "2", sha2},
	} {
		for _, route := range []string{"/v1/functions/" + tc.path + "/invoke", "/fn/" + tc.path, "/fn/" + tc.path + "/some/path"} {
			method := "POST"
			if strings.HasPrefix(route, "/fn/") {
				method = "GET"
			}
			got, executed := r.invoke(method, route)
			if got.Code != tc.sha || executed != tc.version {
				t.Errorf("%s %s ran %+v as version %q; want code %s as %q", method, route, got, executed, tc.sha, tc.version)
			}
		}
	}

	// An unknown qualifier or function is not found, on every route.
	for _, name := range []string{"fn:9", "fn:nope", "nope:1", "fn:0", "fn:1:2", "bad%20name:1"} {
		for _, route := range []string{"/v1/functions/" + name + "/invoke", "/fn/" + name + "/x"} {
			if msg := r.want(404, "POST", route, `{}`, nil); msg == "" {
				t.Errorf("POST %s: no message", route)
			}
		}
	}

	// Asynchronous invocations are queued under the qualified name.
	code, _, b := r.do("POST", "/v1/functions/fn%3A1/invoke", `{}`, v1.HeaderAmzInvocationType, v1.InvocationEvent)
	if code != http.StatusAccepted {
		t.Fatalf("async invoke of fn:1: %d %s", code, b)
	}
	r.do("POST", "/v1/functions/fn:$LATEST/invoke", `{}`, v1.HeaderInvocationType, v1.InvocationEvent)
	if code, _, b := r.do("POST", "/v1/functions/fn:9/invoke", `{}`, v1.HeaderInvocationType, v1.InvocationEvent); code != 404 {
		t.Errorf("async invoke of fn:9: %d %s", code, b)
	}
	if got := r.queue.enqueued(); !cmp.Equal(got, []string{"fn:1", "fn"}) {
		t.Errorf("enqueued %q, want [fn:1 fn]", got)
	}
}

func TestAliases(t *testing.T) {
	r := newVersionsRig(t)
	sha1 := r.deploy("fn", "one")
	r.want(201, "POST", "/v1/functions/fn/publish", "", nil)
	sha2 := r.deploy("fn", "two")
	r.want(201, "POST", "/v1/functions/fn/publish", "", nil)

	var a stratus.Alias
	r.want(201, "PUT", "/v1/functions/fn/aliases/live", `{"version":"1","weights":{"2":0.3},"description":"prod"}`, &a)
	if a.Function != "fn" || a.Name != "live" || a.Version != "1" || a.Weights["2"] != 0.3 || a.Description != "prod" || a.RevisionID == "" {
		t.Errorf("created %+v", a)
	}
	first := a.RevisionID

	// A weighted alias splits invocations; each answer says what ran.
	const n = 2000
	ran := map[string]int{}
	for range n {
		got, executed := r.invoke("POST", "/v1/functions/fn:live/invoke")
		if (executed == "1") != (got.Code == sha1) || (executed == "2") != (got.Code == sha2) {
			t.Fatalf("version %q ran code %s", executed, got.Code)
		}
		ran[executed]++
	}
	mean, sigma := n*0.3, math.Sqrt(n*0.3*0.7)
	if d := math.Abs(float64(ran["2"]) - mean); d > 5*sigma || ran["1"]+ran["2"] != n {
		t.Errorf("over %d calls: %v; want about %.0f of version 2", n, ran, mean)
	}

	var got stratus.Alias
	r.want(200, "GET", "/v1/functions/fn/aliases/live", "", &got)
	if diff := cmp.Diff(a, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}

	// Bad input: refused, the alias unchanged.
	for _, tc := range []struct {
		status     int
		path, body string
	}{
		{400, "live", `{"version":"1","weights":{"2":0.7,"3":0.6}}`},
		{400, "live", `{"version":"1","weights":{"2":1.5}}`},
		{400, "live", `{"version":"1","weights":{"1":0.5}}`},
		{400, "live", `{"version":"one"}`},
		{400, "live", `{"version":"1","colour":"red"}`},
		{400, "live", `{"version":`},
		{400, "123", `{"version":"1"}`},
		{404, "live", `{"version":"9"}`},
		{404, "live", `{"version":"1","weights":{"9":0.1}}`},
		{409, "live", `{"version":"2","revisionId":"not-the-current-one"}`},
	} {
		r.want(tc.status, "PUT", "/v1/functions/fn/aliases/"+tc.path, tc.body, nil)
	}
	r.want(404, "PUT", "/v1/functions/nope/aliases/live", `{"version":"1"}`, nil)
	r.want(200, "GET", "/v1/functions/fn/aliases/live", "", &got)
	if got.RevisionID != first || got.Version != "1" {
		t.Errorf("after refused updates: %+v", got)
	}

	// A version an alias points at or weighs stays.
	for _, n := range []string{"1", "2"} {
		if msg := r.want(409, "DELETE", "/v1/functions/fn/versions/"+n, "", nil); !strings.Contains(msg, "live") {
			t.Errorf("delete of aliased version %s: %q does not name the alias", n, msg)
		}
	}
	r.want(400, "DELETE", "/v1/functions/fn/versions/$LATEST", "", nil)
	r.want(400, "DELETE", "/v1/functions/fn/versions/x", "", nil)
	r.want(404, "DELETE", "/v1/functions/fn/versions/9", "", nil)

	// Roll forward to 2 alone; then 1 may go.
	var moved stratus.Alias
	r.want(200, "PUT", "/v1/functions/fn/aliases/live", `{"version":"2","revisionId":"`+first+`"}`, &moved)
	if moved.Version != "2" || moved.Weights != nil || moved.Description != "" || moved.RevisionID == first {
		t.Errorf("moved: %+v", moved)
	}
	for range 20 {
		if got, executed := r.invoke("GET", "/fn/fn:live/"); executed != "2" || got.Code != sha2 {
			t.Fatalf("after the move fn:live ran %+v as %q", got, executed)
		}
	}
	r.want(201, "PUT", "/v1/functions/fn/aliases/beta", `{"version":"$LATEST"}`, nil)
	var l v1.AliasList
	r.want(200, "GET", "/v1/functions/fn/aliases", "", &l)
	if len(l.Aliases) != 2 || l.Aliases[0].Name != "beta" || l.Aliases[1].Name != "live" {
		t.Errorf("aliases: %+v", l.Aliases)
	}
	r.want(204, "DELETE", "/v1/functions/fn/versions/1", "", nil)
	r.want(404, "POST", "/v1/functions/fn:1/invoke", `{}`, nil)
	var vl v1.VersionList
	r.want(200, "GET", "/v1/functions/fn/versions", "", &vl)
	if len(vl.Versions) != 2 || vl.Versions[1].Version != "2" {
		t.Errorf("after deleting 1: %+v", vl.Versions)
	}

	r.want(204, "DELETE", "/v1/functions/fn/aliases/beta", "", nil)
	r.want(404, "DELETE", "/v1/functions/fn/aliases/beta", "", nil)
	r.want(404, "GET", "/v1/functions/fn/aliases/beta", "", nil)
	r.want(404, "POST", "/v1/functions/fn:beta/invoke", `{}`, nil)
	r.want(404, "GET", "/v1/functions/nope/aliases", "", nil)
}

// TestQualifiedTargets: schedules and subscriptions may invoke a
// published version or an alias; its function and qualifier must exist.
func TestQualifiedTargets(t *testing.T) {
	r := newVersionsRig(t)
	r.deploy("fn", "one")
	r.want(201, "POST", "/v1/functions/fn/publish", "", nil)
	r.want(201, "PUT", "/v1/functions/fn/aliases/live", `{"version":"1"}`, nil)
	for _, fn := range []string{"fn:live", "fn:1", "arn:aws:lambda:eu-1:000000000000:function:fn:live", "fn:$LATEST", "fn"} {
		r.want(201, "POST", "/v1/schedules", `{"name":"s","function":"`+fn+`","rate":"5 minutes"}`, nil)
		r.want(201, "POST", "/v1/topics/t/subscriptions", `{"function":"`+fn+`"}`, nil)
	}
	want := []string{"fn:live", "fn:live", "fn:1", "fn:1", "fn:live", "fn:live", "fn", "fn", "fn", "fn"}
	if got := r.targets.kept(); !cmp.Equal(got, want) {
		t.Errorf("targets %q, want %q", got, want)
	}
	for _, tc := range []struct {
		fn     string
		status int
	}{{"fn:9", 404}, {"fn:nope", 404}, {"nope:1", 404}, {"fn:1:2", 400}, {"fn:0", 400}} {
		r.want(tc.status, "POST", "/v1/schedules", `{"name":"s","function":"`+tc.fn+`","rate":"5 minutes"}`, nil)
		r.want(tc.status, "POST", "/v1/topics/t/subscriptions", `{"function":"`+tc.fn+`"}`, nil)
	}
	if got := r.targets.kept(); len(got) != len(want) {
		t.Errorf("refused targets reached the events: %q", got[len(want):])
	}
}
