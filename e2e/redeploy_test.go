package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// redeployApp answers its version and process ID; with "wait" (a port)
// it first asks the test's gate on that port of the host, which answers
// when the test releases it. The host is where the instance reaches its
// Runtime API (its sandbox may not share the host's files or loopback).
const redeployApp = `import os
import urllib.request

VERSION = %d


def handler(event, context):
    if event.get("wait"):
        host = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)[0]
        urllib.request.urlopen("http://%%s:%%d/wait" %% (host, event["wait"]), timeout=30).read()
    return {"v": VERSION, "pid": os.getpid(), "pidns": os.readlink("/proc/self/ns/pid")}
`

type versionAnswer struct {
	V     int    `json:"v"`
	PID   int    `json:"pid"`
	PIDNS string `json:"pidns"`
}

// process identifies the instance's process (PIDs repeat across PID
// namespaces).
func (a versionAnswer) process() string { return a.PIDNS + " " + strconv.Itoa(a.PID) }

// gate is an HTTP server on every address of the host whose /wait
// requests block until Release; Started is closed at the first one.
type gate struct {
	Port    int
	Started chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate(t *testing.T) *gate {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Port: ln.Addr().(*net.TCPAddr).Port, Started: make(chan struct{}), release: make(chan struct{})}
	var started sync.Once
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Do(func() { close(g.Started) })
		select {
		case <-g.release:
		case <-r.Context().Done():
		}
		fmt.Fprintln(w, "released")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		g.Release()
		srv.Close()
	})
	return g
}

// Release lets every waiting and future request through.
func (g *gate) Release() { g.once.Do(func() { close(g.release) }) }

// TestRedeploy deploys a new version of a function while an invocation is
// in flight: new invocations run the new code, the one in flight finishes
// on the old code, and the old instance then stops.
func TestRedeploy(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	v1 := writeFiles(t, map[string]string{"app.py": fmt.Sprintf(redeployApp, 1)})
	v2 := writeFiles(t, map[string]string{"app.py": fmt.Sprintf(redeployApp, 2)})
	if out := s.mustCLI("deploy", "fn", "--runtime", "python3", "--handler", "app.handler", "--timeout", "60", v1); !strings.Contains(out, "deployed fn version 1") {
		t.Fatalf("first deploy printed %q", out)
	}
	resp, body := s.invoke("fn", `{}`)
	wantOK(t, resp, body)
	old := decode[versionAnswer](t, body)
	if old.V != 1 || resp.Header.Get("X-Stratus-Snapshot") != "1" {
		t.Fatalf("version 1 answered %s, snapshot %q", body, resp.Header.Get("X-Stratus-Snapshot"))
	}

	oldPID := hostPID(t, old.PIDNS, old.PID)

	// A slow invocation on version 1.
	g := newGate(t)
	type answer struct {
		status  int
		version string
		body    []byte
		err     error
	}
	slow := make(chan answer, 1)
	go func() {
		ev, _ := json.Marshal(map[string]int{"wait": g.Port})
		req, _ := http.NewRequest("POST", s.URL+"/v1/functions/fn/invoke", bytes.NewReader(ev))
		req.Header.Set("Authorization", "Bearer "+s.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- answer{resp.StatusCode, resp.Header.Get("X-Stratus-Snapshot"), b, err}
	}()
	select {
	case <-g.Started:
	case a := <-slow:
		t.Fatalf("the slow invocation ended before it was released: %+v %s", a, a.body)
	case <-time.After(20 * time.Second):
		t.Fatal("the slow invocation did not start within 20s")
	}

	// Redeploy while it runs.
	out := s.mustCLI("deploy", "fn", "--runtime", "python3", "--handler", "app.handler", "--timeout", "60", v2)
	if !strings.Contains(out, "deployed fn version 2") {
		t.Fatalf("redeploy printed %q", out)
	}
	resp, body = s.invoke("fn", `{}`)
	wantOK(t, resp, body)
	nw := decode[versionAnswer](t, body)
	if nw.V != 2 || nw.process() == old.process() || resp.Header.Get("X-Stratus-Snapshot") != "2" || resp.Header.Get("X-Stratus-Cold-Start") != "true" {
		t.Errorf("after the redeploy: %s, snapshot %q, cold %q; want version 2 on a new instance",
			body, resp.Header.Get("X-Stratus-Snapshot"), resp.Header.Get("X-Stratus-Cold-Start"))
	}
	if out := s.mustCLI("invoke", "fn"); decode[versionAnswer](t, []byte(out)).V != 2 {
		t.Errorf("cli invoke after the redeploy printed %q", out)
	}
	select {
	case a := <-slow:
		t.Fatalf("the slow invocation ended before it was released: %+v %s", a, a.body)
	default:
	}
	if !pidAlive(oldPID) {
		t.Errorf("the version 1 instance was stopped while its invocation was in flight")
	}

	// Release the slow one: it finishes on version 1.
	g.Release()
	var a answer
	select {
	case a = <-slow:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow invocation did not finish")
	}
	if a.err != nil || a.status != 200 {
		t.Fatalf("slow invocation: %v status %d %s", a.err, a.status, a.body)
	}
	if got := decode[versionAnswer](t, a.body); got.V != 1 || got.process() != old.process() || a.version != "1" {
		t.Errorf("the invocation in flight during the redeploy answered %s (snapshot %q), want version 1 from process %s", a.body, a.version, old.process())
	}
	// The old instance stops once its invocation is done, and is never used again.
	eventually.True(t, 10*time.Second, "the version 1 instance to stop", func() bool { return !pidAlive(oldPID) })
	for i := 0; i < 3; i++ {
		resp, body = s.invoke("fn", `{}`)
		wantOK(t, resp, body)
		if got := decode[versionAnswer](t, body); got.V != 2 {
			t.Errorf("invoke after the slow one answered %s", body)
		}
	}

	// The function shows version 2; the records show both.
	f := decode[functionJSON](t, []byte(s.mustCLI("get", "fn", "-o", "json")))
	if f.Version != 2 || f.Instances.Live != 1 || !f.UpdatedAt.After(f.CreatedAt) {
		t.Errorf("get after the redeploy: version %d, %d live instances, created %s updated %s", f.Version, f.Instances.Live, f.CreatedAt, f.UpdatedAt)
	}
	if ls := s.mustCLI("ls"); !regexp.MustCompile(`(?m)^fn\s+2\s+python3\s`).MatchString(ls) {
		t.Errorf("ls does not show version 2:\n%s", ls)
	}
	var recs []invocationJSON
	eventually.True(t, 10*time.Second, "seven invocation records", func() bool {
		recs = decode[[]invocationJSON](t, []byte(s.mustCLI("invocations", "fn", "-o", "json")))
		return len(recs) == 7
	})
	versions := map[int]int{}
	for _, r := range recs {
		versions[r.Version]++
	}
	if versions[1] != 2 || versions[2] != 5 {
		t.Errorf("records by version = %v, want 2 of version 1 and 5 of version 2", versions)
	}

	// Deploying again makes version 3, even with the same code.
	if out := s.mustCLI("deploy", "fn", "--runtime", "python3", "--handler", "app.handler", v2); !strings.Contains(out, "deployed fn version 3") {
		t.Errorf("third deploy printed %q", out)
	}
	resp, body = s.invoke("fn", `{}`)
	if wantOK(t, resp, body); resp.Header.Get("X-Stratus-Snapshot") != "3" || decode[versionAnswer](t, body).V != 2 {
		t.Errorf("after the third deploy: snapshot %q body %s", resp.Header.Get("X-Stratus-Snapshot"), body)
	}
}

// pidAlive reports whether process pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndex(s, ")")
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
