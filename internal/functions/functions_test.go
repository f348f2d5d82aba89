package functions

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/store"
)

// pools records what the Service hands them; an invocation answers
// with a record of the version its pool runs.
type pools struct {
	mu       sync.Mutex
	deployed []string // version keys
	removed  []string // function names, then pool keys
	running  map[string]*stratus.Version
}

func (p *pools) RemoveVersion(key string) {
	p.mu.Lock()
	p.removed = append(p.removed, key)
	delete(p.running, key)
	p.mu.Unlock()
}

func (p *pools) InvokeAs(ctx context.Context, key, invokedAs string, req stratus.Request) (*stratus.Response, error) {
	p.mu.Lock()
	v := p.running[key]
	p.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("pool %q: %w", key, stratus.ErrNotFound)
	}
	return &stratus.Response{Body: req.Event, Record: stratus.Invocation{
		RequestID: req.RequestID, Function: v.Function, Version: v.Version, Qualifier: v.RunsAs(),
	}}, nil
}

func (p *pools) Deploy(v *stratus.Version) {
	p.mu.Lock()
	p.deployed = append(p.deployed, v.Key())
	if p.running == nil {
		p.running = make(map[string]*stratus.Version)
	}
	p.running[v.PoolKey()] = v
	p.mu.Unlock()
}

func (p *pools) Remove(name string) {
	p.mu.Lock()
	p.removed = append(p.removed, name)
	for k, v := range p.running {
		if v.Function == name {
			delete(p.running, k)
		}
	}
	p.mu.Unlock()
}

// calls returns what the pools were handed so far.
func (p *pools) calls() (deployed, removed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.deployed), slices.Clone(p.removed)
}

type env struct {
	data string
	st   *store.Store
	cfg  Config
}

func newEnv(t *testing.T) *env {
	t.Helper()
	data := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(data, "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &env{data: data, st: st, cfg: Config{Store: st, Pools: &pools{}, DataDir: data, Limits: archive.DefaultLimits(), MaxConcurrency: 10, MaxRetries: 2}}
}

func (e *env) open(t *testing.T) *Service {
	t.Helper()
	s, err := Open(context.Background(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// codeZip is a zip of a bootstrap that prints body.
func codeZip(t *testing.T, body string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\necho "+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := archive.ZipDir(dir, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deploy(t *testing.T, s *Service, name string, code []byte) *stratus.Function {
	t.Helper()
	f, _, err := s.Deploy(context.Background(), name, stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(code))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (e *env) versions(t *testing.T, name string) []int {
	t.Helper()
	vs, err := e.st.ListVersions(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, v := range vs {
		out = append(out, v.Version)
	}
	return out
}

// codeOnDisk lists DATA/code and DATA/tmp.
func (e *env) codeOnDisk(t *testing.T) (code, tmp []string) {
	t.Helper()
	for _, d := range []struct {
		dir string
		out *[]string
	}{{"code", &code}, {"tmp", &tmp}} {
		ents, err := os.ReadDir(filepath.Join(e.data, d.dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range ents {
			*d.out = append(*d.out, en.Name())
		}
	}
	return code, tmp
}

// wantCode is the code folders and zips of shas, sorted as ReadDir does.
func wantCode(shas ...string) []string {
	var out []string
	for _, s := range shas {
		out = append(out, s, s+".zip")
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sha(t *testing.T, code []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "code.zip")
	if err := os.WriteFile(p, code, 0o644); err != nil {
		t.Fatal(err)
	}
	h, _, err := archive.Hash(p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A function keeps its newest KeepVersions versions; older ones go with
// their code, unless a kept version shares it or the version may still
// have instances, and then at a later deploy or start.
func TestKeepVersions(t *testing.T) {
	e := newEnv(t)
	e.cfg.KeepVersions = 3
	now := time.Unix(1e9, 0)
	e.cfg.Now = func() time.Time { return now }
	e.cfg.InstanceGrace = 10 * time.Second
	var busyMu sync.Mutex
	busy := map[int]bool{}
	e.cfg.HasInstances = func(fn string, v int) bool {
		busyMu.Lock()
		defer busyMu.Unlock()
		return fn == "fn" && busy[v]
	}
	s := e.open(t)
	codes := make([][]byte, 7)
	for i := range codes {
		codes[i] = codeZip(t, "v"+strings.Repeat("x", i))
	}
	deploy(t, s, "fn", codes[0])
	deploy(t, s, "fn", codes[1])
	deploy(t, s, "other", codes[1]) // another function shares code 1
	deploy(t, s, "fn", codes[2])
	if diff := cmp.Diff([]int{3, 2, 1}, e.versions(t, "fn")); diff != "" {
		t.Fatalf("versions (-want +got):\n%s", diff)
	}
	deploy(t, s, "fn", codes[3])
	if diff := cmp.Diff([]int{4, 3, 2}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions after the 4th deploy (-want +got):\n%s", diff)
	}
	code, tmp := e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, codes[1]), sha(t, codes[2]), sha(t, codes[3])), code); diff != "" {
		t.Errorf("code on disk (-want +got):\n%s", diff)
	}
	if len(tmp) != 0 {
		t.Errorf("tmp holds %v", tmp)
	}

	// Version 2 (the head until a moment ago) may still have an
	// instance: it stays past the bound.
	busyMu.Lock()
	busy[2] = true
	busyMu.Unlock()
	deploy(t, s, "fn", codes[4])
	if diff := cmp.Diff([]int{5, 4, 3, 2}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions with 2 busy (-want +got):\n%s", diff)
	}
	// Its timeout (3 s) and the grace (10 s) later, no invocation of it
	// can run any more, whatever the pools say of the function. Version
	// 6 shares code 4 with version 5; 3's code goes, 2's stays ("other"
	// has it).
	now = now.Add(14 * time.Second)
	deploy(t, s, "fn", codes[4])
	if diff := cmp.Diff([]int{6, 5, 4}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions 14 s on (-want +got):\n%s", diff)
	}
	code, _ = e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, codes[1]), sha(t, codes[3]), sha(t, codes[4])), code); diff != "" {
		t.Errorf("code on disk (-want +got):\n%s", diff)
	}
	deploy(t, s, "fn", codes[5])
	if diff := cmp.Diff([]int{7, 6, 5}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	code, _ = e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, codes[1]), sha(t, codes[4]), sha(t, codes[5])), code); diff != "" {
		t.Errorf("code on disk (-want +got):\n%s", diff)
	}
	if v, ok := s.Head("fn"); !ok || v.Version != 7 {
		t.Errorf("head: %+v", v)
	}

	// A smaller bound applies at start.
	e.cfg.KeepVersions = 1
	s = e.open(t)
	if diff := cmp.Diff([]int{7}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions after a start with 1 kept (-want +got):\n%s", diff)
	}
	code, _ = e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(sha(t, codes[1]), sha(t, codes[5])), code); diff != "" {
		t.Errorf("code on disk after the start (-want +got):\n%s", diff)
	}
	if v, ok := s.Head("fn"); !ok || v.Version != 7 {
		t.Errorf("head after the start: %+v", v)
	}
	// Replaced on this server while busy, 7 stays until its window ends.
	busyMu.Lock()
	busy[7] = true
	busyMu.Unlock()
	deploy(t, s, "fn", codes[6])
	if diff := cmp.Diff([]int{8, 7}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	now = now.Add(14 * time.Second)
	deploy(t, s, "fn", codes[5])
	if diff := cmp.Diff([]int{9}, e.versions(t, "fn")); diff != "" {
		t.Errorf("versions once 7's window ended (-want +got):\n%s", diff)
	}
}

// A zip that unzips beyond MaxUnzipped is refused (413) and leaves
// nothing on disk: no upload, no staging, no code.
func TestDeployRefusesZipBomb(t *testing.T) {
	e := newEnv(t)
	e.cfg.Limits.MaxUnzipped = 1 << 20
	s := e.open(t)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Deflate})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.LimitReader(zeros{}, 8<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1<<20 {
		t.Fatalf("the bomb is %d bytes zipped", buf.Len())
	}
	_, _, err = s.Deploy(context.Background(), "bomb", stratus.FunctionConfig{Runtime: stratus.RuntimeProvided}, bytes.NewReader(buf.Bytes()))
	if !errors.Is(err, stratus.ErrTooLarge) || !strings.Contains(err.Error(), "unzips to more than the 1 MB limit") {
		t.Fatalf("deploy of a zip bomb: %v, want ErrTooLarge saying the limit", err)
	}
	code, tmp := e.codeOnDisk(t)
	if len(code) != 0 || len(tmp) != 0 {
		t.Errorf("left on disk: code %v, tmp %v", code, tmp)
	}
	if _, err := s.Get(context.Background(), "bomb"); !errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("the refused function exists: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Open removes what an interrupted deploy left: staging, code no version
// names, a half-extracted folder; and re-extracts a kept zip whose folder
// is missing.
func TestOpenRemovesLeftovers(t *testing.T) {
	e := newEnv(t)
	s := e.open(t)
	code := codeZip(t, "kept")
	f := deploy(t, s, "fn", code)
	for _, p := range []string{
		filepath.Join(e.data, "tmp", "extract-1", "code", "bootstrap"),
		filepath.Join(e.data, "tmp", "upload-1.zip"),
		filepath.Join(e.data, "code", strings.Repeat("ab", 32), "bootstrap"),
		filepath.Join(e.data, "code", strings.Repeat("ab", 32)+".zip"),
		filepath.Join(e.data, "code", "."+f.CodeSHA+".tmp-123", "bootstrap"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(s.CodeDir(f.CodeSHA)); err != nil {
		t.Fatal(err)
	}
	s = e.open(t)
	got, tmp := e.codeOnDisk(t)
	if diff := cmp.Diff(wantCode(f.CodeSHA), got); diff != "" {
		t.Errorf("code after start (-want +got):\n%s", diff)
	}
	if len(tmp) != 0 {
		t.Errorf("tmp after start: %v", tmp)
	}
	if _, err := os.Stat(filepath.Join(s.CodeDir(f.CodeSHA), "bootstrap")); err != nil {
		t.Errorf("the kept code was not extracted again: %v", err)
	}
}
