package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// work is the run's scratch folder and the binaries it uses.
type work struct {
	dir      string
	root     string // module root
	tiny     string // bench/tinyserver, static
	logZip   []byte // bench/lognoop (logs one line per call), zipped as the CLI does
	baseline string // stratus (or stratusprof) of the baseline commit
	current  string // stratus (or stratusprof) of this tree
	commit   string // the baseline's full commit ID, "" for -baseline
	prof     bool   // both servers are the pprof variant
}

func (w *work) build(ctx context.Context, o options) error {
	benchkit.Logf("building tinyserver, lognoop and the current server")
	w.tiny = filepath.Join(w.dir, "tinyserver")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/tinyserver", w.tiny); err != nil {
		return err
	}
	logBootstrap := filepath.Join(w.dir, "lognoop", "bootstrap")
	if err := benchkit.GoBuild(ctx, w.root, "./bench/lognoop", logBootstrap); err != nil {
		return err
	}
	var err error
	if w.logZip, err = benchkit.CodeZip(filepath.Dir(logBootstrap)); err != nil {
		return err
	}
	serverPkg := "./cmd/stratus"
	if o.profileDir != "" {
		serverPkg, w.prof = "./bench/stratusprof", true
	}
	switch {
	case o.stratusBin != "":
		w.current = o.stratusBin
	default:
		w.current = filepath.Join(w.dir, "stratus-current")
		if err := benchkit.GoBuild(ctx, w.root, serverPkg, w.current); err != nil {
			return err
		}
	}
	if o.baselineBin != "" {
		w.baseline = o.baselineBin
		return nil
	}
	if w.commit, err = resolveCommit(ctx, w.root, o.commit); err != nil {
		return err
	}
	cache, err := cacheDir()
	if err != nil {
		return err
	}
	w.baseline, err = buildAt(ctx, w.root, w.commit, serverPkg, cache)
	return err
}

// resolveCommit is the full ID of the commit rev names in the repository
// at root.
func resolveCommit(ctx context.Context, root, rev string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--verify", rev+"^{commit}").Output()
	if err != nil {
		return "", fmt.Errorf("resolve baseline commit %q: %w (give a commit of this repository with -commit, or a binary with -baseline)", rev, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// cacheDir is where baseline builds are kept between runs:
// ~/.cache/stratus-bench (the user's cache folder).
func cacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache folder for baseline builds: %w", err)
	}
	return filepath.Join(d, "stratus-bench"), nil
}

// cachedBinary is the path of the build of pkg (./cmd/stratus or
// ./bench/stratusprof) at commit in the cache folder cache.
func cachedBinary(cache, commit, pkg string) string {
	return filepath.Join(cache, "stratus-"+commit, filepath.Base(pkg))
}

// buildAt returns a static build of pkg from the tree of commit, built
// once and kept in cache: the commit's files are extracted with git
// archive into a temporary folder, built there and removed.
func buildAt(ctx context.Context, root, commit, pkg, cache string) (string, error) {
	bin := cachedBinary(cache, commit, pkg)
	if _, err := os.Stat(bin); err == nil {
		benchkit.Logf("baseline: %s of %s from the cache (%s)", pkg, commit[:12], bin)
		return bin, nil
	}
	benchkit.Logf("baseline: building %s of %s", pkg, commit[:12])
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	src, err := os.MkdirTemp(filepath.Dir(bin), "src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	if untar.Stdin, err = archive.StdoutPipe(); err != nil {
		return "", err
	}
	var errb strings.Builder
	archive.Stderr, untar.Stderr = &errb, &errb
	if err := untar.Start(); err != nil {
		return "", fmt.Errorf("extract %s: %w", commit[:12], err)
	}
	aerr := archive.Run()
	uerr := untar.Wait()
	if aerr != nil || uerr != nil {
		return "", fmt.Errorf("extract %s: git archive: %v, tar: %v: %s", commit[:12], aerr, uerr, errb.String())
	}
	tmp := bin + ".tmp"
	if err := benchkit.GoBuild(ctx, src, pkg, tmp); err != nil {
		return "", fmt.Errorf("baseline %s: %w", commit[:12], err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}
