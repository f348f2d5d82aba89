package pool

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// recorder is a driver with Mounts and a host IP of its own that records
// the spec of each Start and refuses it.
type recorder struct {
	sandbox.Driver // nil: only Capabilities and Start are called
	specs          []sandbox.Spec
}

var errRecorded = errors.New("recorded")

func (r *recorder) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{Mounts: true, HostIP: netip.MustParseAddr("127.0.0.2")}
}

func (r *recorder) Start(ctx context.Context, spec sandbox.Spec) error {
	r.specs = append(r.specs, spec)
	return errRecorded
}

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
		Region:     "local",
		Log:        slog.New(slog.DiscardHandler),
	})
	m.Deploy(&stratus.Version{Function: "fn", Version: 1, CodeSHA: "abc", Config: stratus.FunctionConfig{
		Runtime: stratus.RuntimeProvidedAL2023, Handler: "h", MemoryMB: 128, TimeoutSec: 3, MaxConcurrency: 1,
	}})
	if _, err := m.Invoke(context.Background(), "fn", stratus.Request{RequestID: "r1", Event: []byte("{}")}); !errors.Is(err, errRecorded) {
		t.Fatalf("Invoke: err = %v, want the driver's", err)
	}
	if len(d.specs) != 1 {
		t.Fatalf("%d starts, want 1", len(d.specs))
	}
	spec := d.specs[0]
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
