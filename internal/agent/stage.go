package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"

	"github.com/stratus-run/stratus"
)

// Stage is `stratus agent --stage DIR`, the init container of a pod whose
// sandbox has mounts: it reads its Env*, fetches the Sandbox, unpacks
// mount i into DIR/i (a volume that the pod's container binds read-only
// at the mount's Target, and that only this init container can write)
// and returns the exit code the process should exit with: 0 once every
// mount is there, 1 when one could not be had, 2 when its environment or
// DIR is wrong. Before it returns 1 or 2 it writes why to the termination
// log, which the pod's status shows.
func Stage(ctx context.Context, environ []string, dir string, log *slog.Logger) int {
	log = log.With("component", "agent")
	cfg, err := parseEnv(environ)
	if err == nil && !filepath.IsAbs(dir) {
		err = fmt.Errorf("agent stage: folder %q is not an absolute path: %w", dir, stratus.ErrInvalid)
	}
	if err != nil {
		log.Error("agent stage", "err", err)
		writeTerminationLog(cfg.terminationLog, []byte(err.Error()))
		return exitUsage
	}
	log = log.With("instance", cfg.id)
	h := newHostClient(cfg, log)
	defer h.http.CloseIdleConnections()
	n, err := stage(ctx, h, dir, MaxMountBytes)
	if err != nil {
		log.Error("agent stage", "err", err)
		writeTerminationLog(cfg.terminationLog, []byte(err.Error()))
		return 1
	}
	log.Info("agent staged the mounts", "mounts", n)
	return 0
}

// stage fetches the Sandbox from h and unpacks its mount i into dir/i,
// limit bytes of regular files at most each, and returns how many mounts
// it has.
func stage(ctx context.Context, h *hostClient, dir string, limit int64) (int, error) {
	sb, err := h.sandbox(ctx)
	if err != nil {
		return 0, err
	}
	for i, m := range sb.Mounts {
		if !filepath.IsAbs(m.Target) {
			return 0, fmt.Errorf("mount %d: target %q is not an absolute path: %w", i, m.Target, stratus.ErrInvalid)
		}
		dst := filepath.Join(dir, strconv.Itoa(i))
		err := h.get(ctx, "/mounts/"+strconv.Itoa(i), func(body io.Reader) error {
			return extract(body, dst, limit)
		})
		if err != nil {
			return 0, fmt.Errorf("mount %d into %s: %w", i, m.Target, err)
		}
	}
	return len(sb.Mounts), nil
}
