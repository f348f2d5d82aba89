package pool

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// imageDriver is a recorder with the given capabilities (its HostIP
// kept).
type imageDriver struct {
	*recorder
	caps sandbox.Capabilities
}

func (d imageDriver) Capabilities() sandbox.Capabilities {
	c := d.caps
	c.HostIP = d.recorder.Capabilities().HostIP
	return c
}

// TestImageLayout: a version deployed from an image runs the image's
// command in its working dir with its environment before Lambda's. A
// driver with ImageRef gets the image by the reference it was deployed
// with and no root filesystem (none is unpacked); one with RootFS gets
// the unpacked root; one with neither cannot run it.
func TestImageLayout(t *testing.T) {
	for _, tc := range []struct {
		name             string
		caps             sandbox.Capabilities
		wantRef, wantFS  string
		wantUnpack, fail bool
	}{
		{"by reference", sandbox.Capabilities{ImageRef: true, Mounts: true}, "registry.example/fn:1", "", false, false},
		{"root filesystem", sandbox.Capabilities{RootFS: true, Mounts: true}, "", "/data/images/root", true, false},
		{"neither", sandbox.Capabilities{Mounts: true}, "", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			var asked []bool
			m := New(Config{
				Driver: imageDriver{rec, tc.caps},
				Image: func(ctx context.Context, v *stratus.Version, rootFS bool) (*ImageRun, error) {
					asked = append(asked, rootFS)
					run := &ImageRun{Argv: []string{"/app/bootstrap", "handler"}, Env: []string{"FROM_IMAGE=1"}, Dir: "/app"}
					if rootFS {
						run.RootFS = "/data/images/root"
					}
					return run, nil
				},
			})
			run(t, m)
			m.Deploy(&stratus.Version{Function: "fn", Version: 1, CodeSHA: "sha256:abc", Config: stratus.FunctionConfig{
				Image: "registry.example/fn:1", MemoryMB: 128, TimeoutSec: 3, MaxConcurrency: 1,
			}})
			_, err := m.Invoke(context.Background(), "fn", stratus.Request{RequestID: "r1", Event: []byte("{}")})
			if !errors.Is(err, stratus.ErrUnavailable) {
				t.Fatalf("Invoke: err = %v, want ErrUnavailable (the driver refused the start, or cannot run images)", err)
			}
			specs := rec.started()
			if tc.fail {
				if len(specs) != 0 || len(asked) != 0 {
					t.Errorf("%d starts, %d looks at the image; want none from a driver that cannot run images", len(specs), len(asked))
				}
				return
			}
			if len(specs) != 1 || !slices.Equal(asked, []bool{tc.wantUnpack}) {
				t.Fatalf("%d starts, image asked with rootFS %v; want 1 start, rootFS %v", len(specs), asked, tc.wantUnpack)
			}
			spec := specs[0]
			if spec.Image != tc.wantRef || spec.RootFS != tc.wantFS {
				t.Errorf("spec image %q, root filesystem %q; want %q and %q", spec.Image, spec.RootFS, tc.wantRef, tc.wantFS)
			}
			if spec.Dir != "/app" || !slices.Equal(spec.Argv, []string{"/app/bootstrap", "handler"}) || len(spec.Mounts) != 0 {
				t.Errorf("dir %q, argv %q, mounts %v; want the image's command in its working dir, no mounts", spec.Dir, spec.Argv, spec.Mounts)
			}
			if !slices.Contains(spec.Env, "FROM_IMAGE=1") || !slices.Contains(spec.Env, "LAMBDA_TASK_ROOT=/app") {
				t.Errorf("env %q; want the image's and LAMBDA_TASK_ROOT=/app", spec.Env)
			}
		})
	}
}
