package functions

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func publish(t *testing.T, s *Service, name string, want int) *stratus.Version {
	t.Helper()
	v, err := s.Publish(t.Context(), name, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Number != want {
		t.Fatalf("published version %d, want %d", v.Number, want)
	}
	return v
}

// invoke runs name and returns what ran: the record's Qualifier.
func invoke(t *testing.T, s *Service, name string) string {
	t.Helper()
	res, err := s.Invoke(t.Context(), name, stratus.Request{RequestID: "r", Event: []byte(`{}`)})
	if err != nil {
		t.Fatalf("invoke %s: %v", name, err)
	}
	return res.Record.Qualifier
}

// A deploy changes $LATEST only; publishing numbers versions 1, 2, ...,
// returns the newest when nothing changed, and each qualifier runs its
// own copy in a pool of its own, made at its first invocation.
func TestPublishAndInvoke(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	p := e.cfg.Pools.(*pools)
	ctx := t.Context()
	if _, err := s.Publish(ctx, "fn", ""); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("publish a missing function: %v", err)
	}
	a, b := codeZip(t, "a"), codeZip(t, "b")
	deploy(t, s, "fn", a)
	v1 := publish(t, s, "fn", 1)
	if v1.CodeSHA != sha(t, a) || v1.Qualifier != "1" {
		t.Errorf("version 1: %+v", v1)
	}
	publish(t, s, "fn", 1) // nothing changed
	deploy(t, s, "fn", a)  // a new $LATEST, same code and configuration
	publish(t, s, "fn", 1)
	deploy(t, s, "fn", b)
	if got := invoke(t, s, "fn"); got != stratus.LatestVersion {
		t.Errorf("fn ran %q", got)
	}
	if got := invoke(t, s, "fn:$LATEST"); got != stratus.LatestVersion {
		t.Errorf("fn:$LATEST ran %q", got)
	}
	if got := invoke(t, s, "fn:1"); got != "1" {
		t.Errorf("fn:1 ran %q", got)
	}
	publish(t, s, "fn", 2)
	if got := invoke(t, s, "fn:2"); got != "2" {
		t.Errorf("fn:2 ran %q", got)
	}
	for _, name := range []string{"fn:3", "fn:live", "nope", "nope:1"} {
		if _, err := s.Invoke(ctx, name, stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("invoke %s: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.Invoke(ctx, "fn:0", stratus.Request{}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("invoke fn:0: %v, want ErrInvalid", err)
	}
	// Head reads qualified names too.
	if v, ok := s.Head("fn:1"); !ok || v.Number != 1 {
		t.Errorf("Head(fn:1) = %+v, %v", v, ok)
	}
	if _, ok := s.Head("fn:9"); ok {
		t.Error("Head(fn:9) found a version")
	}
	vs, err := s.PublishedVersions(ctx, "fn")
	if err != nil || len(vs) != 2 || vs[0].Number != 1 || vs[1].Number != 2 {
		t.Errorf("PublishedVersions = %+v, %v", vs, err)
	}
	if v, err := s.PublishedVersion(ctx, "fn", 2); err != nil || v.CodeSHA != sha(t, b) {
		t.Errorf("PublishedVersion(2) = %+v, %v", v, err)
	}
	if _, err := s.PublishedVersions(ctx, "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("PublishedVersions of a missing function: %v", err)
	}

	// Deleting version 1 removes its pool; its number is not given again.
	if err := s.DeleteVersion(ctx, "fn", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Invoke(ctx, "fn:1", stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke a deleted version: %v", err)
	}
	deploy(t, s, "fn", a)
	publish(t, s, "fn", 3)
	_, removed := p.calls()
	if diff := cmp.Diff([]string{"fn:1"}, removed); diff != "" {
		t.Errorf("pools removed (-want +got):\n%s", diff)
	}

	// A restart knows the published versions; their pools come at first use.
	s2 := e.open(t)
	if got := invoke(t, s2, "fn:3"); got != "3" {
		t.Errorf("after a restart fn:3 ran %q", got)
	}
	if err := s2.Remove(ctx, "fn"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Invoke(ctx, "fn:3", stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke a version of a removed function: %v", err)
	}
}

func TestAliases(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	ctx := t.Context()
	deploy(t, s, "fn", codeZip(t, "a"))
	publish(t, s, "fn", 1)
	deploy(t, s, "fn", codeZip(t, "b"))
	publish(t, s, "fn", 2)

	live := stratus.Alias{Function: "fn", Name: "live", Version: "1", Description: "prod"}
	a, err := s.PutAlias(ctx, live, true, "")
	if err != nil {
		t.Fatal(err)
	}
	if a.RevisionID == "" || a.Version != "1" {
		t.Errorf("created %+v", a)
	}
	for _, c := range []struct {
		what   string
		a      stratus.Alias
		create bool
		rev    string
		want   error
		in     string
	}{
		{"create again", live, true, "", stratus.ErrConflict, "exists"},
		{"missing version", stratus.Alias{Function: "fn", Name: "x", Version: "5"}, true, "", stratus.ErrNotFound, "version 5"},
		{"missing weighed version", stratus.Alias{Function: "fn", Name: "x", Version: "1", Weights: map[string]float64{"7": 0.5}}, true, "", stratus.ErrNotFound, "version 7"},
		{"missing function", stratus.Alias{Function: "nope", Name: "x", Version: "1"}, true, "", stratus.ErrNotFound, "nope"},
		{"update a missing alias", stratus.Alias{Function: "fn", Name: "x", Version: "1"}, false, "", stratus.ErrNotFound, "x"},
		{"stale revision", stratus.Alias{Function: "fn", Name: "live", Version: "2"}, false, "not-it", stratus.ErrConflict, "precondition"},
		{"bad weights", stratus.Alias{Function: "fn", Name: "live", Version: "1", Weights: map[string]float64{"2": 2}}, false, "", stratus.ErrInvalid, "weight"},
		{"bad name", stratus.Alias{Function: "fn", Name: "9", Version: "1"}, true, "", stratus.ErrInvalid, "alias"},
		{"bad function name", stratus.Alias{Function: "f.n", Name: "x", Version: "1"}, true, "", stratus.ErrInvalid, "f.n"},
	} {
		_, err := s.PutAlias(ctx, c.a, c.create, c.rev)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.in) {
			t.Errorf("%s: %v, want %v saying %q", c.what, err, c.want, c.in)
		}
	}
	if got := invoke(t, s, "fn:live"); got != "1" {
		t.Errorf("fn:live ran %q", got)
	}
	// Rolling forward is moving the alias; its revision changes.
	moved, err := s.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "live", Version: "2"}, false, a.RevisionID)
	if err != nil {
		t.Fatal(err)
	}
	if moved.RevisionID == a.RevisionID {
		t.Error("the revision ID did not change")
	}
	if got := invoke(t, s, "fn:live"); got != "2" {
		t.Errorf("fn:live ran %q after the move", got)
	}
	if _, err := s.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "dev", Version: stratus.LatestVersion}, true, ""); err != nil {
		t.Fatal(err)
	}
	if got := invoke(t, s, "fn:dev"); got != stratus.LatestVersion {
		t.Errorf("fn:dev ran %q", got)
	}
	got, err := s.Aliases(ctx, "fn")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "dev" || got[1].Name != "live" || got[1].RevisionID != moved.RevisionID {
		t.Errorf("Aliases = %+v", got)
	}
	if one, err := s.Alias(ctx, "fn", "live"); err != nil || one.Version != "2" {
		t.Errorf("Alias = %+v, %v", one, err)
	}
	if _, err := s.Alias(ctx, "fn", "nope"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("a missing alias: %v", err)
	}

	// A version an alias names or weighs cannot be deleted.
	if err := s.DeleteVersion(ctx, "fn", 2); !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), `"live"`) {
		t.Errorf("delete an aliased version: %v, want a conflict naming live", err)
	}
	if _, err := s.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "live", Version: "2", Weights: map[string]float64{"1": 0.5}}, false, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVersion(ctx, "fn", 1); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("delete a weighed version: %v, want a conflict", err)
	}
	if err := s.DeleteAlias(ctx, "fn", "live"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAlias(ctx, "fn", "live"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("delete a deleted alias: %v", err)
	}
	if _, err := s.Invoke(ctx, "fn:live", stratus.Request{}); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("invoke a deleted alias: %v", err)
	}
	if err := s.DeleteVersion(ctx, "fn", 1); err != nil {
		t.Errorf("delete a version no alias names any more: %v", err)
	}
	// Aliases survive a restart.
	s2 := e.open(t)
	if v, err := s2.Resolve(stratus.FunctionRef{Name: "fn", Qualifier: "dev"}); err != nil || v.RunsAs() != stratus.LatestVersion {
		t.Errorf("after a restart fn:dev resolves to %+v, %v", v, err)
	}
}

// A weighted alias splits its invocations in its proportion: over n
// draws, version 2's share is within 5 standard deviations of its weight.
func TestWeightedResolve(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	ctx := t.Context()
	deploy(t, s, "fn", codeZip(t, "a"))
	publish(t, s, "fn", 1)
	deploy(t, s, "fn", codeZip(t, "b"))
	publish(t, s, "fn", 2)
	for _, w := range []float64{0, 0.1, 0.5, 0.9, 1} {
		if _, err := s.PutAlias(ctx, stratus.Alias{Function: "fn", Name: "split", Version: "1", Weights: map[string]float64{"2": w}}, w == 0, ""); err != nil {
			t.Fatal(err)
		}
		const n = 20000
		twos := 0
		for range n {
			v, err := s.Resolve(stratus.FunctionRef{Name: "fn", Qualifier: "split"})
			if err != nil {
				t.Fatal(err)
			}
			switch v.Qualifier {
			case "2":
				twos++
			case "1":
			default:
				t.Fatalf("resolved to %q", v.Qualifier)
			}
		}
		sd := math.Sqrt(n * w * (1 - w))
		if d := math.Abs(float64(twos) - n*w); d > 5*sd+0.5 {
			t.Errorf("weight %g: version 2 took %d of %d, want %g ± %.0f", w, twos, n, n*w, 5*sd)
		}
	}
}

// Configure makes a new $LATEST with the same code; a bad change changes
// nothing.
func TestConfigure(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	ctx := t.Context()
	code := codeZip(t, "a")
	f0 := deploy(t, s, "fn", code)
	publish(t, s, "fn", 1)
	f, err := s.Configure(ctx, "fn", func(c *stratus.FunctionConfig) error {
		c.MemoryMB = 512
		c.Env = map[string]string{"A": "1"}
		c.Description = "bigger"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != f0.Version+1 || f.CodeSHA != f0.CodeSHA || f.Config.MemoryMB != 512 || f.Config.Env["A"] != "1" || f.Published != 1 {
		t.Errorf("configured: %+v", f)
	}
	if h, _ := s.Head("fn"); h.Config.MemoryMB != 512 || h.Qualifier != stratus.LatestVersion {
		t.Errorf("head: %+v", h)
	}
	if v, _ := s.Head("fn:1"); v.Config.MemoryMB != stratus.DefaultMemoryMB {
		t.Errorf("version 1 changed: %+v", v.Config)
	}
	publish(t, s, "fn", 2) // the configuration changed
	for _, c := range []struct {
		what   string
		change func(*stratus.FunctionConfig) error
		want   error
	}{
		{"memory", func(c *stratus.FunctionConfig) error { c.MemoryMB = 1; return nil }, stratus.ErrInvalid},
		{"runtime", func(c *stratus.FunctionConfig) error {
			c.Runtime = stratus.RuntimePython3
			c.Handler = "app.handler"
			return nil
		}, stratus.ErrInvalid},
		{"image", func(c *stratus.FunctionConfig) error { c.Image = "app"; c.Runtime = stratus.RuntimeImage; return nil }, stratus.ErrInvalid},
		{"the change's own error", func(*stratus.FunctionConfig) error { return stratus.ErrConflict }, stratus.ErrConflict},
	} {
		if _, err := s.Configure(ctx, "fn", c.change); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.what, err, c.want)
		}
	}
	if got, _ := s.Get(ctx, "fn"); got.Version != f.Version || got.Config.MemoryMB != 512 {
		t.Errorf("a refused change changed the function: %+v", got)
	}
	if _, err := s.Configure(ctx, "nope", func(*stratus.FunctionConfig) error { return nil }); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("configure a missing function: %v", err)
	}
	// Throttling (Lambda's reserved concurrency 0) is a configuration too.
	if _, err := s.Configure(ctx, "fn", func(c *stratus.FunctionConfig) error { c.Throttled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.Head("fn"); !h.Config.Throttled {
		t.Error("not throttled")
	}
}

// Published versions are never pruned; unpublished snapshots beyond
// KeepVersions are.
func TestKeepVersionsKeepsPublished(t *testing.T) {
	e := newEnv(t)
	e.cfg.KeepVersions = 1
	s := e.open(t)
	for i, body := range []string{"a", "b", "c", "d"} {
		deploy(t, s, "fn", codeZip(t, body))
		if i < 2 {
			publish(t, s, "fn", i+1)
		}
	}
	if diff := cmp.Diff([]int{4, 2, 1}, e.versions(t, "fn")); diff != "" {
		t.Errorf("snapshots (-want +got):\n%s", diff)
	}
	if got := invoke(t, s, "fn:1"); got != "1" {
		t.Errorf("fn:1 ran %q", got)
	}
	code, _ := e.codeOnDisk(t)
	if len(code) != 6 {
		t.Errorf("code on disk: %v, want that of 3 snapshots", code)
	}
}

// A deleted published version's code stays while an instance of its own
// pool may still run it (its timeout and the grace after the delete),
// whatever the head's pool says; pruning then removes it.
func TestDeletedVersionCodeOutlivesItsInstances(t *testing.T) {
	e := newEnv(t)
	e.cfg.KeepVersions = 1
	now := time.Unix(1e9, 0)
	e.cfg.Now = func() time.Time { return now }
	e.cfg.InstanceGrace = 10 * time.Second
	e.cfg.HasInstances = func(string, int) bool { return false } // the head's pool is idle
	s := e.open(t)
	ctx := t.Context()
	a, b := codeZip(t, "a"), codeZip(t, "b")
	deploy(t, s, "fn", a)
	publish(t, s, "fn", 1)
	deploy(t, s, "fn", b)
	publish(t, s, "fn", 2)
	if err := s.DeleteVersion(ctx, "fn", 1); err != nil {
		t.Fatal(err)
	}
	deploy(t, s, "fn", b) // a deploy prunes
	code, _ := e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, a), sha(t, b)), code); diff != "" {
		t.Errorf("code right after deleting version 1 (-want +got):\n%s", diff)
	}
	now = now.Add(14 * time.Second) // its timeout (3 s) and the grace
	deploy(t, s, "fn", b)
	code, _ = e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, b)), code); diff != "" {
		t.Errorf("code once version 1's instances are gone (-want +got):\n%s", diff)
	}
}
