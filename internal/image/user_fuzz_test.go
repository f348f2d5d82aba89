package image

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// FuzzResolveUser: whatever an image's USER, /etc/passwd and /etc/group
// say, resolving never panics, fails only with stratus.ErrInvalid, and
// never gives ids above sandbox.MaxUserID; a numeric uid is taken as
// given, and a "user:group" USER gets no supplementary groups.
func FuzzResolveUser(f *testing.F) {
	const passwd = "root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\napp:x:1000:1000::/app:/bin/sh\n"
	const group = "root:x:0:\nnonroot:x:65532:\nstaff:x:50:app,nonroot\n"
	for _, seed := range []struct{ user, passwd, group string }{
		{"65532", passwd, group},
		{"nonroot", passwd, group},
		{"nonroot:nonroot", passwd, group},
		{"app:staff", passwd, group},
		{"1000:50", "", ""},
		{"root", "", ""},
		{"nobody", passwd, group},
		{":", passwd, group},
		{"app:", passwd, group},
		{"4294967296", passwd, group},
		{"x", "x:x:70000:70000::/:\n", "g:x:70001:x\n"},
		{"x", "x:x:1:2\n#c:x:3:4\n:x:5:6\n", "g:x:9:x,x\n"},
		{"a:b", "a:x:1:1\n", "b:x:notanumber:\nb:x:7:\n"},
	} {
		f.Add(seed.user, seed.passwd, seed.group)
	}
	f.Fuzz(func(t *testing.T, user, passwdText, groupText string) {
		p, err := parseIDFile(strings.NewReader(passwdText))
		if err != nil {
			return // a line too long for the scanner: reported, not parsed
		}
		g, err := parseIDFile(strings.NewReader(groupText))
		if err != nil {
			return
		}
		if user == "" {
			return // ResolveUser answers nil before reading anything
		}
		u, err := resolveUser(user, p, g)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("resolveUser(%q): %v, not ErrInvalid", user, err)
			}
			return
		}
		if u == nil {
			return // the image's root
		}
		if u.UID > sandbox.MaxUserID || u.GID > sandbox.MaxUserID || slices.ContainsFunc(u.Groups, func(id uint32) bool { return id > sandbox.MaxUserID }) {
			t.Fatalf("resolveUser(%q) = %+v: ids above %d", user, u, sandbox.MaxUserID)
		}
		name, grp, hasGroup := strings.Cut(user, ":")
		if id, ok := parseID(name); ok && u.UID != id {
			t.Fatalf("resolveUser(%q).UID = %d, want %d", user, u.UID, id)
		}
		if id, ok := parseID(grp); hasGroup && ok && u.GID != id {
			t.Fatalf("resolveUser(%q).GID = %d, want %d", user, u.GID, id)
		}
		if hasGroup && len(u.Groups) > 0 {
			t.Fatalf("resolveUser(%q).Groups = %v, want none with an explicit group", user, u.Groups)
		}
		if slices.Contains(u.Groups, u.GID) {
			t.Fatalf("resolveUser(%q) = %+v: its group among its supplementary ones", user, u)
		}
	})
}
