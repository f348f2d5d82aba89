package client

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// ImportImage uploads the image at path and stores it as ref (when empty,
// the name the archive gives it). path is a `docker save` tarball (plain
// or gzipped), an OCI image layout tar, or an OCI image layout folder,
// which is sent as a tar made on the fly. A missing path is ErrNotFound.
//
// progress, if not nil, is called with the bytes uploaded so far and the
// upload's size (-1 for a folder, whose tar's size is not known ahead), from
// a goroutine of the HTTP transport; it is not called once ImportImage has
// returned. The server imports the upload after it is complete.
func (c *Client) ImportImage(ctx context.Context, path, ref string, progress func(done, total int64)) (*v1.Image, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("import image %s: no such file: %w", path, stratus.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	var body io.Reader
	var size int64 = -1
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarDir(pw, path)) }()
		defer pr.Close() // ends the tar writer if the request stops early
		body = pr
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
		defer f.Close()
		body, size = f, fi.Size()
	}
	if progress != nil {
		pr := &progressReader{r: body, total: size, f: progress}
		defer pr.stop()
		body = pr
	}
	q := ""
	if ref != "" {
		q = "?ref=" + url.QueryEscape(ref)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/images/import"+q, body)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	var img v1.Image
	if err := c.send(req, "application/x-tar", &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// tarDir writes the regular files and folders under dir as a tar to w.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() && !fi.IsDir() {
			return fmt.Errorf("%s: not a regular file or folder", p)
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar image layout %s: %w", dir, err)
	}
	return tw.Close()
}

// PullImage makes the server pull an image from its registry.
//
// progress, if not nil, is called with the compressed layer bytes the
// server has fetched (or found in its store) so far and in all, as the
// server reports them (a few times a second), from the calling goroutine.
// The server then streams its answer (v1.ImagePullEvent lines); an error it
// reports in the stream is an *APIError as well.
func (c *Client) PullImage(ctx context.Context, spec v1.ImagePull, progress func(done, total int64)) (*v1.Image, error) {
	if progress == nil {
		var img v1.Image
		if err := c.postJSON(ctx, "/v1/images/pull", spec, &img); err != nil {
			return nil, err
		}
		return &img, nil
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode request of /v1/images/pull: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/images/pull", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", v1.MediaTypeNDJSON+", application/json")
	resp, err := c.roundTrip(req, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != v1.MediaTypeNDJSON {
		// The pull ended before it reported progress.
		var img v1.Image
		if err := dec.Decode(&img); err != nil {
			return nil, fmt.Errorf("decode answer of %s: %w", req.URL.Path, err)
		}
		return &img, nil
	}
	for {
		var ev v1.ImagePullEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("pull image %q: read the server's progress: %w", spec.Ref, err)
		}
		switch {
		case ev.Error != nil:
			return nil, &APIError{Status: ev.Status, Code: ev.Error.Code, Message: ev.Error.Message}
		case ev.Image != nil:
			return ev.Image, nil
		}
		progress(ev.Done, ev.Total)
	}
}

// progressReader reports the bytes read through it to f until stop.
type progressReader struct {
	r     io.Reader
	total int64

	mu   sync.Mutex
	done int64
	f    func(done, total int64) // nil once stopped
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.mu.Lock()
		p.done += int64(n)
		if p.f != nil {
			p.f(p.done, p.total)
		}
		p.mu.Unlock()
	}
	return n, err
}

// stop ends the reports; the transport may read on after the answer.
func (p *progressReader) stop() {
	p.mu.Lock()
	p.f = nil
	p.mu.Unlock()
}

// ListImages returns the stored images, sorted by ref.
func (c *Client) ListImages(ctx context.Context) ([]v1.Image, error) {
	var l v1.ImageList
	err := c.getJSON(ctx, "/v1/images", &l)
	return l.Images, err
}

// GetImage returns the image with this ref or manifest digest.
func (c *Client) GetImage(ctx context.Context, ref string) (*v1.Image, error) {
	var img v1.Image
	if err := c.getJSON(ctx, "/v1/images/"+escapeRef(ref), &img); err != nil {
		return nil, err
	}
	return &img, nil
}

// RemoveImage removes the image with this ref, or every ref of a
// manifest digest.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.deletePath(ctx, "/v1/images?ref="+url.QueryEscape(ref))
}

// escapeRef escapes each path segment of ref, keeping its slashes.
func escapeRef(ref string) string {
	segs := strings.Split(ref, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
