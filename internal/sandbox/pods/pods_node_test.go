//go:build kube && node

package pods_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/agent"
	"github.com/stratus-run/stratus/internal/agentimage"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kubetest"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/pods"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// suiteRef is the tag the suite's image is imported under.
const suiteRef = "stratus.local/stratus-suite:test"

// busybox is Debian's busybox-static, the shell and the commands of the
// suite's scripts in the pods.
const busybox = "/bin/busybox"

// busyboxApplets are the commands the suite's scripts run, as links to
// busybox in /bin (its ash has echo, printf, kill, pwd, trap and wait
// built in; the links make them programs too).
var busyboxApplets = []string{"sh", "sleep", "cat", "echo", "printf", "kill", "pwd", "true"}

// TestSuiteOnNode runs the shared driver suite (sandboxtest) against the
// kube driver on a cluster with a real node: every sandbox is a pod
// running stratus agent from the Stratus image, with busybox as its
// shell. The node runs on this machine, so the suite sees the pods'
// processes in /proc as it does for the other drivers. Spec.Dir, a
// folder of this host, is mounted at its own path (the agent fetches it
// as a tar), which brings the network cases' helper, a copy of the test
// binary, into the pod; the image has the loader and libraries it needs.
func TestSuiteOnNode(t *testing.T) {
	began := time.Now()
	c := kubetest.StartWithNode(t)
	ns := c.Namespace(t)
	c.ImportImage(t, suiteRef, suiteImage(t))
	client, err := kube.Connect(c.Kubeconfig(), ns)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := pods.HostAddress()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster, node and image ready in %s", time.Since(began).Round(time.Millisecond))

	// Each subtest's drivers (the first and the restarted one) share a
	// node label, derived from their state dir, so that List sees only
	// the subtest's pods.
	var mu sync.Mutex
	nodes := make(map[sandbox.Driver]string)
	newDriver := func(t *testing.T, stateDir string) sandbox.Driver {
		h := fnv.New32a()
		io.WriteString(h, stateDir)
		node := fmt.Sprintf("suite-%08x", h.Sum32())
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		d, err := pods.New(ctx, pods.Config{
			Client: client, Node: node, Image: suiteRef, PullPolicy: corev1.PullNever, Address: addr,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		mu.Lock()
		nodes[d] = node
		mu.Unlock()
		return d
	}
	leftovers := func(d sandbox.Driver, id string) []string {
		mu.Lock()
		node := nodes[d]
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sel := kube.LabelNode + "=" + kube.Name(node) + "," + kube.LabelSandbox + "=" + kube.Name(id)
		l, err := c.Client().CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return []string{fmt.Sprintf("list pods: %v", err)}
		}
		var left []string
		for _, p := range l.Items {
			left = append(left, fmt.Sprintf("pod %s (phase %s)", p.Name, p.Status.Phase))
		}
		return left
	}
	sandboxtest.Run(t, newDriver,
		sandboxtest.AdjustSpec(func(s *sandbox.Spec) {
			s.Mounts = append(s.Mounts, sandbox.Mount{Source: s.Dir, Target: s.Dir})
		}),
		// A pod's volume at a mount's target is a folder (an emptyDir the
		// agent extracts the source into): a file cannot be bound.
		sandboxtest.FolderMounts(),
		// Pods of a cluster reach each other's IPs unless a NetworkPolicy
		// that the network plugin enforces forbids it; the driver makes
		// none, and the node's CNI bridge enforces none.
		sandboxtest.Skip("NetIsolation", "pods reach each other's IPs: the kube driver makes no NetworkPolicy, and the test node's CNI bridge would not enforce one"),
		// Every Start makes a pod and every Stop waits for the kubelet to
		// remove one: seconds each.
		sandboxtest.Timeout(90*time.Second),
		sandboxtest.Leftovers(leftovers),
	)
	t.Run("CodeReadOnly", func(t *testing.T) { testCodeReadOnly(t, newDriver(t, t.TempDir())) })
	t.Run("StagingFails", func(t *testing.T) {
		d := newDriver(t, t.TempDir())
		testStagingFails(t, d, func(id string) []string { return leftovers(d, id) })
	})
	t.Logf("suite on the node: %s in all", time.Since(began).Round(time.Millisecond))
}

// codeScript tries every way the program has to change its code: write,
// create, remove, rename and chmod at the mount's target, and write
// through every other path to the volume it finds (/.stratus/mounts/0,
// PID 1's root, every mount point of /proc/self/mountinfo holding the
// code), first making it writable. It prints what succeeded, then the
// code.
const codeScript = `w() {
	if busybox chmod u+w "$1" 2>/dev/null; then echo "chmod $1"; fi
	if (echo changed > "$1") 2>/dev/null; then echo "wrote $1"; fi
}
for d in /var/task /.stratus/mounts/0 /proc/self/root/var/task /proc/1/root/var/task /proc/1/root/.stratus/mounts/0; do
	w $d/code
	w $d/new
done
while read -r _ _ _ _ mp _; do
	if [ -f "$mp/code" ]; then w "$mp/code"; w "$mp/new"; fi
done < /proc/self/mountinfo
if busybox chmod 777 /var/task 2>/dev/null; then echo "chmod /var/task"; fi
if busybox mv /var/task/code /var/task/moved 2>/dev/null; then echo "moved code"; fi
if busybox rm -f /var/task/code 2>/dev/null && [ ! -e /var/task/code ]; then echo "removed code"; fi
if busybox mkdir -p /.stratus/mounts/0 2>/dev/null; then echo "made /.stratus/mounts/0"; fi
if [ -e /.stratus/mounts ]; then echo "/.stratus/mounts exists"; fi
cat /var/task/code`

// testCodeReadOnly: the program runs as the agent's user in the agent's
// container, yet it cannot change its mounted code by any path it finds:
// the mounts were unpacked by an init container, and the container has
// them read-only at their targets only.
func testCodeReadOnly(t *testing.T, d sandbox.Driver) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "code"), []byte("the function's code\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr sandboxtest.Buffer
	spec := sandbox.Spec{
		ID: "code-read-only", Argv: []string{"/bin/sh", "-c", codeScript}, Env: []string{"PATH=/bin"},
		Dir: "/var/task", MemoryMB: 128, Mounts: []sandbox.Mount{{Source: src, Target: "/var/task"}},
		Stdout: &stdout, Stderr: &stderr,
	}
	if err := d.Start(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.WithoutCancel(ctx), spec.ID, 0)
	e, err := d.Wait(ctx, spec.ID)
	if err != nil || e.Code != 0 {
		t.Fatalf("Wait = %+v, %v; stdout %q, stderr %q", e, err, stdout.String(), stderr.String())
	}
	if got := stdout.String(); got != "the function's code\n" {
		t.Errorf("the program changed its code or found a writable view of it:\n%s(stderr %q)", got, stderr.String())
	}
}

// testStagingFails: a mount the stager refuses (larger than
// agent.MaxMountBytes: a sparse file) fails Start with the stager's
// reason, and leaves no pod.
func testStagingFails(t *testing.T, d sandbox.Driver, leftovers func(id string) []string) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(agent.MaxMountBytes + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	spec := sandbox.Spec{
		ID: "staging-fails", Argv: []string{"/bin/true"}, MemoryMB: 128,
		Mounts: []sandbox.Mount{{Source: src, Target: "/var/task"}},
	}
	err = d.Start(ctx, spec)
	if !errors.Is(err, stratus.ErrUnavailable) || !strings.Contains(err.Error(), "init container stage-mounts ended") || !strings.Contains(err.Error(), "exceed") {
		d.Stop(context.WithoutCancel(ctx), spec.ID, 0)
		t.Fatalf("Start with a mount over the bound = %v; want ErrUnavailable with the stager's reason", err)
	}
	t.Logf("Start with a mount over the bound: %v", err)
	if left := leftovers(spec.ID); len(left) > 0 {
		t.Errorf("left after the failed Start: %v", left)
	}
}

// suiteImage is the Stratus image of a static stratus build, with
// busybox as /bin/sh and its applets, and the dynamic loader and the
// libraries of the test binary (which the network cases run as their
// helper) at their host paths.
func suiteImage(t *testing.T) v1.Image {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the suite's pods need %s (Debian package busybox-static): %v", busybox, err)
		}
		t.Skipf("the suite's pods need %s (Debian package busybox-static): %v (CI=true makes this a failure)", busybox, err)
	}
	static := filepath.Join(t.TempDir(), "stratus")
	build := exec.Command("go", "build", "-trimpath", "-o", static, "github.com/stratus-run/stratus/cmd/stratus")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build a static stratus: %v\n%s", err, out)
	}
	img, err := agentimage.Build(static, "suite")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"/bin/busybox": busybox} // path in the image → host file
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range sandboxtest.SharedLibs(t, exe) {
		files[lib] = lib
	}
	links := map[string]string{}
	for _, a := range busyboxApplets {
		links["/bin/"+a] = "busybox"
	}
	layer := tarLayer(t, files, links)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		t.Fatal(err)
	}
	return img
}

// tarLayer is a layer of files (path in the image → host file, symlinks
// followed, mode kept) and symlinks (path → target), with their folders.
func tarLayer(t *testing.T, files, links map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var names []string
	for p := range files {
		names = append(names, p)
	}
	for p := range links {
		names = append(names, p)
	}
	slices.Sort(names)
	dirs := map[string]bool{"/": true}
	var mkdirs func(d string)
	mkdirs = func(d string) {
		if dirs[d] {
			return
		}
		mkdirs(path.Dir(d))
		dirs[d] = true
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, ModTime: agentimage.Epoch}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range names {
		mkdirs(path.Dir(p))
		if target, ok := links[p]; ok {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: p[1:], Linkname: target, Mode: 0o777, ModTime: agentimage.Epoch}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(files[p])
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(files[p])
		if err != nil {
			t.Fatal(err)
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p[1:], Mode: int64(fi.Mode().Perm()), Size: int64(len(data)), ModTime: agentimage.Epoch}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
