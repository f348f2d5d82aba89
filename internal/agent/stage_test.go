package agent

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

var discardLog = slog.New(slog.DiscardHandler)

// hostClientOf is a hostClient of sandbox id at the Host served by srv.
func hostClientOf(srv *httptest.Server, id, token string) *hostClient {
	h := newHostClient(agentConfig{server: srv.URL, id: id, token: token}, discardLog)
	srv.Config.RegisterOnShutdown(h.http.CloseIdleConnections)
	return h
}

// TestStage: the stager unpacks mount i into DIR/i (files read-only,
// folders and symlinks kept), writes nothing at the targets, and once the
// Host was told the mounts are staged, it refuses them (the Sandbox it
// still serves).
func TestStage(t *testing.T) {
	t.Parallel()
	code := t.TempDir()
	mustWrite(t, filepath.Join(code, "hello.txt"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(code, "lib", "run.sh"), "#!/bin/sh\n", 0o755)
	if err := os.Symlink("hello.txt", filepath.Join(code, "link")); err != nil {
		t.Fatal(err)
	}
	targets := []string{filepath.Join(t.TempDir(), "empty"), filepath.Join(t.TempDir(), "task")}
	host := NewHost(discardLog)
	sb := Sandbox{
		ID: "staged", Argv: []string{"/var/task/bootstrap"},
		Mounts: []sandbox.Mount{{Source: t.TempDir(), Target: targets[0]}, {Source: code, Target: targets[1]}},
	}
	token := host.Add(sb)
	srv := httptest.NewServer(host.Handler())
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	for i := range sb.Mounts {
		// In a pod, each is a volume's mount point.
		if err := os.Mkdir(filepath.Join(dir, strconv.Itoa(i)), 0o777); err != nil {
			t.Fatal(err)
		}
	}

	n, err := stage(ctxT(t), hostClientOf(srv, sb.ID, token), dir, MaxMountBytes)
	if err != nil || n != 2 {
		t.Fatalf("stage = %d, %v; want 2 mounts", n, err)
	}
	if entries, err := os.ReadDir(filepath.Join(dir, "0")); err != nil || len(entries) != 0 {
		t.Errorf("DIR/0 holds %v (%v); want the empty mount", entries, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "1", "hello.txt")); err != nil || string(b) != "hello\n" {
		t.Errorf("DIR/1/hello.txt = %q, %v; want the mount's file", b, err)
	}
	for name, want := range map[string]os.FileMode{"hello.txt": 0o444, "lib/run.sh": 0o555, "lib": os.ModeDir | 0o755} {
		if fi, err := os.Lstat(filepath.Join(dir, "1", name)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "1", "link")); err != nil || l != "hello.txt" {
		t.Errorf("link -> %q, %v", l, err)
	}
	for _, target := range targets {
		if _, err := os.Lstat(target); err == nil {
			t.Errorf("the stager wrote the target %s; want DIR only", target)
		}
	}

	// The pod runs: the mounts are no longer served, the Sandbox is.
	host.Staged(sb.ID)
	_, err = stage(ctxT(t), hostClientOf(srv, sb.ID, token), t.TempDir(), MaxMountBytes)
	if !errors.Is(err, stratus.ErrNotFound) || !strings.Contains(err.Error(), "staged already") {
		t.Errorf("stage after Staged = %v; want ErrNotFound saying the mounts were staged", err)
	}
	if got, err := hostClientOf(srv, sb.ID, token).sandbox(ctxT(t)); err != nil || got.Argv[0] != "/var/task/bootstrap" {
		t.Errorf("Sandbox after Staged = %+v, %v; want it served", got, err)
	}
}

// TestStageExit: `stratus agent --stage` exits 0 once the mounts are
// there; it exits 1 when the Host refuses it and 2 with a relative
// folder, and writes why to the termination log either way.
func TestStageExit(t *testing.T) {
	t.Parallel()
	code := t.TempDir()
	mustWrite(t, filepath.Join(code, "bootstrap"), "#!/bin/sh\n", 0o755)
	host := NewHost(discardLog)
	token := host.Add(Sandbox{ID: "fn-1", Argv: []string{"/var/task/bootstrap"}, Mounts: []sandbox.Mount{{Source: code, Target: "/var/task"}}})
	srv := httptest.NewServer(host.Handler())
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name, token, dir string
		want             int
		log              string // in the termination log
	}{
		{"staged", token, "", 0, ""},
		{"wrong token", "nope", "", 1, "401 wrong token"},
		{"relative folder", token, "mounts", 2, `folder "mounts" is not an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			termLog := filepath.Join(t.TempDir(), "termination-log")
			if err := os.WriteFile(termLog, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			dir := tc.dir
			if dir == "" {
				dir = t.TempDir()
			}
			env := []string{EnvServer + "=" + srv.URL, EnvSandbox + "=fn-1", EnvToken + "=" + tc.token, envTerminationLog + "=" + termLog}
			if got := Stage(ctxT(t), env, dir, discardLog); got != tc.want {
				t.Errorf("Stage = %d, want %d", got, tc.want)
			}
			b, err := os.ReadFile(termLog)
			if err != nil || !strings.Contains(string(b), tc.log) || (tc.log == "") != (len(b) == 0) {
				t.Errorf("termination log %q (%v); want %q", b, err, tc.log)
			}
			if tc.want == 0 {
				if fi, err := os.Stat(filepath.Join(dir, "0", "bootstrap")); err != nil || fi.Mode() != 0o555 {
					t.Errorf("DIR/0/bootstrap: %v, %v; want the mount's program, read-only", fi, err)
				}
			}
		})
	}
}

// TestStageRefuses: a mount the stager cannot unpack safely (a tar that
// escapes its folder, holds a device, is cut short or too big), a
// relative target and a Host's refusal fail the staging with why, and
// nothing is written outside DIR.
func TestStageRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		target string
		tar    []byte
		kind   error
		msg    string
	}{
		{"dot dot", "/var/task", buildTar(t, file("../evil", "x")), stratus.ErrInvalid, "must be a clean relative path"},
		{"symlink out", "/var/task", buildTar(t, link("l", "/"), file("l/evil", "x")), stratus.ErrInvalid, `parent "l" is a symlink`},
		{"device", "/var/task", buildTar(t, tarEntry{name: "dev", typ: tar.TypeChar}), stratus.ErrInvalid, "not allowed"},
		{"too big", "/var/task", buildTar(t, file("a", strings.Repeat("a", 600)), file("b", strings.Repeat("b", 600))), stratus.ErrTooLarge, "exceed 1000 bytes"},
		{"cut short", "/var/task", buildTar(t, tarEntry{name: "short", typ: tar.TypeReg, size: 10, body: "abc"}), nil, "unexpected EOF"},
		{"relative target", "task", buildTar(t, file("a", "a")), stratus.ErrInvalid, `target "task" is not an absolute path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A Host that serves what a real one would not.
			mux := http.NewServeMux()
			mux.HandleFunc("GET /v1/agent/sandboxes/s", func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(wireSandbox{ID: "s", Argv: []string{"/b"}, Mounts: []wireMount{{Target: tc.target}}})
			})
			mux.HandleFunc("GET /v1/agent/sandboxes/s/mounts/0", func(w http.ResponseWriter, r *http.Request) {
				w.Write(tc.tar)
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			parent := t.TempDir()
			dir := filepath.Join(parent, "mounts")
			_, err := stage(ctxT(t), hostClientOf(srv, "s", "t"), dir, 1000)
			if err == nil || (tc.kind != nil && !errors.Is(err, tc.kind)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("stage = %v, want %v with %q", err, tc.kind, tc.msg)
			}
			assertOnly(t, parent, dir)
		})
	}

	// The real Host refuses a wrong token and an unknown sandbox alike.
	host := NewHost(discardLog)
	token := host.Add(Sandbox{ID: "s", Argv: []string{"/b"}, Mounts: []sandbox.Mount{{Source: t.TempDir(), Target: "/var/task"}}})
	srv := httptest.NewServer(host.Handler())
	t.Cleanup(srv.Close)
	for _, c := range []*hostClient{hostClientOf(srv, "s", "nope"), hostClientOf(srv, "other", token)} {
		dir := filepath.Join(t.TempDir(), "mounts")
		if _, err := stage(ctxT(t), c, dir, MaxMountBytes); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "401") {
			t.Errorf("stage refused by the Host = %v; want ErrInvalid with 401", err)
		}
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("stage refused by the Host made %s", dir)
		}
	}
}
