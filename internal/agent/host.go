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
// (without Source paths) and, until its mounts are staged, its mounts as
// tars, to the agents holding its token. Its methods are safe for
// concurrent use.
type Host struct {
	log *slog.Logger
	// decoy is a token no sandbox has: a request for an unknown sandbox
	// is compared with it, so that it costs what a wrong token does.
	decoy string

	mu    sync.Mutex
	boxes map[string]hostEntry
}

type hostEntry struct {
	sb     Sandbox
	token  string
	staged bool // the mounts are no longer served
}

// NewHost returns a Host with no sandboxes.
func NewHost(log *slog.Logger) *Host {
	return &Host{log: log, decoy: newToken(), boxes: make(map[string]hostEntry)}
}

// newToken is a fresh random credential.
func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Add registers sb (replacing a sandbox of the same ID and its token) and
// returns a fresh random credential for its agents.
func (h *Host) Add(sb Sandbox) (token string) {
	token = newToken()
	h.mu.Lock()
	h.boxes[sb.ID] = hostEntry{sb: sb, token: token}
	h.mu.Unlock()
	return token
}

// Staged tells the Host that sandbox id's mounts are in its pod: from now
// on it answers their requests 404 and serves the Sandbox only. It does
// nothing for an unknown ID.
func (h *Host) Staged(id string) {
	h.mu.Lock()
	if e, ok := h.boxes[id]; ok {
		e.staged = true
		h.boxes[id] = e
	}
	h.mu.Unlock()
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

// lookup authorizes r for the sandbox of its path, answering 401 itself
// when it fails. The token is checked before anything is said of the
// sandbox: a wrong token gets the same 401 whether or not the sandbox
// exists, so that nobody learns which IDs do.
func (h *Host) lookup(w http.ResponseWriter, r *http.Request) (hostEntry, bool) {
	if !hasBearer(r) {
		writeError(w, http.StatusUnauthorized, "missing bearer token")
		return hostEntry{}, false
	}
	h.mu.Lock()
	e, ok := h.boxes[r.PathValue("id")]
	h.mu.Unlock()
	token := e.token
	if !ok {
		token = h.decoy
	}
	if !bearer(r, token) || !ok {
		writeError(w, http.StatusUnauthorized, "wrong token for this sandbox")
		return hostEntry{}, false
	}
	return e, true
}

func (h *Host) serveSandbox(w http.ResponseWriter, r *http.Request) {
	e, ok := h.lookup(w, r)
	if !ok {
		return
	}
	writeJSON(w, toWire(e.sb))
}

func (h *Host) serveMount(w http.ResponseWriter, r *http.Request) {
	e, ok := h.lookup(w, r)
	if !ok {
		return
	}
	sb := e.sb
	if e.staged {
		writeError(w, http.StatusNotFound, fmt.Sprintf("sandbox %q: its mounts were staged already", sb.ID))
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
