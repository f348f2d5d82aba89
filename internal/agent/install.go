package agent

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// InstalledName is the file name Install gives the program in its folder.
const InstalledName = "stratus"

// Install copies the running program (the static stratus binary of the
// agent image) to dir/InstalledName, mode 0555, and returns once it is
// there whole: it is written to a temporary file of dir and renamed, so
// that nothing ever runs a partial copy. A sandbox that runs another
// image gets the agent this way: an init container from the agent image
// installs it into a volume that the sandbox's container runs it from.
func Install(dir string) error {
	return install("/proc/self/exe", dir)
}

// install copies the file src to dir/InstalledName as Install does.
func install(src, dir string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install the agent: %w", err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(dir, "."+InstalledName+"-*")
	if err != nil {
		return fmt.Errorf("install the agent: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return fmt.Errorf("install the agent into %s: %w", dir, err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		return fmt.Errorf("install the agent into %s: %w", dir, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("install the agent into %s: %w", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install the agent into %s: %w", dir, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, InstalledName)); err != nil {
		return fmt.Errorf("install the agent into %s: %w", dir, err)
	}
	return nil
}
