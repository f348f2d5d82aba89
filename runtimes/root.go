package runtimes

import (
	"fmt"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
)

// LangDir is where a runtime's interpreter lives in its root, as on Lambda.
const LangDir = "/var/lang"

// baseTools are the programs every function root has, where the host has
// them: a shell, curl and the usual small tools (Lambda's provided.al2023
// has bash, curl and coreutils too), so that a bootstrap script runs.
var baseTools = []string{
	"sh", "bash", "env", "cat", "echo", "printf", "ls", "sleep", "mktemp", "rm", "mkdir",
	"cp", "mv", "ln", "touch", "chmod", "date", "id", "uname", "head", "tail", "cut", "tr", "wc",
	"sort", "uniq", "grep", "sed", "tee", "xargs", "basename", "dirname", "readlink", "true", "false", "curl",
}

func baseFiles() []rootfs.File {
	var fs []rootfs.File
	for _, t := range baseTools {
		p, err := exec.LookPath(t)
		if err != nil {
			continue
		}
		fs = append(fs, rootfs.File{Host: p, Path: path.Join("/usr/bin", t), Optional: true})
	}
	return fs
}

// Root returns the recipe of the minimal root that runs runtime r, and the
// argv that starts its client there with the clients installed at
// clientDir (a path in the sandbox): the host's interpreter placed under
// /var/lang, its standard library, the libraries both load, and the base
// tools. A provided runtime's argv is its bootstrap in taskDir. An
// interpreter missing on the host is stratus.ErrUnavailable.
func Root(r, taskDir, clientDir string) (rootfs.Recipe, []string, error) {
	base := baseFiles()
	if stratus.IsProvided(r) {
		return rootfs.Recipe{Name: "provided", Files: base}, []string{path.Join(taskDir, "bootstrap")}, nil
	}
	argv, err := Command(r, clientDir)
	if err != nil {
		return rootfs.Recipe{}, nil, err
	}
	switch r {
	case stratus.RuntimePython3:
		py, err := probePython(argv[0])
		if err != nil {
			return rootfs.Recipe{}, nil, fmt.Errorf("runtime %q: %w: %w", r, err, stratus.ErrUnavailable)
		}
		name := "python" + py.version
		lib := path.Join(LangDir, "lib", name)
		rec := rootfs.Recipe{
			Name:  "python3",
			Files: append(base, rootfs.File{Host: py.exe, Path: path.Join(LangDir, "bin", name)}),
			Trees: []rootfs.Tree{{Host: py.stdlib, Path: lib, Skip: []string{
				"site-packages", "dist-packages", "test", "tests", "idlelib", "tkinter", "turtledemo",
				"ensurepip", "lib2to3", "config-*", "_tkinter*", "_test*", "__phello__",
			}}},
			Links: map[string]string{
				path.Join(LangDir, "bin", "python3"): name,
				"/usr/bin/python3":                   path.Join(LangDir, "bin", name),
			},
		}
		argv[0] = path.Join(LangDir, "bin", name)
		return rec, argv, nil
	case stratus.RuntimeNodejs:
		node, err := exec.LookPath(argv[0])
		if err == nil {
			node, err = filepath.EvalSymlinks(node)
		}
		if err != nil {
			return rootfs.Recipe{}, nil, fmt.Errorf("runtime %q: %w: %w", r, err, stratus.ErrUnavailable)
		}
		rec := rootfs.Recipe{
			Name:  "nodejs",
			Files: append(base, rootfs.File{Host: node, Path: path.Join(LangDir, "bin", "node")}),
			Links: map[string]string{"/usr/bin/node": path.Join(LangDir, "bin", "node")},
		}
		argv[0] = path.Join(LangDir, "bin", "node")
		return rec, argv, nil
	}
	return rootfs.Recipe{}, nil, fmt.Errorf("runtime %q: no root: %w", r, stratus.ErrInvalid)
}

type python struct {
	exe, stdlib, version string
}

// probePython asks the host's interpreter where it is and where its
// standard library is (the real ones, not a version manager's shim).
func probePython(interp string) (python, error) {
	out, err := exec.Command(interp, "-c",
		"import sys, sysconfig; print(sys.executable); print(sysconfig.get_path('stdlib')); print('%d.%d' % sys.version_info[:2])").Output()
	if err != nil {
		return python{}, fmt.Errorf("ask %s where it lives: %w", interp, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return python{}, fmt.Errorf("ask %s where it lives: unexpected answer %q", interp, out)
	}
	exe, err := filepath.EvalSymlinks(f[0])
	if err != nil {
		return python{}, err
	}
	return python{exe: exe, stdlib: f[1], version: f[2]}, nil
}
