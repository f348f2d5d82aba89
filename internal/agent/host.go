package agent

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// Host serves the agents of one server: each registered sandbox's Sandbox
// (without Source paths) and its mounts as tars, to the agent holding its
// token. Its methods are safe for concurrent use.
type Host struct {
	log *slog.Logger

	mu    sync.Mutex
	boxes map[string]hostEntry
}

type hostEntry struct {
	sb    Sandbox
	token string
}

// NewHost returns a Host with no sandboxes.
func NewHost(log *slog.Logger) *Host {
	return &Host{log: log, boxes: make(map[string]hostEntry)}
}

// Add registers sb (replacing a sandbox of the same ID and its token) and
// returns a fresh random credential for its agent.
func (h *Host) Add(sb Sandbox) (token string) {
	var b [32]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	h.mu.Lock()
	h.boxes[sb.ID] = hostEntry{sb: sb, token: token}
	h.mu.Unlock()
	return token
}

// Remove forgets sandbox id: its token no longer works. Removing an
// unknown ID does nothing.
func (h *Host) Remove(id string) {
	h.mu.Lock()
	delete(h.boxes, id)
	h.mu.Unlock()
}

// Handler returns the Host's HTTP routes, for the driver to serve on its
// own listener:
//
//	GET /v1/agent/sandboxes/{id}            the Sandbox as JSON, without mount sources
//	GET /v1/agent/sandboxes/{id}/mounts/{i} mount i's Source folder as application/x-tar
func (h *Host) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/agent/sandboxes/{id}", h.serveSandbox)
	mux.HandleFunc("GET /v1/agent/sandboxes/{id}/mounts/{i}", h.serveMount)
	return mux
}

// lookup authorizes r for the sandbox of its path, answering 401 or 404
// itself when it fails.
func (h *Host) lookup(w http.ResponseWriter, r *http.Request) (Sandbox, bool) {
	id := r.PathValue("id")
	if !hasBearer(r) {
		writeError(w, http.StatusUnauthorized, "missing bearer token")
		return Sandbox{}, false
	}
	h.mu.Lock()
	e, ok := h.boxes[id]
	h.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q not found", id))
		return Sandbox{}, false
	}
	if !bearer(r, e.token) {
		writeError(w, http.StatusUnauthorized, fmt.Sprintf("sandbox %q: wrong token", id))
		return Sandbox{}, false
	}
	return e.sb, true
}

func (h *Host) serveSandbox(w http.ResponseWriter, r *http.Request) {
	sb, ok := h.lookup(w, r)
	if !ok {
		return
	}
	writeJSON(w, toWire(sb))
}

func (h *Host) serveMount(w http.ResponseWriter, r *http.Request) {
	sb, ok := h.lookup(w, r)
	if !ok {
		return
	}
	i, err := strconv.Atoi(r.PathValue("i"))
	if err != nil || i < 0 || i >= len(sb.Mounts) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q: mount %q not found (it has %d)", sb.ID, r.PathValue("i"), len(sb.Mounts)))
		return
	}
	src := sb.Mounts[i].Source
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		h.log.Error("agent mount", "instance", sb.ID, "mount", i, "source", src, "err", err)
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("sandbox %q: mount %d is not available", sb.ID, i))
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if err := writeTar(w, src); err != nil {
		// The answer has started: break the connection so that the agent
		// sees a truncated body rather than a shorter tar.
		h.log.Error("agent mount", "instance", sb.ID, "mount", i, "source", src, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// writeTar writes folder src as a tar: folders, regular files and symlinks
// with their permission bits, no owners; other files (devices, sockets,
// pipes) are left out.
func writeTar(w io.Writer, src string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{
			Name:    filepath.ToSlash(rel),
			Mode:    int64(fi.Mode().Perm()),
			ModTime: fi.ModTime(),
		}
		switch {
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case fi.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			if hdr.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			return nil // devices, sockets, pipes
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar %s: %w", p, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("tar %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
