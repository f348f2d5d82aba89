package functions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/blobs"
)

// Code a version needs but this server does not have: its kept zip
// extracted again, or, with Config.Blobs, the zip fetched from the blob
// store (verified against its digest) and extracted as a deploy does.
// Entries of DATA/code appear and go only under codeMu; a fetch
// downloads into DATA/tmp first, without it. A fetch runs on a goroutine
// of its own that ends within fetchTimeout, whoever waits for it.

// CodeBlobs keeps functions' code beyond this server: the zip of the code
// with digest SHA is the blob named "code/SHA". *blobs.Store implements
// it.
type CodeBlobs interface {
	// Put stores what r reads as blob name; idempotent by name. It
	// blocks until the blob is durable.
	Put(ctx context.Context, name string, r io.Reader) error
	// Get writes blob name to w; a missing blob is an error wrapping
	// stratus.ErrNotFound.
	Get(ctx context.Context, name string, w io.Writer) error
}

// codeFetch is one fetch of a code digest in progress, which concurrent
// misses of the same digest wait for.
type codeFetch struct {
	done chan struct{}
	err  error // set before done closes
	// ended is set, under mu, once the fetch has recorded its outcome
	// in missing.
	ended bool
}

// errFetching is why code is missing here while a fetch that a caller
// gave up on goes on.
var errFetching = errors.New("its fetch is still in progress")

// fetchTimeout bounds one fetch of code (the blob's download and its
// extraction), whoever waits for it.
const fetchTimeout = 2 * time.Minute

// ensureCode makes the code with digest sha present in DATA/code:
// extracted from the kept zip, or fetched from the blob store. Concurrent
// calls for one digest share one fetch, which runs on a goroutine of its
// own, bounded by fetchTimeout, under ctx's values but not its end: a
// caller whose ctx ends stops waiting (an error wrapping ctx's) while
// the fetch goes on for the others. A failure is remembered for the
// invocation path (see missingErr) until a later call succeeds; so is,
// until the fetch ends, a caller giving up on it. The caller may hold
// deployMu, not codeMu or mu.
func (s *Service) ensureCode(ctx context.Context, sha string) error {
	if _, err := os.Stat(s.CodeDir(sha)); err == nil {
		return nil
	}
	s.fetchMu.Lock()
	f, ok := s.fetching[sha]
	if !ok {
		f = &codeFetch{done: make(chan struct{})}
		s.fetching[sha] = f
		go s.fetchCode(context.WithoutCancel(ctx), sha, f)
	}
	s.fetchMu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
	}
	err := fmt.Errorf("get code %s: %w", sha, ctx.Err())
	s.mu.Lock()
	if !f.ended {
		// Until the fetch ends, invocations of versions of this code
		// fail as unavailable rather than start without it.
		s.missing[sha] = errFetching
	}
	s.mu.Unlock()
	return err
}

// fetchCode is ensureCode's fetch f of sha: it records its outcome in
// missing, then in f.
func (s *Service) fetchCode(ctx context.Context, sha string, f *codeFetch) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	err := s.obtainCode(ctx, sha)
	s.mu.Lock()
	if err != nil {
		s.missing[sha] = err
	} else {
		delete(s.missing, sha)
	}
	f.ended = true
	s.mu.Unlock()
	s.fetchMu.Lock()
	delete(s.fetching, sha)
	s.fetchMu.Unlock()
	f.err = err
	close(f.done)
}

// obtainCode extracts the kept zip of sha, fetching it first when this
// server has none.
func (s *Service) obtainCode(ctx context.Context, sha string) error {
	if _, err := os.Stat(s.zipPath(sha)); err != nil {
		if s.blobs == nil {
			return fmt.Errorf("code %s is missing here (no zip in %s): %w", sha, s.codeDir, stratus.ErrNotFound)
		}
		tmp, err := s.fetchZip(ctx, sha)
		if err != nil {
			return err
		}
		defer os.Remove(tmp) // once renamed, a no-op
		s.codeMu.Lock()
		defer s.codeMu.Unlock()
		if _, err := os.Stat(s.CodeDir(sha)); err == nil {
			return nil // a deploy of the same code put it here meanwhile
		}
		if err := os.Rename(tmp, s.zipPath(sha)); err != nil {
			return fmt.Errorf("keep code %s: %w", sha, err)
		}
		return s.extractLocked(sha)
	}
	s.codeMu.Lock()
	defer s.codeMu.Unlock()
	if _, err := os.Stat(s.CodeDir(sha)); err == nil {
		return nil
	}
	return s.extractLocked(sha)
}

// extractLocked extracts the kept zip of sha into its code folder, with
// the deploys' archive limits, and syncs the code folder. The caller
// holds codeMu.
func (s *Service) extractLocked(sha string) error {
	if _, err := archive.Extract(s.zipPath(sha), s.CodeDir(sha), s.limits); err != nil {
		return fmt.Errorf("extract code %s: %w", sha, err)
	}
	if err := archive.SyncDir(s.codeDir); err != nil {
		return fmt.Errorf("keep code %s: %w", sha, err)
	}
	return nil
}

// fetchZip gets the zip of sha from the blob store into a file under
// DATA/tmp, synced, and returns its path. A blob over the zip limit, or
// whose SHA-256 is not sha, is refused (stratus.ErrTooLarge,
// stratus.ErrInvalid) and leaves nothing.
func (s *Service) fetchZip(ctx context.Context, sha string) (_ string, err error) {
	f, err := os.CreateTemp(s.tmpDir, "fetch-*.zip")
	if err != nil {
		return "", fmt.Errorf("fetch code %s: %w", sha, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("fetch code %s: %w", sha, cerr)
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	w := &digestWriter{w: f, h: sha256.New(), limit: s.limits.MaxZipped}
	if err := s.blobs.Get(ctx, blobs.CodeName(sha), w); err != nil {
		if w.over {
			return "", fmt.Errorf("fetch code %s: the blob is more than the %s limit: %w", sha, sizeText(s.limits.MaxZipped), stratus.ErrTooLarge)
		}
		return "", fmt.Errorf("fetch code %s: %w", sha, err)
	}
	if got := hex.EncodeToString(w.h.Sum(nil)); got != sha {
		return "", fmt.Errorf("fetch code %s: the blob's SHA-256 is %s: %w", sha, got, stratus.ErrInvalid)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fetch code %s: %w", sha, err)
	}
	return f.Name(), nil
}

// errOverLimit stops a blob's copy at the zip limit.
var errOverLimit = errors.New("over the size limit")

// digestWriter writes to w and hashes what it writes, refusing more than
// limit bytes in all.
type digestWriter struct {
	w     io.Writer
	h     hash.Hash
	n     int64
	limit int64
	over  bool
}

func (d *digestWriter) Write(p []byte) (int, error) {
	if d.n+int64(len(p)) > d.limit {
		d.over = true
		return 0, errOverLimit
	}
	n, err := d.w.Write(p)
	d.n += int64(n)
	d.h.Write(p[:n])
	return n, err
}

// putCode stores the zip at path as the blob of sha, when the Service
// has a blob store.
func (s *Service) putCode(ctx context.Context, sha, path string) error {
	if s.blobs == nil {
		return nil
	}
	if err := blobs.PutFile(ctx, s.blobs, blobs.CodeName(sha), path); err != nil {
		return fmt.Errorf("store code %s: %w", sha, err)
	}
	return nil
}

// missingErr is why the code of v is missing here, or nil. The caller
// holds mu (read). A version from an image has no code of its own.
func (s *Service) missingErr(v *stratus.Version) error {
	if len(s.missing) == 0 || v.Config.Image != "" {
		return nil
	}
	if err := s.missing[v.CodeSHA]; err != nil {
		return fmt.Errorf("function %q: its code %s is not on this server (%v): %w", v.Function, v.CodeSHA, err, stratus.ErrUnavailable)
	}
	return nil
}

// keepCode checks the upload at upload (digest sha) for cfg and, unless
// the code is here already, keeps it under DATA/code, durably. It returns
// the path of a zip of the code. The caller holds deployMu.
func (s *Service) keepCode(upload, sha string, cfg stratus.FunctionConfig) (string, error) {
	s.codeMu.Lock()
	defer s.codeMu.Unlock()
	dir := s.CodeDir(sha)
	if _, err := os.Stat(dir); err == nil {
		return upload, checkCode(dir, cfg)
	}
	parent, err := os.MkdirTemp(s.tmpDir, "extract-*")
	if err != nil {
		return "", fmt.Errorf("extract code: %w", err)
	}
	defer os.RemoveAll(parent)
	stage := filepath.Join(parent, "code")
	if _, err := archive.Extract(upload, stage, s.limits); err != nil {
		return "", err
	}
	if err := checkCode(stage, cfg); err != nil {
		return "", err
	}
	// Durable before named: the zip and the tree (Extract synced it)
	// reach the disk, then their names in the code folder, then the
	// version's row (putVersion).
	if err := archive.SyncFile(upload); err != nil {
		return "", fmt.Errorf("keep code archive: %w", err)
	}
	if err := os.Rename(upload, s.zipPath(sha)); err != nil {
		return "", fmt.Errorf("keep code archive: %w", err)
	}
	if err := os.Rename(stage, dir); err != nil {
		return "", fmt.Errorf("keep code: %w", err)
	}
	if err := archive.SyncDir(s.codeDir); err != nil {
		return "", fmt.Errorf("keep code: %w", err)
	}
	return s.zipPath(sha), nil
}
