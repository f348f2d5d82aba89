package archive

import (
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
)

const (
	maxNameLen   = 4096 // PATH_MAX on Linux
	maxElemLen   = 255  // NAME_MAX on Linux
	maxTargetLen = 4096 // longest symlink target Extract reads
	// maxDepth bounds the folders in a path: os.Root resolves paths one
	// element at a time, so depth multiplies the cost of every entry.
	maxDepth = 128
)

// quote quotes s for an error message, shortened if it is long.
func quote(s string) string {
	const max = 120
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// invalidf returns an error wrapping stratus.ErrInvalid.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), stratus.ErrInvalid)
}

// cleanName checks an entry name and returns it cleaned: relative,
// slash-separated, without "." elements or a trailing slash. The root
// folder itself ("./") comes back as ".".
func cleanName(name string) (string, error) {
	switch {
	case name == "":
		return "", invalidf("path is empty")
	case len(name) > maxNameLen:
		return "", invalidf("path is longer than %d bytes", maxNameLen)
	case strings.IndexByte(name, 0) >= 0:
		return "", invalidf("path contains a NUL byte")
	case strings.IndexByte(name, '\\') >= 0:
		return "", invalidf("path contains a backslash")
	case isAbs(name):
		return "", invalidf("path is absolute")
	}
	elems := 0
	for elem := range strings.SplitSeq(name, "/") {
		if elem != "" && elem != "." {
			elems++
		}
		if elems > maxDepth+1 { // +1: the entry itself
			return "", invalidf("path is more than %d folders deep", maxDepth)
		}
		if elem == ".." {
			return "", invalidf("path escapes the code folder")
		}
		if len(elem) > maxElemLen {
			return "", invalidf("path has an element longer than %d bytes", maxElemLen)
		}
	}
	clean := path.Clean(name)
	if clean == "." {
		return clean, nil
	}
	// Localize refuses what the local file system cannot hold safely
	// (reserved names and volume prefixes on Windows).
	if _, err := filepath.Localize(clean); err != nil {
		return "", invalidf("path is not a plain relative path")
	}
	return clean, nil
}

// isAbs reports whether p is absolute on any platform: rooted at a slash
// or at a Windows drive ("C:/x", "C:"). "C:x" is a plain name on Unix.
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") {
		return true
	}
	drive := len(p) >= 2 && p[1] == ':' && 'a' <= p[0]|0x20 && p[0]|0x20 <= 'z'
	return drive && (len(p) == 2 || p[2] == '/')
}

// kind is what an entry creates.
type kind int

const (
	kindDir kind = iota + 1
	kindFile
	kindSymlink
)

func (k kind) String() string {
	switch k {
	case kindDir:
		return "folder"
	case kindFile:
		return "file"
	case kindSymlink:
		return "symlink"
	}
	return "unknown"
}

// node is one path of the tree an archive will create. Parents named only
// implicitly (by "a/b" with no "a/" entry) are folders.
type node struct {
	kind     kind
	children map[string]*node
	created  bool // the folder exists on disk (folders only)
}

func (n *node) child(name string) *node {
	if n == nil {
		return nil
	}
	return n.children[name]
}

// add records the entry at the cleaned path name in the tree rooted at
// root. Every parent must be a folder, and a path may be named only once,
// except that a folder may be named again.
func add(root *node, name string, k kind) error {
	elems := strings.Split(name, "/")
	cur := root
	for i, elem := range elems[:len(elems)-1] {
		next := cur.children[elem]
		if next == nil {
			next = &node{kind: kindDir}
			cur.set(elem, next)
		} else if next.kind != kindDir {
			return invalidf("parent %s is a %s", quote(strings.Join(elems[:i+1], "/")), next.kind)
		}
		cur = next
	}
	last := elems[len(elems)-1]
	if prev := cur.children[last]; prev != nil {
		if prev.kind == kindDir && k == kindDir {
			return nil
		}
		return invalidf("path is already used by another entry (a %s)", prev.kind)
	}
	cur.set(last, &node{kind: k})
	return nil
}

func (n *node) set(name string, child *node) {
	if n.children == nil {
		n.children = make(map[string]*node)
	}
	n.children[name] = child
}

// checkTarget checks the target of the symlink at the cleaned path name.
// The target must be relative and, resolved from the link's folder, stay
// inside the code folder. With root set (the tree of the whole archive),
// the target must also not pass through another symlink of the archive, so
// resolving it lexically here gives the same answer as the kernel will.
// A symlink as the last element is fine: it is checked on its own.
func checkTarget(name, target string, root *node) error {
	switch {
	case target == "":
		return invalidf("symlink target is empty")
	case strings.IndexByte(target, 0) >= 0:
		return invalidf("symlink target contains a NUL byte")
	case strings.IndexByte(target, '\\') >= 0:
		return invalidf("symlink target %s contains a backslash", quote(target))
	case isAbs(target):
		return invalidf("symlink target %s is absolute", quote(target))
	}
	// stack holds the nodes from the code folder down to the current
	// element; nil stands for a path the archive does not create.
	var stack []*node
	top := func() *node {
		if len(stack) == 0 {
			return root
		}
		return stack[len(stack)-1]
	}
	if dir := path.Dir(name); dir != "." {
		for elem := range strings.SplitSeq(dir, "/") {
			stack = append(stack, top().child(elem))
		}
	}
	for elem := range strings.SplitSeq(target, "/") {
		if elem == "" || elem == "." {
			continue
		}
		if n := top(); n != nil && n.kind == kindSymlink {
			return invalidf("symlink target %s passes through another symlink", quote(target))
		}
		if elem == ".." {
			if len(stack) == 0 {
				return invalidf("symlink target %s escapes the code folder", quote(target))
			}
			stack = stack[:len(stack)-1]
			continue
		}
		stack = append(stack, top().child(elem))
	}
	return nil
}
