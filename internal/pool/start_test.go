package pool

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/logtest"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Building and starting an instance.

// TestLambdaLayout: with a driver that binds folders at other paths, an
// instance has its code read-only at /var/task (its working dir and
// LAMBDA_TASK_ROOT) and the runtime clients at /var/runtime, and reaches
// its Runtime API at the driver's host IP.
func TestLambdaLayout(t *testing.T) {
	d := &recorder{}
	var gotDirs []string
	m := New(Config{
		Driver: d,
		Command: func(v *stratus.Version, taskDir, rtDir string) ([]string, error) {
			gotDirs = []string{taskDir, rtDir}
			return []string{taskDir + "/bootstrap"}, nil
		},
		CodeDir:    func(sha string) string { return "/data/code/" + sha },
		RuntimeDir: "/data/runtimes",
	})
	run(t, m)
	m.Deploy(&stratus.Version{Function: "fn", Version: 1, CodeSHA: "abc", Config: stratus.FunctionConfig{
		Runtime: stratus.RuntimeProvidedAL2023, Handler: "h", MemoryMB: 128, TimeoutSec: 3, MaxConcurrency: 1,
	}})
	if _, err := m.Invoke(context.Background(), "fn", stratus.Request{RequestID: "r1", Event: []byte("{}")}); !errors.Is(err, stratus.ErrUnavailable) {
		t.Fatalf("Invoke: err = %v, want ErrUnavailable (the driver refused the start)", err)
	}
	specs := d.started()
	if len(specs) != 1 {
		t.Fatalf("%d starts, want 1", len(specs))
	}
	spec := specs[0]
	if diff := cmp.Diff([]string{"/var/task", "/var/runtime"}, gotDirs); diff != "" {
		t.Errorf("Command's dirs (-want +got):\n%s", diff)
	}
	want := []sandbox.Mount{{Source: "/data/code/abc", Target: "/var/task"}, {Source: "/data/runtimes", Target: "/var/runtime"}}
	if diff := cmp.Diff(want, spec.Mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if spec.Dir != "/var/task" || !slices.Equal(spec.Argv, []string{"/var/task/bootstrap"}) || spec.MemoryMB != 128 {
		t.Errorf("dir %q, argv %q, memory %d", spec.Dir, spec.Argv, spec.MemoryMB)
	}
	for _, kv := range []string{"LAMBDA_TASK_ROOT=/var/task", "LAMBDA_RUNTIME_DIR=/var/runtime"} {
		if !slices.Contains(spec.Env, kv) {
			t.Errorf("env lacks %s: %q", kv, spec.Env)
		}
	}
	if !slices.ContainsFunc(spec.Env, func(kv string) bool { return strings.HasPrefix(kv, "AWS_LAMBDA_RUNTIME_API=127.0.0.2:") }) {
		t.Errorf("AWS_LAMBDA_RUNTIME_API is not on the driver's host IP: %q", spec.Env)
	}
}

// TestStartFailure: a driver that fails a start gives the waiting call
// ErrUnavailable (not the driver's own error, nor its kind) and logs the
// failure once, with the function, instance and request; a start no call
// waits for (MinInstances) is logged once too.
func TestStartFailure(t *testing.T) {
	d := &recorder{}
	logs := &logtest.Recorder{}
	m := New(Config{
		Log:     slog.New(logs),
		Driver:  d,
		Command: func(v *stratus.Version, taskDir, rtDir string) ([]string, error) { return []string{"bootstrap"}, nil },
		CodeDir: func(sha string) string { return "/data/code/" + sha },
		// No reap retries the MinInstances start: each start is logged
		// once, and the test counts them.
		ReapEvery: time.Hour,
	})
	run(t, m)
	cfg := stratus.FunctionConfig{Runtime: stratus.RuntimeProvidedAL2023, Handler: "h", MemoryMB: 128, TimeoutSec: 3, MaxConcurrency: 1}
	m.Deploy(&stratus.Version{Function: "fn", Version: 1, CodeSHA: "abc", Config: cfg})
	_, err := m.Invoke(context.Background(), "fn", stratus.Request{RequestID: "r1", Event: []byte("{}")})
	if !errors.Is(err, stratus.ErrUnavailable) || errors.Is(err, errRecorded) || strings.Contains(err.Error(), errRecorded.Error()) {
		t.Errorf("Invoke: err = %v, want ErrUnavailable without the driver's error", err)
	}
	specs := d.started()
	if len(specs) != 1 {
		t.Fatalf("%d starts, want 1", len(specs))
	}
	got := find(logs, "start instance")
	want := []map[string]string{{"level": "ERROR", "fn": "fn", "instance": specs[0].ID, "req_id": "r1",
		"err": "start instance of fn:1: " + errRecorded.Error()}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log of the failed start (-want +got):\n%s", diff)
	}

	warm := cfg
	warm.MinInstances = 1
	m.Deploy(&stratus.Version{Function: "warm", Version: 1, CodeSHA: "abc", Config: warm})
	eventually.True(t, 10*time.Second, "a second start", func() bool { return len(d.started()) == 2 })
	eventually.True(t, 10*time.Second, "its log line", func() bool { return len(find(logs, "start instance")) == 2 })
	if got := find(logs, "start instance")[1]; got["fn"] != "warm" || got["instance"] != d.started()[1].ID || got["req_id"] != "" {
		t.Errorf("log of the failed start of a MinInstances instance: %v", got)
	}

	// No failure is logged twice: once a later call has failed in turn,
	// its own line is the only new one.
	if _, err := m.Invoke(context.Background(), "fn", stratus.Request{RequestID: "r2", Event: []byte("{}")}); !errors.Is(err, stratus.ErrUnavailable) {
		t.Errorf("second Invoke: err = %v, want ErrUnavailable", err)
	}
	if got := find(logs, "start instance"); len(got) != 3 || got[2]["req_id"] != "r2" {
		t.Errorf("start failures logged: %v, want the three starts' lines, the last of r2", got)
	}
}
