package functions

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// Of concurrent creates of one name exactly one succeeds; the others get
// ErrConflict, keep no code, and the function runs the winner's code.
func TestDeployNewOnlyCreates(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	const n = 6
	codes := make([][]byte, n)
	for i := range codes {
		codes[i] = codeZip(t, fmt.Sprint("create", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	fs := make([]*stratus.Function, n)
	for i := range n {
		wg.Go(func() {
			fs[i], errs[i] = s.DeployNew(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(codes[i]))
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("creates %d and %d both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, stratus.ErrConflict):
			t.Errorf("create %d: %v, want ErrConflict", i, err)
		}
	}
	if won < 0 {
		t.Fatal("no create succeeded")
	}
	head, _ := s.Head("fn")
	if head.CodeSHA != sha(t, codes[won]) || head.Version != fs[won].Version {
		t.Errorf("head %+v, want the code of create %d", head, won)
	}
	if got := e.versions(t, "fn"); len(got) != 1 {
		t.Errorf("versions %v, want one", got)
	}
	code, tmp := e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, codes[won])), code); diff != "" || len(tmp) != 0 {
		t.Errorf("refused creates left code (-want +got):\n%s\ntmp %v", diff, tmp)
	}
	// A native deploy still updates.
	if _, created, err := s.Deploy(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(codes[0])); err != nil || created {
		t.Errorf("update after DeployNew: created %v, %v", created, err)
	}
}

// DeployNew of an image function refuses an existing name too.
func TestDeployNewImage(t *testing.T) {
	e := newEnv(t)
	e.cfg.Images = images{}
	s := e.open(t)
	if _, err := s.DeployNew(t.Context(), "img", stratus.FunctionConfig{Image: "app"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeployNew(t.Context(), "img", stratus.FunctionConfig{Image: "app"}, nil); !errors.Is(err, stratus.ErrConflict) {
		t.Fatalf("second create: %v, want ErrConflict", err)
	}
	if got := e.versions(t, "img"); len(got) != 1 {
		t.Errorf("versions %v, want one", got)
	}
}

// DeployIf and PublishIf check their precondition on the head they
// change, under the deploy lock: a refusal changes nothing.
func TestDeployIfPublishIf(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	ctx := t.Context()
	a, b := codeZip(t, "a"), codeZip(t, "b")
	f := deploy(t, s, "fn", a)
	errStale := errors.New("stale")
	onlyVersion := func(n int) func(*stratus.Version) error {
		return func(head *stratus.Version) error {
			if head == nil || head.Version != n {
				return errStale
			}
			return nil
		}
	}
	cfg := stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}
	if _, _, err := s.DeployIf(ctx, "fn", cfg, bytes.NewReader(b), onlyVersion(f.Version+1)); !errors.Is(err, errStale) {
		t.Fatalf("DeployIf on a stale head: %v", err)
	}
	code, _ := e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, a)), code); diff != "" {
		t.Errorf("a refused DeployIf kept code (-want +got):\n%s", diff)
	}
	if _, err := s.PublishIf(ctx, "fn", "", onlyVersion(f.Version+1)); !errors.Is(err, errStale) {
		t.Fatalf("PublishIf on a stale head: %v", err)
	}
	if vs, _ := s.PublishedVersions(ctx, "fn"); len(vs) != 0 {
		t.Errorf("a refused PublishIf published %+v", vs)
	}
	if _, err := s.PublishIf(ctx, "nope", "", onlyVersion(1)); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("PublishIf of a missing function: %v", err)
	}
	g, created, err := s.DeployIf(ctx, "fn", cfg, bytes.NewReader(b), onlyVersion(f.Version))
	if err != nil || created || g.CodeSHA != sha(t, b) {
		t.Fatalf("DeployIf on the current head: %+v, %v, %v", g, created, err)
	}
	v, err := s.PublishIf(ctx, "fn", "d", onlyVersion(g.Version))
	if err != nil || v.Number != 1 || v.CodeSHA != sha(t, b) {
		t.Fatalf("PublishIf on the current head: %+v, %v", v, err)
	}
}
