package pool

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// Lambda's environment variables of an instance.

// envMap is env as a map, failing on a name given twice.
func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; ok {
			t.Errorf("%s given twice: %q", k, env)
		}
		m[k] = v
	}
	return m
}

// fakeRuntimes makes hostRuntimes answer python3.11 and nodejs20.x for the
// test, counting the probes.
func fakeRuntimes(t *testing.T) *atomic.Int32 {
	var n atomic.Int32
	old := hostRuntimes
	hostRuntimes = &runtimeIDs{probe: func(ctx context.Context, family string) (string, error) {
		n.Add(1)
		return map[string]string{stratus.RuntimePython3: "python3.11", stratus.RuntimeNodejs: "nodejs20.x"}[family], nil
	}}
	t.Cleanup(func() { hostRuntimes = old })
	return &n
}

// TestExecutionEnv: AWS_EXECUTION_ENV is the runtime's identifier as
// Lambda sets it: the one the function was made with, else the host
// interpreter's; none for OS-only runtimes and images.
func TestExecutionEnv(t *testing.T) {
	probes := fakeRuntimes(t)
	m := &Manager{cfg: Config{Region: "eu-west-1", Now: time.Now}}
	cd := code{task: "/var/task", runtime: "/var/runtime"}
	for _, tc := range []struct {
		runtime, lambda string
		want            string // "" for none
	}{
		{stratus.RuntimePython3, "", "AWS_Lambda_python3.11"},
		{stratus.RuntimeNodejs, "", "AWS_Lambda_nodejs20.x"},
		{stratus.RuntimePython3, "python3.13", "AWS_Lambda_python3.13"},
		{stratus.RuntimeNodejs, "nodejs22.x", "AWS_Lambda_nodejs22.x"},
		{stratus.RuntimeProvided, "", ""},
		{stratus.RuntimeProvidedAL2, "provided.al2", ""},
		{stratus.RuntimeProvidedAL2023, "", ""},
	} {
		v := &stratus.Version{Function: "fn", Version: 1, Config: stratus.FunctionConfig{Runtime: tc.runtime, LambdaRuntime: tc.lambda, Handler: "h", MemoryMB: 128}}
		env := envMap(t, m.env(context.Background(), v, cd, "i1", "127.0.0.1:9001", initOnDemand))
		got, ok := env["AWS_EXECUTION_ENV"]
		if tc.want == "" && ok || got != tc.want {
			t.Errorf("%s (%q): AWS_EXECUTION_ENV = %q (set %v), want %q", tc.runtime, tc.lambda, got, ok, tc.want)
		}
		if env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "on-demand" {
			t.Errorf("%s: AWS_LAMBDA_INITIALIZATION_TYPE = %q", tc.runtime, env["AWS_LAMBDA_INITIALIZATION_TYPE"])
		}
		_, nodePath := env["NODE_PATH"]
		if nodePath != (tc.runtime == stratus.RuntimeNodejs) {
			t.Errorf("%s: NODE_PATH set %v", tc.runtime, nodePath)
		}
	}
	// Each family's interpreter was asked once.
	if n := probes.Load(); n != 2 {
		t.Errorf("%d probes, want 2 (one per family)", n)
	}
}

// TestEnvOverrides: a function's own variables replace Lambda's
// unreserved ones (each name once); an image's environment replaces
// Lambda's defaults and keeps its own AWS_EXECUTION_ENV, and the
// function's variables replace the image's.
func TestEnvOverrides(t *testing.T) {
	fakeRuntimes(t)
	m := &Manager{cfg: Config{Region: "eu-west-1", Now: time.Now}}
	v := &stratus.Version{Function: "fn", Version: 1, Config: stratus.FunctionConfig{
		Runtime: stratus.RuntimeNodejs, Handler: "index.handler", MemoryMB: 256,
		Env: map[string]string{"LANG": "C.UTF-8", "NODE_PATH": "/mine", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR", "B": "2", "A": "1"},
	}}
	env := envMap(t, m.env(context.Background(), v, code{task: "/var/task", runtime: "/var/runtime"}, "i1", "10.0.0.1:9001", initProvisioned))
	want := map[string]string{
		"LANG": "C.UTF-8", "NODE_PATH": "/mine", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR", "A": "1", "B": "2",
		"TZ": ":UTC", "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency", "AWS_EXECUTION_ENV": "AWS_Lambda_nodejs20.x",
		"LD_LIBRARY_PATH":        "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
		"AWS_LAMBDA_RUNTIME_API": "10.0.0.1:9001", "AWS_REGION": "eu-west-1", "_HANDLER": "index.handler",
	}
	for k, w := range want {
		if env[k] != w {
			t.Errorf("%s = %q, want %q", k, env[k], w)
		}
	}
	for _, k := range []string{"AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_MAX_CONCURRENCY", "AWS_XRAY_DAEMON_ADDRESS", "_AWS_XRAY_DAEMON_ADDRESS", "AWS_ACCESS_KEY_ID"} {
		if val, ok := env[k]; ok {
			t.Errorf("%s = %q, want it unset", k, val)
		}
	}

	img := &stratus.Version{Function: "img", Version: 1, Config: stratus.FunctionConfig{
		Runtime: stratus.RuntimeImage, Image: "x", MemoryMB: 128, Env: map[string]string{"MODE": "fn"},
	}}
	cd := code{task: "/var/task", image: true, env: []string{"PATH=/var/lang/bin:/usr/bin", "AWS_EXECUTION_ENV=AWS_Lambda_python3.12", "MODE=image", "LD_LIBRARY_PATH=/var/lang/lib"}}
	env = envMap(t, m.env(context.Background(), img, cd, "i2", "10.0.0.1:9001", initOnDemand))
	for k, w := range map[string]string{
		"PATH": "/var/lang/bin:/usr/bin", "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12", "MODE": "fn",
		"LD_LIBRARY_PATH": "/var/lang/lib", "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand", "LANG": "en_US.UTF-8",
	} {
		if env[k] != w {
			t.Errorf("image: %s = %q, want %q", k, env[k], w)
		}
	}
}

// TestRuntimeIDOf reads interpreters' answers to --version.
func TestRuntimeIDOf(t *testing.T) {
	for _, tc := range []struct{ family, out, want string }{
		{stratus.RuntimePython3, "Python 3.12.3\n", "python3.12"},
		{stratus.RuntimePython3, "Python 3.9.18", "python3.9"},
		{stratus.RuntimePython3, "Python 3.14.0rc1", "python3.14"},
		{stratus.RuntimeNodejs, "v20.20.2\n", "nodejs20.x"},
		{stratus.RuntimeNodejs, "v22.1.0", "nodejs22.x"},
		{stratus.RuntimePython3, "Python 2.7.18", ""},
		{stratus.RuntimeNodejs, "node: not found", ""},
		{stratus.RuntimeNodejs, "v20.x; rm -rf /", ""},
	} {
		got, err := runtimeIDOf(tc.family, tc.out)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("runtimeIDOf(%s, %q) = %q, %v; want %q", tc.family, tc.out, got, err, tc.want)
		}
		if err != nil && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("runtimeIDOf(%s, %q): %v, want ErrInvalid", tc.family, tc.out, err)
		}
	}
}

// TestRuntimeIDsFallback: a failed probe gives the family's default,
// which is kept for probeRetry (no start waits for a missing interpreter
// again meanwhile); then the interpreter is asked again, and a good
// answer is kept.
func TestRuntimeIDsFallback(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var calls int
	r := &runtimeIDs{
		probe: func(ctx context.Context, family string) (string, error) {
			calls++
			if calls == 1 {
				return "", exec.ErrNotFound
			}
			return "nodejs24.x", nil
		},
		now: func() time.Time { return now },
	}
	ctx := context.Background()
	var got []string
	for _, step := range []time.Duration{0, time.Second, probeRetry - 2*time.Second, time.Second, 0, time.Hour} {
		now = now.Add(step)
		got = append(got, r.id(ctx, stratus.RuntimeNodejs))
	}
	want := []string{"nodejs20.x", "nodejs20.x", "nodejs20.x", "nodejs24.x", "nodejs24.x", "nodejs24.x"}
	if diff := cmp.Diff(want, got); diff != "" || calls != 2 {
		t.Errorf("ids (-want +got):\n%s; %d probes, want 2", diff, calls)
	}
}

// TestRuntimeIDsCancelled: a probe cut short by its caller's context
// gives that caller the default and keeps nothing: the next start asks.
func TestRuntimeIDsCancelled(t *testing.T) {
	var calls int
	r := &runtimeIDs{probe: func(ctx context.Context, family string) (string, error) {
		calls++
		if err := ctx.Err(); err != nil {
			return "", err
		}
		return "python3.13", nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := []string{r.id(ctx, stratus.RuntimePython3), r.id(context.Background(), stratus.RuntimePython3), r.id(ctx, stratus.RuntimePython3)}
	if diff := cmp.Diff([]string{"python3.12", "python3.13", "python3.13"}, got); diff != "" || calls != 2 {
		t.Errorf("ids (-want +got):\n%s; %d probes, want 2", diff, calls)
	}
}

// TestRuntimeIDsConcurrent: starts that need a family's identifier while
// its interpreter is being asked wait for that one probe, holding no
// lock: another family is answered meanwhile, a waiter whose start is
// cancelled leaves with the default, and when the prober's own start is
// cancelled one waiter asks again rather than all taking the default.
func TestRuntimeIDsConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var probes sync.Map // family → *atomic.Int32
		r := &runtimeIDs{probe: func(ctx context.Context, family string) (string, error) {
			n, _ := probes.LoadOrStore(family, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if family == stratus.RuntimePython3 {
				return "python3.13", nil
			}
			select {
			case <-release:
				return "nodejs22.x", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}}
		count := func(family string) int32 {
			n, ok := probes.Load(family)
			if !ok {
				return 0
			}
			return n.(*atomic.Int32).Load()
		}
		// call asks for node's identifier with ctx; its answer comes on the
		// channel.
		call := func(ctx context.Context) chan string {
			c := make(chan string, 1)
			go func() { c <- r.id(ctx, stratus.RuntimeNodejs) }()
			return c
		}

		proberCtx, cancelProber := context.WithCancel(context.Background())
		prober := call(proberCtx)
		synctest.Wait() // it asks node
		if !r.mu.TryLock() {
			close(release)
			<-prober
			t.Fatal("runtimeIDs holds its lock while it asks an interpreter")
		}
		r.mu.Unlock()
		var waiters []chan string
		for range 8 {
			waiters = append(waiters, call(context.Background()))
		}
		waiterCtx, cancelWaiter := context.WithCancel(context.Background())
		leaving := call(waiterCtx)
		synctest.Wait() // every caller waits for node's one probe
		if n := count(stratus.RuntimeNodejs); n != 1 {
			t.Fatalf("%d node probes, want 1", n)
		}
		if id := r.id(context.Background(), stratus.RuntimePython3); id != "python3.13" {
			t.Errorf("python3 while node is asked: %q, want python3.13", id)
		}

		cancelWaiter()
		if id := <-leaving; id != "nodejs20.x" {
			t.Errorf("cancelled waiter: %q, want the default nodejs20.x", id)
		}
		cancelProber()
		if id := <-prober; id != "nodejs20.x" {
			t.Errorf("cancelled prober: %q, want the default nodejs20.x", id)
		}
		synctest.Wait() // a waiter asks node again
		if n := count(stratus.RuntimeNodejs); n != 2 {
			t.Fatalf("%d node probes after the prober's start was cancelled, want 2", n)
		}

		close(release)
		for i, c := range waiters {
			if id := <-c; id != "nodejs22.x" {
				t.Errorf("waiter %d: %q, want nodejs22.x", i, id)
			}
		}
		if id := r.id(context.Background(), stratus.RuntimeNodejs); id != "nodejs22.x" || count(stratus.RuntimeNodejs) != 2 {
			t.Errorf("after: %q with %d probes, want nodejs22.x with 2", id, count(stratus.RuntimeNodejs))
		}
	})
}

// TestProbeHostInterpreters asks this host's python3 and node, which run
// the functions: their identifiers are Lambda's form.
func TestProbeHostInterpreters(t *testing.T) {
	for family, prefix := range map[string]string{stratus.RuntimePython3: "python3.", stratus.RuntimeNodejs: "nodejs"} {
		id, err := probeInterpreter(context.Background(), family)
		if err != nil {
			if errors.Is(err, exec.ErrNotFound) && os.Getenv("CI") != "true" {
				t.Skipf("%s: %v", family, err)
			}
			t.Fatalf("%s: %v", family, err)
		}
		if !strings.HasPrefix(id, prefix) {
			t.Errorf("%s: %q, want %s...", family, id, prefix)
		}
	}
}

// TestInitializationType: an instance started for an invocation (with or
// without create-ahead) is on-demand; one started to keep MinInstances is
// provisioned-concurrency, and its first invocation is warm.
func TestInitializationType(t *testing.T) {
	for _, maxPrepared := range []int{0, 5} {
		e := newEnv(t, opts{maxPrepared: maxPrepared, fakeClock: true})
		e.deploy("cold", 1, nil)
		ec := e.success(e.mustInvoke("cold", map[string]any{"op": "echo"}))
		if got := ec.Env["AWS_LAMBDA_INITIALIZATION_TYPE"]; got != "on-demand" {
			t.Errorf("MaxPrepared=%d: cold start: %q, want on-demand", maxPrepared, got)
		}
		if maxPrepared > 0 {
			// The next cold start takes the prepared sandbox.
			id := e.waitPrepared("cold")
			g := e.gate()
			busy := e.goInvoke("cold", block(g))
			e.atGate(g)
			resp := e.mustInvoke("cold", map[string]any{"op": "echo"})
			if ec := e.success(resp); resp.Record.Instance != id || ec.Env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "on-demand" {
				t.Errorf("prepared start: instance %s (want %s), %q, want on-demand", resp.Record.Instance, id, ec.Env["AWS_LAMBDA_INITIALIZATION_TYPE"])
			}
			e.open(g)
			e.await(busy)
		}

		e.deploy("warm", 1, func(c *stratus.FunctionConfig) { c.MinInstances = 1 })
		e.waitFor("warm's MinInstances", func() bool { s := e.gauges("warm"); return s.Live == 1 && s.Idle == 1 })
		resp := e.mustInvoke("warm", map[string]any{"op": "echo"})
		ec = e.success(resp)
		if resp.Record.Cold || ec.Env["AWS_LAMBDA_INITIALIZATION_TYPE"] != "provisioned-concurrency" {
			t.Errorf("MaxPrepared=%d: MinInstances instance: cold %v, %q; want warm, provisioned-concurrency", maxPrepared, resp.Record.Cold, ec.Env["AWS_LAMBDA_INITIALIZATION_TYPE"])
		}
		if _, ok := ec.Env["AWS_EXECUTION_ENV"]; ok && ec.Env["AWS_EXECUTION_ENV"] != "" {
			t.Errorf("provided.al2023: AWS_EXECUTION_ENV = %q, want none", ec.Env["AWS_EXECUTION_ENV"])
		}
		e.stop()
	}
}
