package image_test

import (
	"errors"
	"os"
	"path/filepath"
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
