package e2e

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// needRunc fails (in CI) or skips the test unless the server can run
// functions in runc: runc on PATH and root.
func needRunc(t *testing.T) {
	t.Helper()
	needTool(t, "runc")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the runc sandbox needs root; CI runs the tests as root")
		}
		t.Skip("the runc sandbox needs root")
	}
}

// TestSandboxDriverChoice: the server says which sandbox driver runs the
// instances and why: runc by default where it can, process when asked
// or when runc is missing, then in a warning that says instances run
// unisolated and how to isolate them; --sandbox runc without runc does
// not start.
func TestSandboxDriverChoice(t *testing.T) {
	needRunc(t)
	s := startServer(t)
	if log := s.Stderr(); !strings.Contains(log, `level=INFO msg="sandbox driver" driver=runc why="runc: found `) {
		t.Errorf("the server's log does not say it runs instances in runc:\n%s", log)
	}
	p := startServer(t, "--sandbox", "process")
	if log := p.Stderr(); !strings.Contains(log, `level=WARN msg="sandbox driver" driver=process why="process: UNISOLATED — chosen with --sandbox process; `) {
		t.Errorf("with --sandbox process, the log says:\n%s", log)
	}

	// Without runc on PATH: auto falls back to process, runc refuses.
	noRunc := []string{"PATH=/nonexistent"}
	if log := startAndStop(t, noRunc); !strings.Contains(log, `level=WARN msg="sandbox driver" driver=process why="process: UNISOLATED — runc not found on PATH; `) ||
		!strings.Contains(log, "run stratus as root with runc installed, or use --sandbox runc to refuse to start without it") {
		t.Errorf("without runc, the log says:\n%s", log)
	}
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--token", testToken, "--sandbox", "runc")
	cmd.Env = append(os.Environ(), noRunc...)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "sandbox driver runc (--sandbox runc)") || !strings.Contains(string(out), "runc") {
		t.Errorf("--sandbox runc without runc: err %v, output:\n%s", err, out)
	}
}

// startAndStop starts a server with env added to its environment, waits
// until it serves, stops it and returns its log.
func startAndStop(t *testing.T, env []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "server", "--listen", "127.0.0.1:0", "--data", t.TempDir(), "--token", testToken)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	url := ""
	for url == "" && sc.Scan() {
		if _, rest, ok := strings.Cut(sc.Text(), "listening on "); ok {
			url = strings.Fields(rest)[0]
		}
	}
	// Stop it once all of it runs.
	eventually.True(t, 30*time.Second, "the server to be ready", func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("server: %v\n%s", err, stderr.String())
	}
	return stderr.String()
}

const fsProbeApp = `import os


def handler(event, context):
    out = {
        "cwd": os.getcwd(),
        "taskRoot": os.environ.get("LAMBDA_TASK_ROOT"),
        "runtimeDir": os.environ.get("LAMBDA_RUNTIME_DIR"),
        "code": open("app.py").read()[:9],
        "runtimeClient": os.path.exists("/var/runtime/python/bootstrap.py"),
    }
    for name, path in [("task", "/var/task/new.txt"), ("tmp", "/tmp/new.txt")]:
        try:
            with open(path, "w") as f:
                f.write("x")
            out[name] = "written"
        except OSError as e:
            out[name] = e.strerror
    return out
`

// TestFunctionFilesystemInRunc: in runc a function finds its code at
// /var/task, read-only, and the runtime clients at /var/runtime, as on
// Lambda; /tmp is writable.
func TestFunctionFilesystemInRunc(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"app.py": fsProbeApp})
	s.mustCLI("deploy", "fsprobe", "--runtime", "python3", "--handler", "app.handler", code)
	resp, body := s.invoke("fsprobe", `{}`)
	wantOK(t, resp, body)
	got := decode[map[string]any](t, body)
	want := map[string]any{
		"cwd": "/var/task", "taskRoot": "/var/task", "runtimeDir": "/var/runtime",
		"code": "import os", "runtimeClient": true,
		"task": "Read-only file system", "tmp": "written",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := os.Stat(code + "/new.txt"); err == nil {
		t.Errorf("the function wrote into its code folder on the host")
	}
}

// TestOutOfMemory: a function that allocates more than its memory is
// killed, and the invocation fails as on Lambda; the next one gets a new
// instance.
func TestOutOfMemory(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"app.py": `def handler(event, context):
    if event.get("allocMB"):
        block = "x" * (event["allocMB"] << 20)
        return len(block)
    return "fine"
`})
	s.mustCLI("deploy", "hog", "--runtime", "python3", "--handler", "app.handler", "--memory", "128", "--timeout", "60", code)
	resp, body := s.invoke("hog", `{"allocMB": 300}`)
	e := wantFunctionError(t, resp, body)
	if !strings.Contains(e.ErrorMessage, "Runtime exited with error: signal: killed") || e.ErrorType != "Runtime.ExitError" {
		t.Errorf("error object %+v, want Runtime.ExitError with \"Runtime exited with error: signal: killed\"", e)
	}
	eventually.True(t, 10*time.Second, "a REPORT of the killed invocation with all of its memory used", func() bool {
		return strings.Contains(s.mustCLI("logs", "hog"), "Memory Size: 128 MB\tMax Memory Used: 128 MB")
	})
	resp, body = s.invoke("hog", `{}`)
	wantOK(t, resp, body)
	if string(body) != `"fine"` {
		t.Errorf("after the kill: %s", body)
	}
}

// TestSandboxProcessStillWorks: with --sandbox process a function runs
// in its code folder on the host, as before runc.
func TestSandboxProcessStillWorks(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t, "--sandbox", "process")
	code := writeFiles(t, map[string]string{"app.py": fsProbeApp})
	s.mustCLI("deploy", "fsprobe", "--runtime", "python3", "--handler", "app.handler", code)
	resp, body := s.invoke("fsprobe", `{}`)
	wantOK(t, resp, body)
	got := decode[map[string]any](t, body)
	task, _ := got["taskRoot"].(string)
	if task == "/var/task" || !strings.HasPrefix(task, s.Data) || got["cwd"] != task || got["code"] != "import os" || got["tmp"] != "written" {
		t.Errorf("with the process driver: %v; want the code folder under the data dir %s", got, s.Data)
	}
}

// TestInstancesHavePIDNamespaces: each instance's processes live in a PID
// namespace of their own: the runtime has a low PID, sees only its own
// processes, and two instances have different namespaces, neither the
// host's.
func TestInstancesHavePIDNamespaces(t *testing.T) {
	needRunc(t)
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"app.py": `import os
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {
        "pid": os.getpid(),
        "ns": os.readlink("/proc/self/ns/pid"),
        "procs": len([p for p in os.listdir("/proc") if p.isdigit()]),
    }
`})
	s.mustCLI("deploy", "pidns", "--runtime", "python3", "--handler", "app.handler", code)
	type answer struct {
		PID   int    `json:"pid"`
		NS    string `json:"ns"`
		Procs int    `json:"procs"`
	}
	// Two invocations at once need two instances.
	var wg sync.WaitGroup
	answers := make([]answer, 2)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := s.invoke("pidns", `{"sleep": 2}`)
			if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Function-Error") != "" {
				t.Errorf("invoke: %d %s", resp.StatusCode, body)
				return
			}
			answers[i] = decode[answer](t, body)
		}()
	}
	wg.Wait()
	host, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range answers {
		if a.NS == "" || a.NS == host {
			t.Errorf("instance in PID namespace %q, the host's is %q", a.NS, host)
		}
		if a.PID < 2 || a.PID > 64 {
			t.Errorf("the runtime's PID is %d, want a low one in a namespace of its own", a.PID)
		}
		if a.Procs > 5 {
			t.Errorf("the instance sees %d processes, want only its own", a.Procs)
		}
	}
	if answers[0].NS == answers[1].NS {
		t.Errorf("two instances share PID namespace %s", answers[0].NS)
	}
}

// hostPID returns the host's PID of the process that is pid in PID
// namespace ns ("pid:[INODE]" as /proc/PID/ns/pid reads; empty or the
// host's own: pid itself), 0 if no such process runs.
func hostPID(t *testing.T, ns string, pid int) int {
	t.Helper()
	if own, _ := os.Readlink("/proc/self/ns/pid"); ns == "" || ns == own {
		return pid
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + e.Name() + "/ns/pid"); l != ns {
			continue
		}
		status, _ := os.ReadFile("/proc/" + e.Name() + "/status")
		for line := range strings.Lines(string(status)) {
			// "NSpid:\t4711\t15": the PID in each namespace, the host's first.
			if f := strings.Fields(line); len(f) > 2 && f[0] == "NSpid:" && f[len(f)-1] == strconv.Itoa(pid) {
				return n
			}
		}
	}
	t.Logf("no process is PID %d in PID namespace %s", pid, ns)
	return 0
}

// TestCreateAheadInRunc: a deploy prepares a container for the function
// (its init waits, no program runs, no instance counts as live); the first
// invocation is a cold start on it with its init duration recorded; then
// the next container is prepared; rm leaves no container behind.
func TestCreateAheadInRunc(t *testing.T) {
	needRunc(t)
	s := startServer(t)
	s.mustCLI("deploy", "noop", "--runtime", "provided.al2023", "--memory", "128", fixture("gonoop"))
	// Its init (the server's executable at /dev/.stratus-init) waits; runc
	// has exited and the program does not run.
	eventually.True(t, 30*time.Second, "a prepared container", func() bool {
		procs := processesUnder(s.Data)
		return len(procs) == 1 && strings.Contains(procs[0], "/dev/.stratus-init")
	})
	if v := s.getFn("noop"); v.Instances.Live != 0 {
		t.Errorf("%d live instances before the first call, want 0 (a prepared one is not live)", v.Instances.Live)
	}

	c := s.mustInvoke("noop", `{}`)
	ms, err := strconv.ParseFloat(c.Header.Get("X-Stratus-Init-Duration-Ms"), 64)
	if !c.Cold() || err != nil || ms <= 0 {
		t.Fatalf("first call: %s, init duration %q; want a cold start with its init duration", c, c.Header.Get("X-Stratus-Init-Duration-Ms"))
	}
	t.Logf("cold start on a prepared container: init %.2f ms, call %s", ms, c.Elapsed)
	id := c.RequestID()
	eventually.True(t, 10*time.Second, "the REPORT line of "+id+" with its init duration", func() bool {
		return strings.Contains(s.mustCLI("logs", "noop", "--request", id), "Init Duration: ")
	})
	// The warm instance, and the next container prepared.
	eventually.True(t, 30*time.Second, "the instance and a new prepared container", func() bool { return instancesUnder(s.Data) == 2 })
	if c := s.mustInvoke("noop", `{}`); c.Cold() {
		t.Errorf("second call: %s, want it warm", c)
	}

	s.mustCLI("rm", "noop")
	eventually.True(t, 10*time.Second, "no container after rm", func() bool {
		if len(processesUnder(s.Data)) > 0 {
			return false
		}
		// Nor runc state or bundle of one.
		for _, dir := range []string{"runc", "bundles"} {
			if ents, _ := os.ReadDir(filepath.Join(s.Data, "run", "runc", dir)); len(ents) > 0 {
				return false
			}
		}
		return true
	})
}
