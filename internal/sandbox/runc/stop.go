package runc

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Stop implements sandbox.Driver: `runc kill ID TERM` (the init forwards
// it to the program's process group), then after grace `runc kill --all
// ID KILL`; the reaper then removes the container and its bundle.
// Containers of an earlier server are stopped the same way and then
// deleted with `runc delete --force`.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	d.mu.Lock()
	b, ok := d.boxes[id]
	d.mu.Unlock()
	if !ok {
		return d.stopRecovered(ctx, id, grace)
	}
	if isDone(b) {
		return nil
	}
	if grace > 0 {
		d.kill(ctx, id, "TERM", false)
		t := time.NewTimer(grace)
		select {
		case <-b.done:
			t.Stop()
			return nil
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	d.kill(ctx, id, "KILL", true)
	select {
	case <-b.done:
		return nil
	case <-time.After(killTimeout):
		return fmt.Errorf("stop sandbox %q: still runs after SIGKILL: %w", id, stratus.ErrTimeout)
	}
}

// stopRecovered stops a container this driver did not start: no `runc
// run` of ours waits for it, so its end is seen in its cgroups (rootless:
// in runc's state of it).
func (d *Driver) stopRecovered(ctx context.Context, id string, grace time.Duration) error {
	if !validID.MatchString(id) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(d.root, id)); err == nil {
		cg := d.CgroupPath(id)
		runs := func() bool { return cgroupRuns(cg) }
		if d.rootless {
			// No cgroup to watch: runc's state says whether the init runs.
			runs = func() bool { return d.running(ctx, id) }
		}
		if grace > 0 && runs() {
			d.kill(ctx, id, "TERM", false)
			deadline := time.Now().Add(grace)
			for runs() && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(5 * time.Millisecond)
			}
		}
		d.kill(ctx, id, "KILL", true)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
		out, err := d.runcCmd(dctx, "delete", "--force", id)
		cancel()
		if err != nil && !notExist(out) {
			return fmt.Errorf("stop sandbox %q: runc delete: %w: %s", id, err, strings.TrimSpace(string(out)))
		}
		deadline := time.Now().Add(killTimeout)
		for len(CgroupDirs(cg)) > 0 {
			if time.Now().After(deadline) {
				return fmt.Errorf("stop sandbox %q: cgroup still there after delete: %w", id, stratus.ErrTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := removeBundle(d.BundleDir(id)); err != nil {
		return fmt.Errorf("stop sandbox %q: %w", id, err)
	}
	if err := d.net.teardown(id); err != nil {
		return fmt.Errorf("stop sandbox %q: %w", id, err)
	}
	return nil
}

// running reports whether runc says container id runs.
func (d *Driver) running(ctx context.Context, id string) bool {
	out, err := d.runcStdout(ctx, "state", id)
	if err != nil {
		return false
	}
	var st struct{ Status string }
	return json.Unmarshal(out, &st) == nil && st.Status == "running"
}

// kill runs `runc kill`, even when ctx is done (a kill is what follows
// a caller giving up), within killTimeout; errors (the container is gone
// or going) are only logged.
func (d *Driver) kill(ctx context.Context, id, sig string, all bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer cancel()
	args := []string{"kill"}
	// Without cgroups (rootless) runc cannot list the processes: killing
	// the init ends its PID namespace, and everything in it, all the same.
	if all && !d.rootless {
		args = append(args, "--all")
	}
	if out, err := d.runcCmd(ctx, append(args, id, sig)...); err != nil && !notExist(out) && !notRunning(out) {
		d.log.Debug("runc kill", "instance", id, "signal", sig, "err", err, "output", strings.TrimSpace(string(out)))
	}
}

func (d *Driver) runcCmd(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.runc, append([]string{"--root", d.root}, args...)...)
	return cmd.CombinedOutput()
}

// runcStdout runs runc and returns what it wrote to stdout (where a
// warning on stderr cannot spoil it); a failure's error holds its stderr.
func (d *Driver) runcStdout(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, d.runc, append([]string{"--root", d.root}, args...)...)
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return out, err
}

func notExist(out []byte) bool { return strings.Contains(string(out), "does not exist") }

func notRunning(out []byte) bool { return strings.Contains(string(out), "not running") }

// List implements sandbox.Driver: the sandboxes this driver runs, and the
// containers in its runc root that an earlier server left running.
// Leftovers that no longer run (a stopped container, a bundle with no
// container) are removed.
func (d *Driver) List(ctx context.Context) ([]string, error) {
	// runc list reads every container's state dir; one that ends and is
	// deleted meanwhile makes it fail with "no such file or directory".
	// That race is harmless: ask again.
	var out []byte
	var err error
	for try := 0; ; try++ {
		out, err = d.runcStdout(ctx, "list", "--format", "json")
		if err == nil || try == 4 || !strings.Contains(err.Error(), "no such file or directory") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: runc list: %w", err)
	}
	var containers []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &containers); err != nil {
		return nil, fmt.Errorf("list sandboxes: runc list: %w", err)
	}
	ents, err := os.ReadDir(d.bundles)
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	d.mu.Lock()
	mine := make(map[string]bool, len(d.boxes))
	var ids []string
	for id, b := range d.boxes {
		mine[id] = true
		if !isDone(b) {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	known := make(map[string]bool)
	for _, c := range containers {
		known[c.ID] = true
		if mine[c.ID] {
			continue
		}
		if c.Status == "stopped" {
			_ = d.stopRecovered(ctx, c.ID, 0)
			continue
		}
		ids = append(ids, c.ID)
	}
	for _, e := range ents {
		if id := e.Name(); !mine[id] && !known[id] {
			_ = removeBundle(filepath.Join(d.bundles, id))
		}
	}
	// Network state of no container (it ended while no server ran). Under
	// d.mu, so that a Start of the ID cannot set up meanwhile.
	for _, id := range d.net.ids() {
		if known[id] {
			continue
		}
		d.mu.Lock()
		if _, ok := d.boxes[id]; !ok {
			d.teardownNet(id)
		}
		d.mu.Unlock()
	}
	return ids, nil
}
