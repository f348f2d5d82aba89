// Package agentimage builds the Stratus image: the static stratus binary
// at /stratus on an empty base, with the users and folders a pod of the
// kube sandbox driver needs (Lambda's sbx_user1051 and nobody in
// /etc/passwd and /etc/group, /var/task and /var/runtime to mount the
// code and the runtime clients on, /tmp). The server's Deployment and the
// function pods run the same image: `stratus server` in the one,
// `stratus agent` in the others.
//
// Above that layer, one layer per runtime (Build's rts: python3, nodejs)
// holds what the runtime's minimal root holds on the runc driver, from the
// same recipe (runtimes.Root): the host's interpreter under /var/lang, its
// standard library, the shared libraries they load, the base tools and
// the CA certificates, with /usr/bin/python3 and /usr/bin/node on the
// image's PATH. A zip function on the kube driver runs the command of a
// driver without roots ("python3 -u /var/runtime/python/bootstrap.py"),
// which the agent finds on the function's PATH in these layers; its code
// and the runtime clients are the server's folders, which the agent
// fetches into /var/task and /var/runtime, so the image has neither.
//
// The build is reproducible: every file has the same time (Epoch), owner
// root and its host mode (the base layer's are fixed), entries are in a
// fixed order, and the config's created time is Epoch, so the same binary
// and the same host interpreters give the same digest. The compiled
// modules of a standard library (timestamp-checked .pyc files) record their
// source's time, which becomes Epoch in the layer: so that they stay
// valid, and the interpreter does not compile its library again in every
// pod, a .pyc that matched its source records Epoch too (see pycAtEpoch).
package agentimage

import (
	"debug/elf"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/runtimes"
)

// Epoch is the time of every file and of the image: 1980-01-01, the
// earliest a zip can hold (as reproducible builds use).
var Epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Binary is the stratus binary's path in the image.
const Binary = "/stratus"

// Runtimes are the runtimes whose layers `make image` adds (Build's rts).
var Runtimes = []string{stratus.RuntimePython3, stratus.RuntimeNodejs}

// Build returns the image of the stratus binary at path, which must be a
// static executable (built with CGO_ENABLED=0), with a layer for each
// runtime of rts (none: the image has no dynamic loader or libraries).
// version labels the image. A runtime whose interpreter the host lacks is
// stratus.ErrUnavailable; an unknown or repeated one stratus.ErrInvalid.
func Build(path, version string, rts ...string) (ggcr.Image, error) {
	if err := checkStatic(path); err != nil {
		return nil, err
	}
	for i, r := range rts {
		if !runtimes.StartsAhead(r) {
			// A provided runtime's root is only the base tools.
			return nil, fmt.Errorf("image: runtime %q: not one Stratus ships a client of (%s): %w",
				r, strings.Join(Runtimes, ", "), stratus.ErrInvalid)
		}
		if slices.Contains(rts[:i], r) {
			return nil, fmt.Errorf("image: runtime %q named twice: %w", r, stratus.ErrInvalid)
		}
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	u := rootfs.Sandbox
	files := []file{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, body: fmt.Sprintf("root:x:0:\n%s:x:%d:\nnogroup:x:65534:\n", u.Name, u.GID)},
		{name: "etc/passwd", mode: 0o644, body: fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d::/tmp:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n", u.Name, u.UID, u.GID)},
		{name: "stratus", mode: 0o755, body: string(bin)},
		{name: "tmp/", mode: 0o1777},
		{name: "var/", mode: 0o755},
		{name: "var/runtime/", mode: 0o755},
		{name: "var/task/", mode: 0o755},
	}
	lw := newLayerWriter()
	have := map[string]bool{} // the paths earlier layers hold
	for _, f := range files {
		name := strings.TrimSuffix(f.name, "/")
		have[name] = true
		if name != f.name {
			err = lw.dir(name, f.mode)
		} else {
			err = lw.file(name, f.mode, int64(len(f.body)), strings.NewReader(f.body))
		}
		if err != nil {
			return nil, err
		}
	}
	layer, err := lw.layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: ggcr.History{
		Created: ggcr.Time{Time: Epoch}, CreatedBy: "stratus agentimage", Comment: "the stratus binary " + version,
	}})
	if err != nil {
		return nil, err
	}
	for _, r := range rts {
		layer, err := runtimeLayer(r, have)
		if err != nil {
			return nil, err
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: ggcr.History{
			Created: ggcr.Time{Time: Epoch}, CreatedBy: "stratus agentimage", Comment: "the " + r + " runtime",
		}})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = ggcr.Time{Time: Epoch}
	cf.Config = ggcr.Config{
		Entrypoint: []string{Binary},
		Cmd:        []string{"server"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		User:       "65534:65534",
		WorkingDir: "/",
		Labels: map[string]string{
			"org.opencontainers.image.title":   "stratus",
			"org.opencontainers.image.version": version,
		},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}
	return mutate.ConfigFile(img, cf)
}

// file is an entry of the image's layer: a folder when name ends in "/".
type file struct {
	name string
	mode int64
	body string
}

// checkStatic refuses a binary that needs a dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("image of %s: not an executable: %v: %w", path, err, stratus.ErrInvalid)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("image of %s: a dynamically linked executable (build it with CGO_ENABLED=0): %w", path, stratus.ErrInvalid)
		}
	}
	return nil
}
