// Package runtimes ships the Runtime API clients that run Python and Node.js
// functions: small programs, using only their language's standard library,
// that speak the Lambda Runtime API 2018-06-01 to the address in
// AWS_LAMBDA_RUNTIME_API and call the handler named by _HANDLER.
//
// The clients are embedded in the binary; Install writes them to disk and
// Command says how to start one.
package runtimes

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/stratus-run/stratus"
)

//go:embed python/bootstrap.py nodejs/bootstrap.mjs
var clients embed.FS

// shipped maps each runtime to its client (a path in clients and under the
// install dir) and the interpreter that runs it.
var shipped = map[string]struct {
	file        string
	interpreter string
	flags       []string
}{
	stratus.RuntimePython3: {file: "python/bootstrap.py", interpreter: "python3", flags: []string{"-u"}},
	stratus.RuntimeNodejs:  {file: "nodejs/bootstrap.mjs", interpreter: "node"},
}

// Install writes the shipped runtime clients under dir (dir/python/bootstrap.py,
// dir/nodejs/bootstrap.mjs), replacing older copies atomically; idempotent.
// A process already running an older copy keeps it.
func Install(dir string) error {
	for _, c := range shipped {
		data, err := clients.ReadFile(c.file)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", c.file, err)
		}
		if err := writeFileAtomic(filepath.Join(dir, filepath.FromSlash(c.file)), data); err != nil {
			return fmt.Errorf("install runtime client: %w", err)
		}
	}
	return nil
}

// writeFileAtomic makes name hold data: unchanged if it already does, else
// by renaming a synced temporary file in the same directory over it, so a
// reader sees either the old or the new content, never part of one.
func writeFileAtomic(name string, data []byte) error {
	if old, err := os.ReadFile(name); err == nil && bytes.Equal(old, data) {
		return nil
	}
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	return os.Rename(tmp, name)
}

// StartsAhead reports whether runtime's client is one of the shipped ones,
// which can start before its sandbox is (sandbox.Spec.StartAhead): they
// wait for the start byte before they load the function's code.
func StartsAhead(runtime string) bool {
	_, ok := shipped[runtime]
	return ok
}

// Command returns the argv that runs runtime ("python3" or "nodejs") with its
// client installed under dir: e.g. ["python3","-u",dir+"/python/bootstrap.py"],
// ["node", dir+"/nodejs/bootstrap.mjs"]. The interpreter is named, not
// resolved, so the sandbox finds it on its own PATH; it must however be on
// this process's PATH, else the error wraps stratus.ErrUnavailable. An
// unknown runtime is stratus.ErrInvalid.
func Command(runtime, dir string) ([]string, error) {
	c, ok := shipped[runtime]
	if !ok {
		return nil, fmt.Errorf("runtime %q: no shipped client: %w", runtime, stratus.ErrInvalid)
	}
	if _, err := exec.LookPath(c.interpreter); err != nil {
		return nil, fmt.Errorf("runtime %q: %w: %w", runtime, err, stratus.ErrUnavailable)
	}
	argv := append([]string{c.interpreter}, c.flags...)
	return append(argv, filepath.Join(dir, filepath.FromSlash(c.file))), nil
}
