package services

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/store"
)

// These tests run services and functions over one real store: its
// registry of names is what keeps a name to one kind.

// noPools takes the functions' versions and does nothing with them.
type noPools struct{}

func (noPools) Deploy(*stratus.Version) {}
func (noPools) Remove(string)           {}
func (noPools) RemoveVersion(string)    {}
func (noPools) InvokeAs(context.Context, string, string, stratus.Request) (*stratus.Response, error) {
	return nil, stratus.ErrUnavailable
}

// oneImage is an image store for functions that holds image "app".
type oneImage struct{}

func (oneImage) Lookup(ref string) (string, int64, bool, error) {
	if ref != "app" {
		return "", 0, false, fmt.Errorf("image %q: %w", ref, stratus.ErrNotFound)
	}
	return "sha256:app", 1, true, nil
}

// bothKinds is a services harness and a functions service over one
// store in a temporary data dir.
type bothKinds struct {
	*harness
	fns  *functions.Service
	code []byte // a zip of an executable bootstrap
}

func newBothKinds(t *testing.T) *bothKinds {
	data := t.TempDir()
	st, err := store.Open(t.Context(), filepath.Join(data, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the harness's cleanup, which is registered later
	h := newHarness(t, func(c *Config) { c.Store = st })
	fns, err := functions.Open(t.Context(), functions.Config{
		Store: st, Pools: noPools{}, DataDir: data, Images: oneImage{},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var zip bytes.Buffer
	if err := archive.ZipDir(dir, &zip); err != nil {
		t.Fatal(err)
	}
	return &bothKinds{harness: h, fns: fns, code: zip.Bytes()}
}

func (b *bothKinds) deployFunction(name string) error {
	_, _, err := b.fns.Deploy(b.t.Context(), name, stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(b.code))
	return err
}

// deployImageFunction deploys function name from image "app": no code
// to check, so it reaches the store sooner.
func (b *bothKinds) deployImageFunction(name string) error {
	_, _, err := b.fns.Deploy(b.t.Context(), name, stratus.FunctionConfig{Image: "app"}, nil)
	return err
}

func wantNameConflict(t *testing.T, what string, err error, holder string) {
	t.Helper()
	if !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), "a "+holder+" has that name") {
		t.Errorf("%s: %v, want ErrConflict saying a %s has that name", what, err, holder)
	}
}

// A service holds its name from the start of its first deploy, while its
// replicas start, and frees it when removed; a function holds its name
// until removed.
func TestNameHeldByOneKind(t *testing.T) {
	b := newBothKinds(t)
	deployed := make(chan error, 1)
	go func() {
		_, err := b.m.Deploy(b.t.Context(), "web", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_WAIT_GATE": "1"}})
		deployed <- err
	}()
	eventually.True(t, waitFor, "web's replica starting", func() bool { return len(b.d.live()) == 1 })
	wantNameConflict(t, "function deploy while the service starts", b.deployFunction("web"), "service")
	b.d.openGate()
	if err := <-deployed; err != nil {
		t.Fatal(err)
	}
	wantNameConflict(t, "function deploy under a service's name", b.deployFunction("web"), "service")
	if err := b.m.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	if err := b.deployFunction("web"); err != nil {
		t.Fatalf("function deploy under a removed service's name: %v", err)
	}

	_, err := b.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app"})
	wantNameConflict(t, "service deploy under a function's name", err, "function")
	if err := b.fns.Remove(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	b.deploy("web", stratus.ServiceConfig{Image: "app"})
}

// A first service deploy that fails frees the name.
func TestFailedDeployFreesName(t *testing.T) {
	b := newBothKinds(t)
	_, err := b.m.Deploy(t.Context(), "web", stratus.ServiceConfig{Image: "app", Env: map[string]string{"FAKE_EXIT_AT_START": "1"}})
	if !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("deploy of a service that exits: %v, want ErrInvalid", err)
	}
	if err := b.deployFunction("web"); err != nil {
		t.Errorf("function deploy after the service's first deploy failed: %v", err)
	}
}

// Many deploys of one new name at once, half of a function, half of a
// service: one kind wins them all, every other gets ErrConflict, and the
// store and the Manager agree on the winner. Each round races for a new
// name; in odd rounds the functions come from an image, which gets them
// to the store sooner.
func TestConcurrentDeploysOfOneName(t *testing.T) {
	b := newBothKinds(t)
	const rounds, n = 4, 6
	wins := map[string]int{}
	for round := range rounds {
		name := fmt.Sprintf("both-%d", round)
		var wg sync.WaitGroup
		fnErrs, svcErrs := make([]error, n), make([]error, n)
		for i := range n {
			wg.Go(func() {
				if round%2 == 1 {
					fnErrs[i] = b.deployImageFunction(name)
				} else {
					fnErrs[i] = b.deployFunction(name)
				}
			})
			wg.Go(func() {
				_, svcErrs[i] = b.m.Deploy(t.Context(), name, stratus.ServiceConfig{Image: "app"})
			})
		}
		wg.Wait()
		count := func(kind string, errs []error) (ok int) {
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, stratus.ErrConflict):
					t.Errorf("%s: %s deploy: %v, want success or ErrConflict", name, kind, err)
				}
			}
			return ok
		}
		fnOK, svcOK := count("function", fnErrs), count("service", svcErrs)
		_, fnErr := b.fns.Get(t.Context(), name)
		_, _, svcErr := b.m.Get(name)
		switch {
		case fnOK == n && svcOK == 0:
			wins["function"]++
			if fnErr != nil || !errors.Is(svcErr, stratus.ErrNotFound) {
				t.Errorf("%s: the function won; get function: %v, get service: %v", name, fnErr, svcErr)
			}
		case svcOK == n && fnOK == 0:
			wins["service"]++
			if svcErr != nil || !errors.Is(fnErr, stratus.ErrNotFound) {
				t.Errorf("%s: the service won; get service: %v, get function: %v", name, svcErr, fnErr)
			}
		default:
			t.Errorf("%s: %d function and %d service deploys of %d each succeeded: want all of one kind", name, fnOK, svcOK, n)
		}
	}
	t.Logf("wins by kind: %v", wins)
}
