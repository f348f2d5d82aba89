package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/runtimes"
)

// roots builds the minimal root of each runtime (rootfs.Build, once per
// runtime and host interpreter: later servers reuse the folder) and
// remembers it for the life of the server.
type roots struct {
	dir string

	mu   sync.Mutex
	runs map[[3]string]rootRun // by runtime, task dir and runtime dir
}

type rootRun struct {
	root string
	argv []string
}

func newRoots(dir string) *roots {
	return &roots{dir: dir, runs: make(map[[3]string]rootRun)}
}

// root implements pool.Config.Root.
func (r *roots) root(v *stratus.Version, taskDir, rtDir string) (string, []string, error) {
	key := [3]string{v.Config.Runtime, taskDir, rtDir}
	r.mu.Lock()
	defer r.mu.Unlock()
	if run, ok := r.runs[key]; ok {
		return run.root, run.argv, nil
	}
	rec, argv, err := runtimes.Root(v.Config.Runtime, taskDir, rtDir)
	if err != nil {
		return "", nil, err
	}
	root, err := rootfs.Build(r.dir, rec)
	if err != nil {
		return "", nil, fmt.Errorf("root of runtime %s: %w", v.Config.Runtime, err)
	}
	r.runs[key] = rootRun{root: root, argv: argv}
	return root, argv, nil
}

// secureDataDir makes the data dir and the secrets in it private to the
// server's user: the folder 0700, the token 0600 (the database files are
// the store's). It refuses a data dir owned by another user, which could
// read or replace what the server keeps there.
func secureDataDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("data dir %s belongs to uid %d, not to this server's uid %d: choose another --data or chown it: %w",
			dir, st.Uid, os.Geteuid(), stratus.ErrInvalid)
	}
	if m := fi.Mode().Perm(); m != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir %s: make it private: %w", dir, err)
		}
		log.Warn("data dir was readable by others; made it private", "dir", dir, "was", fmt.Sprintf("%#o", m), "now", "0700")
	}
	tok := filepath.Join(dir, TokenFile)
	if fi, err := os.Stat(tok); err == nil && fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(tok, 0o600); err != nil {
			return fmt.Errorf("token file: %w", err)
		}
		log.Warn("token file was readable by others; made it private", "file", tok)
	}
	return nil
}
