package pool

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
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

// TestRuntimeIDsFallback: a failed probe gives the family's default and
// is asked again at the next start; a good answer is kept.
func TestRuntimeIDsFallback(t *testing.T) {
	var calls int
	r := &runtimeIDs{probe: func(ctx context.Context, family string) (string, error) {
		calls++
		if calls == 1 {
			return "", errors.New("no node")
		}
		return "nodejs24.x", nil
	}}
	ctx := context.Background()
	got := []string{r.id(ctx, stratus.RuntimeNodejs), r.id(ctx, stratus.RuntimeNodejs), r.id(ctx, stratus.RuntimeNodejs)}
	if diff := cmp.Diff([]string{"nodejs20.x", "nodejs24.x", "nodejs24.x"}, got); diff != "" || calls != 2 {
		t.Errorf("ids (-want +got):\n%s; %d probes, want 2", diff, calls)
	}
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
