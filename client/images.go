package client

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// ImportImage uploads the image at path and stores it as ref (when empty,
// the name the archive gives it). path is a `docker save` tarball (plain
// or gzipped), an OCI image layout tar, or an OCI image layout folder,
// which is sent as a tar made on the fly. A missing path is ErrNotFound.
func (c *Client) ImportImage(ctx context.Context, path, ref string) (*v1.Image, error) {
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
func (c *Client) PullImage(ctx context.Context, spec v1.ImagePull) (*v1.Image, error) {
	var img v1.Image
	if err := c.postJSON(ctx, "/v1/images/pull", spec, &img); err != nil {
		return nil, err
	}
	return &img, nil
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
