package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// rootlessUID is the unprivileged user the rootless server runs as.
const rootlessUID = 65534 // nobody

// startServerAs starts a copy of the stratus binary as uid (and the same
// gid), with a data dir of that user's; the test must run as root.
func startServerAs(t *testing.T, uid int, args ...string) *server {
	t.Helper()
	home := filepath.Join(os.TempDir(), fmt.Sprintf("stratus-rootless-%d-%d", os.Getpid(), time.Now().UnixNano()))
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	// A copy the user can reach: bin lies in a folder private to root.
	exe := filepath.Join(home, "stratus")
	sandboxtest.CopyFile(t, bin, exe, 0o755)
	data := filepath.Join(home, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(data, uid, uid); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, Data: data, Token: testToken, args: args, exe: exe,
		as: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
	s.start()
	t.Cleanup(func() { s.Stop() })
	return s
}

// TestRootlessServer: `stratus server` as a user other than root, with
// runc installed, runs functions in rootless runc containers: a user
// namespace in which the function is root and the host sees the server's
// user, a minimal root of its own, no capability; the start line and
// /v1/info say what it does not hold (no cgroup limits, the host's
// network). One instance cannot take another's invocations even though
// both share the host's loopback. SIGTERM leaves nothing behind.
func TestRootlessServer(t *testing.T) {
	needRunc(t) // root, to start the server as another user
	needTool(t, "curl")
	s := startServerAs(t, rootlessUID)
	if !strings.Contains(s.Stderr(), "runc rootless") || !strings.Contains(s.Stderr(), "NO cgroup limits") {
		t.Errorf("the start line does not say rootless and what it lacks:\n%s", s.Stderr())
	}
	var info struct {
		Sandbox struct {
			Driver, Why string
			Isolated    bool
		}
	}
	if err := json.Unmarshal([]byte(s.mustCLI("info", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Sandbox.Driver != "runc" || info.Sandbox.Isolated || !strings.Contains(info.Sandbox.Why, "rootless") {
		t.Errorf("info = %+v, want runc, rootless, not isolated", info.Sandbox)
	}

	// The thief is a bash bootstrap (the minimal root has bash and curl;
	// a python3 of a version manager under /root is out of reach of a
	// server that is not root).
	code := writeFiles(t, map[string]string{"bootstrap": `#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
while true; do
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | cut -d' ' -f2 | tr -d '\r\n')
  STEAL=$(echo "$EVENT" | sed -n 's/.*"steal": *"\([^"]*\)".*/\1/p')
  DATA=$(echo "$EVENT" | sed -n 's/.*"data": *"\([^"]*\)".*/\1/p')
  CODE=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://$STEAL/2018-06-01/runtime/invocation/next")
  SHADOW=no; [ -e /etc/shadow ] && SHADOW=yes
  SEEN=no; [ -e "$DATA" ] && SEEN=yes
  CAP=$(grep '^CapEff:' /proc/self/status | cut -f2)
  MAP=$(head -1 /proc/self/uid_map | tr -s ' ' | sed 's/^ //')
  ROOT=$(ls / | tr '\n' ' ')
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" \
    -d "{\"uid\":$(id -u),\"uid_map\":\"$MAP\",\"root\":\"$ROOT\",\"shadow\":\"$SHADOW\",\"data\":\"$SEEN\",\"capeff\":\"$CAP\",\"steal\":\"$CODE\"}"
done
`})
	s.mustCLI("deploy", "thief", "--runtime", "provided.al2023", code)
	s.mustCLI("deploy", "victim", "--runtime", "provided.al2023", fixture("goecho"))
	if resp, body := s.invoke("victim", `{"n":1}`); resp.StatusCode != 200 {
		t.Fatalf("victim: %d %s", resp.StatusCode, body)
	}
	api := rapiOf(t, "victim")
	if !strings.HasPrefix(api, "127.0.0.1:") {
		t.Errorf("victim's Runtime API %q, want one on the host's loopback (rootless shares the host's network)", api)
	}
	resp, body := s.invoke("thief", fmt.Sprintf(`{"steal": %q, "data": %q}`, api, s.Data))
	if resp.StatusCode != 200 {
		t.Fatalf("thief: %d %s", resp.StatusCode, body)
	}
	var got struct {
		UID    int    `json:"uid"`
		UIDMap string `json:"uid_map"`
		Root   string `json:"root"`
		Shadow string `json:"shadow"`
		Data   string `json:"data"`
		CapEff string `json:"capeff"`
		Steal  string `json:"steal"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("thief answered %s: %v", body, err)
	}
	if got.UID != 0 || got.UIDMap != "0 "+strconv.Itoa(rootlessUID)+" 1" {
		t.Errorf("inside: uid %d, uid_map %q; want root mapped to the server's user %d only", got.UID, got.UIDMap, rootlessUID)
	}
	if got.Shadow != "no" || got.Data != "no" || strings.Contains(got.Root, "root") || got.CapEff != "0000000000000000" {
		t.Errorf("the sandbox sees the host or holds capabilities: %s", body)
	}
	// 403 from the victim's Runtime API, or no answer at all; never 200.
	if got.Steal == "200" || got.Steal == "" {
		t.Errorf("the thief called the victim's Runtime API: status %q", got.Steal)
	}
	// The victim still answers its own callers.
	if resp, body := s.invoke("victim", `{"n":2}`); resp.StatusCode != 200 || !strings.Contains(string(body), `function:victim"`) {
		t.Errorf("victim after the theft attempt: %d %s", resp.StatusCode, body)
	}
	// Seen from the host, every process of the server and its sandboxes
	// is the server's user.
	pids := pidsOfUID(t, rootlessUID)
	if len(pids) < 3 {
		t.Errorf("processes of uid %d: %v, want the server and its instances", rootlessUID, pids)
	}
	s.Stop()
	eventually.True(t, 10*time.Second, "no process of the rootless server's user left", func() bool {
		return len(pidsOfUID(t, rootlessUID)) == 0
	})
}

// rapiOf reads function fn's AWS_LAMBDA_RUNTIME_API from the environment
// of one of its processes on the host.
func rapiOf(t *testing.T, fn string) string {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		vars := strings.Split(string(env), "\x00")
		name, api := "", ""
		for _, kv := range vars {
			if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_FUNCTION_NAME="); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(kv, "AWS_LAMBDA_RUNTIME_API="); ok {
				api = v
			}
		}
		if name == fn && api != "" {
			return api
		}
	}
	t.Fatalf("no process of function %s found", fn)
	return ""
}

// pidsOfUID lists the processes whose real uid is uid.
func pidsOfUID(t *testing.T, uid int) []int {
	t.Helper()
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 && f[0] == strconv.Itoa(uid) {
					out = append(out, pid)
				}
			}
		}
	}
	return out
}
