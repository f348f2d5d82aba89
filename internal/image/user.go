package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// ResolveUser turns an image's USER ("", "name", "uid", "name:group",
// "uid:gid") into ids, reading names from the /etc/passwd and /etc/group
// of the image's root folder (symbolic links followed within it only; see
// readIDFile), as container engines do: a user given alone
// gets its passwd entry's group (0 for a uid with no entry) and the
// groups that list its name; a group given explicitly is the only one. ""
// and "root" are the image's root: nil. A name missing from the image, an
// empty name or group, or an id above sandbox.MaxUserID, is
// stratus.ErrInvalid.
func ResolveUser(root, user string) (*sandbox.User, error) {
	if user == "" {
		return nil, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("image user %q: %w", user, err)
	}
	defer r.Close()
	passwd, err := readIDFile(r, "etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("image user %q: %w", user, err)
	}
	groups, err := readIDFile(r, "etc/group")
	if err != nil {
		return nil, fmt.Errorf("image user %q: %w", user, err)
	}
	u, err := resolveUser(user, passwd, groups)
	if err != nil {
		return nil, fmt.Errorf("image user %q: %w", user, err)
	}
	return u, nil
}

// resolveUser is ResolveUser with the image's passwd and group entries.
func resolveUser(user string, passwd, groups []idEntry) (*sandbox.User, error) {
	name, group, hasGroup := strings.Cut(user, ":")
	if name == "" || hasGroup && group == "" {
		return nil, fmt.Errorf("want USER as name, uid, name:group or uid:gid: %w", stratus.ErrInvalid)
	}
	u := &sandbox.User{}
	uid, ok := parseID(name)
	if !ok && allDigits(name) {
		return nil, fmt.Errorf("uid %s is too large (at most %d): %w", name, sandbox.MaxUserID, stratus.ErrInvalid)
	}
	entry := slices.IndexFunc(passwd, func(e idEntry) bool { return e.name == name || ok && e.id == uid })
	switch {
	case ok:
		u.UID = uid
	case entry >= 0:
		u.UID = passwd[entry].id
	default:
		return nil, fmt.Errorf("no user %q in the image's /etc/passwd (give the image that user, or a numeric USER): %w", name, stratus.ErrInvalid)
	}
	if entry >= 0 {
		u.GID = passwd[entry].gid
	}
	if hasGroup {
		gid, ok := parseID(group)
		if !ok && allDigits(group) {
			return nil, fmt.Errorf("gid %s is too large (at most %d): %w", group, sandbox.MaxUserID, stratus.ErrInvalid)
		}
		if !ok {
			i := slices.IndexFunc(groups, func(e idEntry) bool { return e.name == group })
			if i < 0 {
				return nil, fmt.Errorf("no group %q in the image's /etc/group (give the image that group, or a numeric one): %w", group, stratus.ErrInvalid)
			}
			gid = groups[i].id
		}
		u.GID = gid
	} else if entry >= 0 {
		for _, g := range groups {
			if slices.Contains(g.members, passwd[entry].name) && g.id != u.GID && !slices.Contains(u.Groups, g.id) {
				u.Groups = append(u.Groups, g.id)
			}
		}
	}
	if u.UID > sandbox.MaxUserID || u.GID > sandbox.MaxUserID || slices.ContainsFunc(u.Groups, func(g uint32) bool { return g > sandbox.MaxUserID }) {
		return nil, fmt.Errorf("ids above %d are outside a sandbox's range (build the image with a USER and groups of at most %d): %w", sandbox.MaxUserID, sandbox.MaxUserID, stratus.ErrInvalid)
	}
	if u.UID == 0 && u.GID == 0 && len(u.Groups) == 0 {
		return nil, nil
	}
	return u, nil
}

func allDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// idEntry is a line of /etc/passwd (name, uid, gid) or /etc/group (name,
// gid, members).
type idEntry struct {
	name    string
	id, gid uint32
	members []string
}

// readIDFile reads the passwd or group file name (slash-separated, from
// the image's root r); a missing one, or one that is not a regular file,
// is empty. Symbolic links are followed within the image only: os.Root
// refuses a link that leads out of it, absolute links included (a chroot
// would resolve /x in the image; an image's own files rarely need it),
// and that refusal is the image's fault: stratus.ErrInvalid.
func readIDFile(r *os.Root, name string) ([]idEntry, error) {
	fi, err := r.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("image file /%s: %v: %w", name, err, stratus.ErrInvalid)
	case !fi.Mode().IsRegular():
		// Not opened: a FIFO would block.
		return nil, nil
	}
	f, err := r.Open(name)
	if err != nil {
		return nil, fmt.Errorf("image file /%s: %v: %w", name, err, stratus.ErrInvalid)
	}
	defer f.Close()
	return parseIDFile(f)
}

// parseIDFile parses the lines of a passwd or group file; lines it cannot
// read (comments, too few fields, an id that is not a number) are
// skipped, as libc skips them.
func parseIDFile(r io.Reader) ([]idEntry, error) {
	var out []idEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] == "" || strings.HasPrefix(fields[0], "#") {
			continue
		}
		id, ok := parseID(fields[2])
		if !ok {
			continue
		}
		e := idEntry{name: fields[0], id: id}
		if len(fields) >= 4 {
			if gid, ok := parseID(fields[3]); ok {
				e.gid = gid // passwd: the user's group
			}
			if fields[3] != "" {
				e.members = strings.Split(fields[3], ",") // group: its members
			}
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
