package functions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
)

// zipOf is a zip of files (name → content); names ending in "*" are
// executable (the star is not part of the name).
func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		mode := os.FileMode(0o644)
		if n, ok := strings.CutSuffix(name, "*"); ok {
			name, mode = n, 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := archive.ZipDir(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// images is an image store of one runnable image "app" and one without
// entrypoint, "bare".
type images struct{}

func (images) Lookup(ref string) (string, int64, bool, error) {
	switch ref {
	case "app":
		return "sha256:app", 1000, true, nil
	case "bare":
		return "sha256:bare", 1000, false, nil
	}
	return "", 0, false, fmt.Errorf("image %q: %w", ref, stratus.ErrNotFound)
}

// Bad input fails with a clear error and changes nothing: no function,
// no code on disk, nothing handed to the pools.
func TestDeployRefuses(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	provided := stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}
	with := func(f func(*stratus.FunctionConfig)) stratus.FunctionConfig {
		c := provided
		f(&c)
		return c
	}
	good := zipOf(t, map[string]string{"bootstrap*": "#!/bin/sh\n"})
	cases := []struct {
		what string
		name string
		cfg  stratus.FunctionConfig
		code []byte // nil: no code
		want error
		text string
	}{
		{"bad name", "bad/name", provided, good, stratus.ErrInvalid, "name"},
		{"no runtime", "fn", stratus.FunctionConfig{}, good, stratus.ErrInvalid, "runtime is required"},
		{"unknown runtime", "fn", stratus.FunctionConfig{Runtime: "cobol"}, good, stratus.ErrInvalid, "unknown runtime"},
		{"concurrency above the server's", "fn", with(func(c *stratus.FunctionConfig) { c.MaxConcurrency = 11 }), good, stratus.ErrInvalid, "max concurrency"},
		{"memory", "fn", with(func(c *stratus.FunctionConfig) { c.MemoryMB = 1 }), good, stratus.ErrInvalid, "memory"},
		{"retries above the server's", "fn", with(func(c *stratus.FunctionConfig) { n := 3; c.MaxRetries = &n }), good, stratus.ErrInvalid, "max retries"},
		{"unknown topic", "fn", with(func(c *stratus.FunctionConfig) { c.OnFailure = "topic:nope" }), good, stratus.ErrNotFound, "stratus topic create nope"},
		{"no code", "fn", provided, nil, stratus.ErrInvalid, "code is required"},
		{"empty code", "fn", provided, []byte{}, stratus.ErrInvalid, "empty"},
		{"not a zip", "fn", provided, []byte("hello"), stratus.ErrInvalid, ""},
		{"no bootstrap", "fn", provided, zipOf(t, map[string]string{"main.go": "package main"}), stratus.ErrInvalid, "named bootstrap"},
		{"bootstrap a folder", "fn", provided, zipOf(t, map[string]string{"bootstrap/run*": "#!/bin/sh\n"}), stratus.ErrInvalid, "named bootstrap"},
		{"no python module", "fn", stratus.FunctionConfig{Runtime: stratus.RuntimePython3, Handler: "app.handler"},
			zipOf(t, map[string]string{"other.py": ""}), stratus.ErrInvalid, "no module app.py"},
		{"no node file", "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeNodejs, Handler: "index.handler"},
			zipOf(t, map[string]string{"main.js": ""}), stratus.ErrInvalid, "no file index.js"},
		{"image and code", "fn", stratus.FunctionConfig{Image: "app"}, good, stratus.ErrInvalid, "not both"},
		{"image without an image store", "fn", stratus.FunctionConfig{Image: "app"}, nil, stratus.ErrUnavailable, "image store"},
	}
	for _, c := range cases {
		var code io.Reader
		if c.code != nil {
			code = bytes.NewReader(c.code)
		}
		_, _, err := s.Deploy(t.Context(), c.name, c.cfg, code)
		if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), c.text) {
			t.Errorf("%s: %v, want %v saying %q", c.what, err, c.want, c.text)
		}
	}
	if list, err := s.List(t.Context()); err != nil || len(list) != 0 {
		t.Errorf("functions after refused deploys: %v, %v", list, err)
	}
	if code, tmp := e.codeOnDisk(t); len(code)+len(tmp) != 0 {
		t.Errorf("left on disk: code %v, tmp %v", code, tmp)
	}
	if deployed, _ := e.cfg.Pools.(*pools).calls(); len(deployed) != 0 {
		t.Errorf("handed to the pools: %v", deployed)
	}
}

// A deploy creates the function, the next updates it with a new
// version, and remove deletes it with its code; the pools follow.
func TestDeployUpdateRemove(t *testing.T) {
	e := newEnv(t)
	p := e.cfg.Pools.(*pools)
	s := e.open(t)
	v1, v2 := codeZip(t, "one"), codeZip(t, "two")

	f, created, err := s.Deploy(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(v1))
	if err != nil || !created || f.Version != 1 || f.CodeSHA != sha(t, v1) {
		t.Fatalf("first deploy: %+v, created %v, %v", f, created, err)
	}
	if f.Config.MaxConcurrency != 10 || f.Config.MemoryMB != stratus.DefaultMemoryMB {
		t.Errorf("defaults: concurrency %d (the server's cap is 10), memory %d", f.Config.MaxConcurrency, f.Config.MemoryMB)
	}
	f, created, err = s.Deploy(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided, MemoryMB: 256}, bytes.NewReader(v2))
	if err != nil || created || f.Version != 2 || f.Config.MemoryMB != 256 {
		t.Fatalf("second deploy: %+v, created %v, %v", f, created, err)
	}
	if h, ok := s.Head("fn"); !ok || h.Version != 2 || h.CodeSHA != sha(t, v2) {
		t.Errorf("head after the update: %+v, %v", h, ok)
	}
	if got, err := s.Get(t.Context(), "fn"); err != nil || got.Version != 2 {
		t.Errorf("get: %+v, %v", got, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.CodeDir(sha(t, v2)), "bootstrap")); err != nil || !strings.Contains(string(b), "two") {
		t.Errorf("extracted code of version 2: %q, %v", b, err)
	}
	if got := CodeDirs(e.data)(sha(t, v2)); got != s.CodeDir(sha(t, v2)) {
		t.Errorf("CodeDirs gives %s, the Service %s", got, s.CodeDir(sha(t, v2)))
	}

	if err := s.Remove(t.Context(), "fn"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Head("fn"); ok {
		t.Error("a head after remove")
	}
	if _, err := s.Get(t.Context(), "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("get after remove: %v, want ErrNotFound", err)
	}
	if code, _ := e.codeOnDisk(t); len(code) != 0 {
		t.Errorf("code left after remove: %v", code)
	}
	if err := s.Remove(t.Context(), "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	deployed, removed := p.calls()
	if !slices.Equal(deployed, []string{"fn:1", "fn:2"}) || !slices.Equal(removed, []string{"fn"}) {
		t.Errorf("pools got deploys %v and removes %v", deployed, removed)
	}
}

// A name a service holds, or claimed while its replicas start, is not a
// function's to take; the refused deploy leaves no code behind. Once
// the service frees it, the function may have it.
func TestDeployNameOfAService(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	if err := e.st.ClaimServiceName(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	// The name is the first thing looked at: bad code under it is a
	// conflict too, not bad input.
	for _, c := range []struct {
		what string
		code []byte
	}{
		{"good code", codeZip(t, "x")},
		{"not a zip", []byte("hello")},
		{"no bootstrap", zipOf(t, map[string]string{"main.go": "package main"})},
	} {
		_, _, err := s.Deploy(t.Context(), "web", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(c.code))
		if !errors.Is(err, stratus.ErrConflict) || !strings.Contains(err.Error(), "a service has that name") {
			t.Errorf("deploy of %s under a service's name: %v, want ErrConflict saying a service has that name", c.what, err)
		}
	}
	if _, ok := s.Head("web"); ok {
		t.Error("a head after a refused deploy")
	}
	if code, tmp := e.codeOnDisk(t); len(code)+len(tmp) != 0 {
		t.Errorf("left on disk: code %v, tmp %v", code, tmp)
	}
	if err := e.st.ReleaseServiceName(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	deploy(t, s, "web", codeZip(t, "x"))
	if err := e.st.ClaimServiceName(t.Context(), "web"); !errors.Is(err, stratus.ErrConflict) {
		t.Errorf("a service claiming a function's name: %v, want ErrConflict", err)
	}
}

// A destination that leads back to the function is refused.
func TestDeployRefusesDestinationLoop(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	code := codeZip(t, "x")
	deployTo := func(name, dest string) error {
		_, _, err := s.Deploy(t.Context(), name, stratus.FunctionConfig{Runtime: stratus.RuntimeProvided, OnFailure: dest}, bytes.NewReader(code))
		return err
	}
	if err := deployTo("a", "function:b"); err != nil {
		t.Fatal(err)
	}
	if err := deployTo("b", "function:c"); err != nil {
		t.Fatal(err)
	}
	err := deployTo("c", "function:a")
	if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "c -> a -> b -> c") {
		t.Errorf("deploy closing a loop: %v, want ErrInvalid naming c -> a -> b -> c", err)
	}
	if err := deployTo("self", "function:self"); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("deploy feeding itself: %v, want ErrInvalid", err)
	}
}

// A function from an image takes the image's digest as its code; the
// image is in use while the head runs it.
func TestDeployFromImage(t *testing.T) {
	e := newEnv(t)
	e.cfg.Images = images{}
	s := e.open(t)
	cases := []struct {
		cfg  stratus.FunctionConfig
		want error
	}{
		{stratus.FunctionConfig{Image: "missing"}, stratus.ErrNotFound},
		{stratus.FunctionConfig{Image: "bare"}, stratus.ErrInvalid},
	}
	for _, c := range cases {
		if _, _, err := s.Deploy(t.Context(), "img", c.cfg, nil); !errors.Is(err, c.want) {
			t.Errorf("deploy %+v: %v, want %v", c.cfg, err, c.want)
		}
	}
	f, created, err := s.Deploy(t.Context(), "img", stratus.FunctionConfig{Image: "app"}, nil)
	if err != nil || !created || f.CodeSHA != "sha256:app" || f.Config.Runtime != stratus.RuntimeImage {
		t.Fatalf("deploy from image: %+v, created %v, %v", f, created, err)
	}
	// An image without entrypoint runs with the handler as its command.
	if _, _, err := s.Deploy(t.Context(), "bare", stratus.FunctionConfig{Image: "bare", Handler: "/bin/handler"}, nil); err != nil {
		t.Errorf("deploy from an image without entrypoint, with a handler: %v", err)
	}
	if !s.ImageInUse("sha256:app") {
		t.Error("the image of a head is not in use")
	}
	if err := s.Remove(context.Background(), "img"); err != nil {
		t.Fatal(err)
	}
	if s.ImageInUse("sha256:app") {
		t.Error("the image of a removed function is in use")
	}
}

// A Config with only the required fields works with the defaults.
func TestOpenDefaults(t *testing.T) {
	e := newEnv(t)
	s, err := Open(t.Context(), Config{Store: e.st, Pools: &pools{}, DataDir: e.data})
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := s.Deploy(t.Context(), "fn", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(codeZip(t, "x")))
	if err != nil {
		t.Fatal(err)
	}
	if f.Config.MaxConcurrency != stratus.DefaultMaxConc {
		t.Errorf("max concurrency %d, want the default %d", f.Config.MaxConcurrency, stratus.DefaultMaxConc)
	}
}

// Config.Removed is called once per successful remove, with the name,
// once the function is gone from the store, the heads and the pools;
// never after a remove that failed.
func TestRemovedHook(t *testing.T) {
	e := newEnv(t)
	p := e.cfg.Pools.(*pools)
	var s *Service
	var calls []string
	e.cfg.Removed = func(name string) {
		calls = append(calls, name)
		// Remove holds deployMu: what the hook sees is settled.
		_, head := s.Head(name)
		_, err := s.Get(context.Background(), name)
		_, removed := p.calls()
		if head || !errors.Is(err, stratus.ErrNotFound) || !slices.Contains(removed, name) {
			t.Errorf("Removed(%q) called with a head %v, get %v, pools told %v; want it gone", name, head, err, removed)
		}
	}
	s = e.open(t)
	deploy(t, s, "fn", codeZip(t, "one"))
	deploy(t, s, "other", codeZip(t, "two"))

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Remove(cancelled, "fn"); err == nil {
		t.Fatal("remove with a cancelled ctx succeeded")
	}
	if err := s.Remove(t.Context(), "missing"); !errors.Is(err, stratus.ErrNotFound) {
		t.Fatalf("remove of an unknown function: %v, want ErrNotFound", err)
	}
	if len(calls) != 0 {
		t.Errorf("Removed called after failed removes: %v", calls)
	}
	if _, ok := s.Head("fn"); !ok {
		t.Fatal("no head after a failed remove")
	}
	if err := s.Remove(t.Context(), "fn"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(t.Context(), "fn"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if !slices.Equal(calls, []string{"fn"}) {
		t.Errorf("Removed called with %v, want [fn]", calls)
	}
}
