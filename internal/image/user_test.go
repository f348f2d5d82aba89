package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/image"
	"github.com/stratus-run/stratus/internal/sandbox"
)

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n# a comment\nweb:x:33:33::/var/www:/bin/sh\n",
		"group":  "root:x:0:\napp:x:1000:\nstaff:x:50:app,web\nwww:x:33:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		user string
		want *sandbox.User
		err  bool
	}{
		{"", nil, false},
		{"root", nil, false},
		{"0", nil, false},
		{"0:0", nil, false},
		{"app", &sandbox.User{UID: 1000, GID: 1000, Groups: []uint32{50}}, false},
		{"1000", &sandbox.User{UID: 1000, GID: 1000, Groups: []uint32{50}}, false},
		{"web:staff", &sandbox.User{UID: 33, GID: 50}, false},
		{"4242", &sandbox.User{UID: 4242}, false},
		{"4242:77", &sandbox.User{UID: 4242, GID: 77}, false},
		{"65532", &sandbox.User{UID: 65532}, false},
		{"65532:65532", &sandbox.User{UID: 65532, GID: 65532}, false},
		{"app:0", &sandbox.User{UID: 1000}, false},
		{"0:staff", &sandbox.User{GID: 50}, false},
		{"nobody", nil, true},
		{"app:nogroup", nil, true},
		{"65536", nil, true},
		{"1:99999", nil, true},
		{"99999999999", nil, true},
		{"1:99999999999", nil, true},
		{":0", nil, true},
		{"app:", nil, true},
		{":", nil, true},
		{"app:staff:extra", nil, true},
		{" app", nil, true},
		{"-1", nil, true},
		{"+5", nil, true},
	} {
		got, err := image.ResolveUser(root, tc.user)
		if tc.err {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("ResolveUser(%q): err = %v, want ErrInvalid", tc.user, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ResolveUser(%q): %v", tc.user, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ResolveUser(%q) (-want +got):\n%s", tc.user, diff)
		}
	}
	// An image without /etc/passwd takes ids only.
	if u, err := image.ResolveUser(t.TempDir(), "7:8"); err != nil || u.UID != 7 || u.GID != 8 {
		t.Errorf("ResolveUser in an empty image = %+v, %v", u, err)
	}
}

// TestResolveUserSymlinks: the image's /etc/passwd and /etc/group are
// found through symbolic links as in a chroot to the image: links that
// stay inside it work, absolute ones start from the image's root, and
// none reaches the host's files, whatever it names.
func TestResolveUserSymlinks(t *testing.T) {
	// host stands for the host's /etc: a user only it knows.
	host := t.TempDir()
	write(t, filepath.Join(host, "passwd"), "hostuser:x:4000:4000::/:/bin/sh\n")
	write(t, filepath.Join(host, "group"), "hostgroup:x:4001:hostuser\n")
	const passwd, group = "app:x:1000:1000::/app:/bin/sh\n", "app:x:1000:\nstaff:x:50:app\n"
	app := &sandbox.User{UID: 1000, GID: 1000, Groups: []uint32{50}}
	for _, tc := range []struct {
		name  string
		files map[string]string // path in the image: content, or "-> target" for a link
		user  string
		want  *sandbox.User
		err   bool // stratus.ErrInvalid
	}{
		{"etc links to the host's etc", map[string]string{"etc": "-> " + host}, "hostuser", nil, true},
		{"etc links to the host's etc, relatively", map[string]string{"etc": "-> " + rel(t, host)}, "hostuser", nil, true},
		{"etc links to /etc", map[string]string{"etc": "-> /etc"}, "root", nil, true},
		{"passwd links to the host's passwd", map[string]string{"etc/passwd": "-> " + filepath.Join(host, "passwd"), "etc/group": "-> " + filepath.Join(host, "group")}, "hostuser", nil, true},
		{"passwd links to /etc/passwd", map[string]string{"etc/passwd": "-> /etc/passwd"}, "root", nil, true},
		{"passwd links up and out", map[string]string{"etc/passwd": "-> ../../../../../../../../" + filepath.Join(host, "passwd")}, "hostuser", nil, true},
		{"a loop", map[string]string{"etc/passwd": "-> passwd2", "etc/passwd2": "-> passwd"}, "app", nil, true},
		{"a loop, numeric user", map[string]string{"etc/passwd": "-> passwd"}, "1000", nil, true},
		{"passwd links inside", map[string]string{"usr/lib/passwd": passwd, "usr/lib/group": group, "etc/passwd": "-> ../usr/lib/passwd", "etc/group": "-> ../usr/lib/group"}, "app", app, false},
		// os.Root refuses absolute links, even to a file of the image.
		{"passwd links inside, absolutely", map[string]string{"usr/lib/passwd": passwd, "etc/group": group, "etc/passwd": "-> /usr/lib/passwd"}, "app", nil, true},
		{"etc links inside", map[string]string{"usr/etc/passwd": passwd, "usr/etc/group": group, "etc": "-> usr/etc"}, "app", app, false},
		{"etc links inside through ..", map[string]string{"usr/etc/passwd": passwd, "usr/etc/group": group, "etc": "-> usr/../usr/./etc/"}, "app", app, false},
		{"passwd is a directory", map[string]string{"etc/passwd/x": "", "etc/group": group}, "1000:50", &sandbox.User{UID: 1000, GID: 50}, false},
		{"etc is a file", map[string]string{"etc": passwd}, "app", nil, true},
		{"etc is a file, numeric user", map[string]string{"etc": passwd}, "1000", &sandbox.User{UID: 1000}, false},
		{"passwd links to a directory", map[string]string{"etc/passwd": "-> ..", "etc/group": group}, "app", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, content := range tc.files {
				p = filepath.Join(root, p)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if target, ok := strings.CutPrefix(content, "-> "); ok {
					if err := os.Symlink(target, p); err != nil {
						t.Fatal(err)
					}
					continue
				}
				write(t, p, content)
			}
			got, err := image.ResolveUser(root, tc.user)
			if tc.err {
				if !errors.Is(err, stratus.ErrInvalid) || got != nil {
					t.Fatalf("ResolveUser(%q) = %+v, %v; want ErrInvalid", tc.user, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tc.user, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ResolveUser(%q) (-want +got):\n%s", tc.user, diff)
			}
		})
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rel is a relative link from an image's etc (a folder of a new
// temporary one) to dir: as many ".." as it takes to reach "/", then dir.
func rel(t *testing.T, dir string) string {
	t.Helper()
	depth := strings.Count(filepath.Clean(t.TempDir()), string(filepath.Separator))
	return strings.Repeat("../", depth+1) + strings.TrimPrefix(dir, "/")
}
