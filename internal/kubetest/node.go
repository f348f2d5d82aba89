package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// The real node: what it is called and the host names it takes. One real
// node runs on a machine at a time (nodeLock); the names are fixed so that
// a run killed before its cleanup leaves things the next run recognizes.
const (
	// RealNodeName is the name of the node StartWithNode runs.
	RealNodeName = "stratus-node"
	// PauseImage is the sandbox image of the node's containerd, built and
	// imported by StartWithNode.
	PauseImage = "stratus.local/kubetest-pause:1"

	nodeBridge  = "stratuskube0"
	nodeNetwork = "stratus-kubetest"
	nodeSubnet  = "10.245.0.0/24" // apart from KWOK's pod IPs (10.244.0.0/16) and the runc driver's (10.88.0.0/16)
	nodeLock    = "/run/lock/stratus-kubetest-node.lock"
	cniDir      = "/usr/lib/cni" // Debian's containernetworking-plugins
)

// Bounds of the node's waits.
const (
	nodeLockTimeout  = 15 * time.Minute // another test binary's node
	nodeDrainTimeout = time.Minute      // pods stopped by the kubelet
	ctrTimeout       = time.Minute
)

// nodeSysctls are the kernel settings the kubelet (protectKernelDefaults
// false) and the CNI bridge (isGateway) change; the node puts back the
// values it found.
var nodeSysctls = []string{
	"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
}

// nodeHostPaths are paths outside the node's dir that containerd 1.6 and
// the kubelet use whatever their configuration says (shim sockets and
// fifos, device plugins, libcni's cache, container log links). The node
// removes those it created, and the entries it added to those that were
// there.
var nodeHostPaths = []string{
	"/run/containerd", "/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods",
}

// nodeCgroup is the cgroup (cgroupfs driver) under which the kubelet puts
// the pods, in every hierarchy.
const nodeCgroup = "kubepods"

// NodePackages are the Debian packages a real node needs, besides the
// programs built from source.
var NodePackages = []string{"containerd", "runc", "containernetworking-plugins", "iptables", "iproute2", "nftables"}

// realNode is the node of a cluster started by StartWithNode: Debian's
// containerd and the kubelet as processes of the cluster, their files
// under dir, and what the host looked like before, to put it back.
type realNode struct {
	dir        string
	sock       string // containerd's
	ctr        string
	containerd *process
	kubelet    *process
	lock       *os.File
	base       hostState
	swept      bool
}

// hostState is what the node changes on the host, as found before it
// started.
type hostState struct {
	sysctls map[string]string
	// paths maps each of nodeHostPaths that existed to its entries.
	paths map[string][]string
	// chains are the CNI-* and KUBE-* chains, as "iptables nat CHAIN".
	chains map[string]bool
	// nftTables are the nft tables, as "ip nat".
	nftTables map[string]bool
}

// StartWithNode is Start with one real node more, RealNodeName: Debian's
// containerd 1.6 (runc, a CNI bridge of Debian's plugins on nodeSubnet, its
// state under the cluster's dir) and the kubelet v1.35.4 (built like the
// control plane), which registers the node and runs the pods put on it.
// Pod IPs are reachable from the test process through the bridge. There is
// no registry: ImportImage stores images in the node's containerd, and pods
// use them with imagePullPolicy Never; the sandbox image is PauseImage,
// made here. The kubelet has the admin's credentials.
//
// It needs root, and the programs of NodePackages; without them it skips
// t, or fails it under CI=true. One real node runs on a machine at a time:
// it waits for a lock file (nodeLock) another test binary holds. Stop, or
// t's Cleanup, stops the pods, the processes and the shims, and puts the
// host back as it was: sysctls, mounts, cgroups, iptables chains and nft
// tables, the bridge, and the host paths of nodeHostPaths the node created.
func StartWithNode(t testing.TB, nodes ...Node) *Cluster {
	t.Helper()
	ctr := nodePreflight(t)
	kubelet := buildKubelet(t)
	began := time.Now()
	c := Start(t, nodes...)
	c.startNode(t, ctr)
	c.startKubelet(t, kubelet)
	t.Logf("started a Kubernetes cluster with the real node %s in %s", RealNodeName, time.Since(began).Round(time.Millisecond))
	return c
}

// RealNode returns the name of the real node, or "" when the cluster has
// none.
func (c *Cluster) RealNode() string {
	if c.node == nil {
		return ""
	}
	return RealNodeName
}

// nodePreflight skips t (fails it under CI=true) when the machine cannot
// run a real node, and returns the path of ctr.
func nodePreflight(t testing.TB) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("a real node needs "+format, args...)
		}
		t.Skipf("a real node needs "+format+" (CI=true makes this a failure)", args...)
	}
	if os.Geteuid() != 0 {
		missing("root")
	}
	var ctr string
	for _, prog := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ip"} {
		p, err := exec.LookPath(prog)
		if err != nil {
			missing("%s (Debian packages: %s): %v", prog, strings.Join(NodePackages, " "), err)
		}
		if prog == "ctr" {
			ctr = p
		}
	}
	for _, plugin := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniDir, plugin)); err != nil {
			missing("the CNI plugin %s in %s (Debian package containernetworking-plugins): %v", plugin, cniDir, err)
		}
	}
	return ctr
}

// startNode locks the machine's node, records the host's state, removes
// what a killed run left, and starts containerd with the pause image.
func (c *Cluster) startNode(t testing.TB, ctr string) {
	t.Helper()
	n := &realNode{dir: filepath.Join(c.dir, "node"), ctr: ctr}
	n.sock = filepath.Join(n.dir, "containerd", "containerd.sock")
	n.lock = lockNode(t)
	c.node = n // from here, stop sweeps

	if err := n.clearLeftovers(); err != nil {
		t.Fatalf("start the real node: %v", err)
	}
	var err error
	if n.base, err = readHostState(); err != nil {
		t.Fatalf("start the real node: %v", err)
	}
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "runc", "kubelet", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o700); err != nil {
			t.Fatalf("start the real node: %v", err)
		}
	}
	files := map[string]string{
		filepath.Join(n.dir, "containerd", "config.toml"):        containerdConfig(n.dir, n.sock),
		filepath.Join(n.dir, "cni/net.d", "10-stratus.conflist"): cniConfig(n.dir),
	}
	for f, data := range files {
		if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatalf("start the real node: %v", err)
		}
	}
	n.containerd = c.launch(t, "containerd", "containerd", "--config", filepath.Join(n.dir, "containerd", "config.toml"))
	c.waitAlive(t, n.containerd, "containerd answers", func(ctx context.Context) error {
		_, err := n.ctrRun(ctx, "version")
		return err
	})
	pause := GoProgram(t, pauseSource)
	if err := n.importImage(PauseImage, ProgramImage(t, pause)); err != nil {
		t.Fatalf("start the real node: %v", err)
	}
}

// startKubelet starts the kubelet of the real node and waits until the
// node is Ready.
func (c *Cluster) startKubelet(t testing.TB, kubelet string) {
	t.Helper()
	n := c.node
	ports := clustertest.FreePorts(t, 2)
	nodeIP, err := hostIP()
	if err != nil {
		t.Fatalf("start the real node: %v", err)
	}
	config := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(config, []byte(kubeletConfig(n.dir, n.sock, ports[0], ports[1])), 0o600); err != nil {
		t.Fatalf("start the real node: %v", err)
	}
	start := time.Now()
	n.kubelet = c.launch(t, "kubelet", kubelet,
		"--config="+config,
		"--kubeconfig="+c.kubeconfig,
		"--root-dir="+filepath.Join(n.dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.dir, "kubelet", "pki"),
		"--hostname-override="+RealNodeName,
		"--node-ip="+nodeIP,
		"--v=2",
	)
	c.waitAlive(t, n.kubelet, "node "+RealNodeName+" Ready (kubelet)", func(ctx context.Context) error {
		node, err := c.client.CoreV1().Nodes().Get(ctx, RealNodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !NodeReady(node) {
			return fmt.Errorf("node %s not Ready", RealNodeName)
		}
		return nil
	})
	t.Logf("node %s Ready %s after the kubelet started", RealNodeName, time.Since(start).Round(time.Millisecond))
}

// lockNode takes the machine's node lock, waiting for another test
// binary's node to go.
func lockNode(t testing.TB) *os.File {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(nodeLock), 0o755); err != nil {
		t.Fatalf("lock the real node: %v", err)
	}
	f, err := os.OpenFile(nodeLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lock the real node: %v", err)
	}
	eventually.Nil(t, nodeLockTimeout, "the real node's lock "+nodeLock+" (held by another test binary's node)", func() error {
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	})
	return f
}

// drain deletes every pod and waits until the kubelet has stopped their
// containers (and so run the CNI's DEL: veths, IPs, iptables rules),
// with kube-controller-manager and the scheduler gone first so that no
// pod comes back.
func (c *Cluster) drain(t testing.TB) {
	n := c.node
	if n.kubelet == nil || n.containerd == nil || c.client == nil {
		return
	}
	select {
	case <-n.kubelet.exited:
		return
	default:
	}
	c.mu.Lock()
	procs := slices.Clone(c.procs)
	c.mu.Unlock()
	for _, pr := range procs {
		if pr.name == "kube-controller-manager" || pr.name == "kube-scheduler" {
			if err := pr.kill(); err != nil {
				t.Errorf("stop %s: %v", pr.name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeDrainTimeout)
	defer cancel()
	zero := int64(0)
	nss, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Errorf("stop the real node's pods: %v", err)
		return
	}
	for _, ns := range nss.Items {
		err := c.client.CoreV1().Pods(ns.Name).DeleteCollection(ctx,
			metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{FieldSelector: "spec.nodeName=" + RealNodeName})
		if err != nil {
			t.Errorf("stop the real node's pods in %s: %v", ns.Name, err)
		}
	}
	err = poll(ctx, 250*time.Millisecond, func() error {
		out, err := n.ctrRun(ctx, "tasks", "ls", "-q")
		if err != nil {
			return err
		}
		if tasks := strings.Fields(out); len(tasks) > 0 {
			return fmt.Errorf("tasks still running: %v", tasks)
		}
		return nil
	})
	if err != nil {
		t.Errorf("stop the real node's pods (the kubelet did not stop them in %s): %v", nodeDrainTimeout, err)
	}
}

// sweep puts the host back as it was before the node started, once the
// node's processes are gone; it reports what it cannot undo.
func (n *realNode) sweep(t testing.TB) {
	if n.swept {
		return
	}
	n.swept = true
	defer n.lock.Close() // releases the lock
	for _, err := range n.undo() {
		t.Errorf("clean up the real node: %v", err)
	}
}

// undo kills what the node left running, unmounts, and removes what it
// added to the host; it returns every error.
func (n *realNode) undo() []error {
	var errs []error
	// Shims outlive containerd (they are not in its process group), and
	// the containers their shims.
	killProcesses(func(cmdline string) bool { return strings.Contains(cmdline, "-address "+n.sock) })
	if err := killCgroup(); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(n.dir); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroup(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLink(nodeBridge); err != nil {
		errs = append(errs, err)
	}
	if n.base.chains != nil {
		errs = append(errs, removeChains(n.base.chains)...)
		errs = append(errs, removeNFTTables(n.base.nftTables)...)
	}
	if n.base.paths != nil {
		errs = append(errs, restorePaths(n.base.paths)...)
	}
	for k, v := range n.base.sysctls {
		if got, err := readSysctl(k); err == nil && got != v {
			if err := writeSysctl(k, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// clearLeftovers removes what a run killed before its cleanup left and
// that would stop this one: the bridge (its address range), and the pods'
// cgroups if no process is in them. It fails when processes are: another
// kubelet runs on this machine.
func (n *realNode) clearLeftovers() error {
	busy, err := cgroupBusy()
	if err != nil {
		return err
	}
	if busy != "" {
		return fmt.Errorf("cgroup %s has processes: another kubelet runs on this machine (stop it, or run the real-node tests elsewhere)", busy)
	}
	if err := removeCgroup(); err != nil {
		return err
	}
	return deleteLink(nodeBridge)
}

// importImage stores img as ref in containerd's k8s.io namespace.
func (n *realNode) importImage(ref string, img v1.Image) error {
	file := filepath.Join(n.dir, "image-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".tar")
	if err := writeArchive(file, ref, img); err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	defer os.Remove(file)
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	if _, err := n.ctrRun(ctx, "images", "import", file); err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	out, err := n.ctrRun(ctx, "images", "ls", "-q")
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	if !slices.Contains(strings.Fields(out), ref) {
		return fmt.Errorf("import image %s: containerd lists %v, not it", ref, strings.Fields(out))
	}
	return nil
}

// ctrRun runs ctr against the node's containerd, namespace k8s.io (the
// CRI's), and returns its output.
func (n *realNode) ctrRun(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.ctr, append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return string(out), nil
}

// containerdConfig is the configuration of the node's containerd: its
// root, state and socket under dir, the CRI with the pause image, the
// CNI's configuration under dir and Debian's plugins, runc with cgroupfs
// and its state under dir. restrict_oom_score_adj keeps runc from
// lowering oom_score_adj, which root without CAP_SYS_RESOURCE (in a
// container, in some VMs) cannot do: the sandboxes would not start.
func containerdConfig(dir, sock string) string {
	q := strconv.Quote
	return `version = 2
root = ` + q(filepath.Join(dir, "containerd", "root")) + `
state = ` + q(filepath.Join(dir, "containerd", "state")) + `
[grpc]
  address = ` + q(sock) + `
[plugins."io.containerd.internal.v1.opt"]
  path = ` + q(filepath.Join(dir, "containerd", "opt")) + `
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ` + q(PauseImage) + `
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = ` + q(cniDir) + `
    conf_dir = ` + q(filepath.Join(dir, "cni", "net.d")) + `
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = ` + q(filepath.Join(dir, "runc")) + `
`
}

// cniConfig is the node's network: a bridge that is the pods' gateway
// (so the host reaches pod IPs) and masquerades their traffic out, with
// host-local addresses kept under dir.
func cniConfig(dir string) string {
	return `{"cniVersion": "0.4.0", "name": "` + nodeNetwork + `", "plugins": [
  {"type": "bridge", "bridge": "` + nodeBridge + `", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": ` + strconv.Quote(filepath.Join(dir, "cni", "ipam")) + `,
            "ranges": [[{"subnet": "` + nodeSubnet + `"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "loopback"}]}
`
}

// kubeletConfig is the kubelet's configuration: containerd over CRI,
// cgroupfs (no systemd), cgroup v1 allowed (v1.35 refuses it by
// default), its servers on loopback ports, no image garbage collection
// nor eviction for a shared disk, short sync periods for a test.
func kubeletConfig(dir, sock string, port, healthzPort int) string {
	endpoint := strconv.Quote("unix://" + sock)
	return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: ` + endpoint + `
imageServiceEndpoint: ` + endpoint + `
podLogsDir: ` + strconv.Quote(filepath.Join(dir, "pod-logs")) + `
address: 127.0.0.1
port: ` + strconv.Itoa(port) + `
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ` + strconv.Itoa(healthzPort) + `
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
resolvConf: /etc/resolv.conf
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
fileCheckFrequency: 5s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
`
}

// hostIP is the address of this machine the kubelet reports as the
// node's: the source address of its default route (a UDP "dial" sends
// nothing).
func hostIP() (string, error) {
	conn, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "", fmt.Errorf("find this machine's address for the node (a default IPv4 route): %w", err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// readHostState reads what the node changes on the host.
func readHostState() (hostState, error) {
	s := hostState{sysctls: map[string]string{}, paths: map[string][]string{}}
	for _, k := range nodeSysctls {
		v, err := readSysctl(k)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, err
		}
		s.sysctls[k] = v
	}
	for _, p := range nodeHostPaths {
		entries, err := os.ReadDir(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, err
		}
		names := []string{}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		s.paths[p] = names
	}
	var err error
	if s.chains, err = iptablesChains(); err != nil {
		return s, err
	}
	s.nftTables = nftTables()
	return s, nil
}

func sysctlPath(key string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0o644); err != nil {
		return fmt.Errorf("restore sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// restorePaths removes each of nodeHostPaths that was not in base, and
// the entries added to those that were.
func restorePaths(base map[string][]string) []error {
	var errs []error
	for _, p := range nodeHostPaths {
		before, existed := base[p]
		if !existed {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if !slices.Contains(before, e.Name()) {
				if err := os.RemoveAll(filepath.Join(p, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

// killProcesses SIGKILLs the processes whose command line (arguments
// joined by spaces) match says.
func killProcesses(match func(cmdline string) bool) {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !match(strings.ReplaceAll(string(b), "\x00", " ")) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cgroupMounts returns the mount points of the cgroup hierarchies (v1 and
// v2).
func cgroupMounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var mounts []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		i := slices.Index(fields, "-")
		if i < 0 || i+1 >= len(fields) || len(fields) < 5 {
			continue
		}
		if fs := fields[i+1]; fs == "cgroup" || fs == "cgroup2" {
			mounts = append(mounts, sandbox.UnescapeMountinfo(fields[4]))
		}
	}
	return mounts, nil
}

// cgroupDirs returns the pods' cgroup directories of every hierarchy,
// children first.
func cgroupDirs() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range mounts {
		root := filepath.Join(m, nodeCgroup)
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return dirs, nil
}

// cgroupBusy returns a pods' cgroup that has processes, or "".
func cgroupBusy() (string, error) {
	dirs, err := cgroupDirs()
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return d, nil
		}
	}
	return "", nil
}

// killCgroup SIGKILLs every process in the pods' cgroups.
func killCgroup() error {
	dirs, err := cgroupDirs()
	if err != nil {
		return err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	return nil
}

// removeCgroup removes the pods' cgroups, children first, waiting for
// killed processes to leave them.
func removeCgroup() error {
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	return poll(ctx, 50*time.Millisecond, func() error {
		dirs, err := cgroupDirs()
		if err != nil {
			return err
		}
		var errs []error
		for _, d := range dirs {
			if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
		return errors.Join(errs...)
	})
}

// unmountUnder unmounts (lazily) every mount point under dir, deepest
// first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if p := sandbox.UnescapeMountinfo(fields[4]); strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// deleteLink deletes the network interface name, if there is one.
func deleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("delete link %s: %w: %s", name, err, bytes.TrimSpace(out))
	}
	return nil
}

// iptablesTables are the tables the CNI plugins and the kubelet write.
var iptablesTables = []string{"nat", "filter", "mangle"}

// nodeChain reports whether chain is one of the CNI plugins' or the
// kubelet's.
func nodeChain(chain string) bool {
	return strings.HasPrefix(chain, "CNI-") || strings.HasPrefix(chain, "KUBE-")
}

// iptablesChains returns the CNI-* and KUBE-* chains of IPv4 and IPv6, as
// "iptables nat CHAIN".
func iptablesChains() (map[string]bool, error) {
	chains := map[string]bool{}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range iptablesTables {
			rules, err := iptablesRules(cmd, table)
			if err != nil {
				return nil, err
			}
			for _, r := range rules {
				if f := strings.Fields(r); len(f) == 2 && f[0] == "-N" && nodeChain(f[1]) {
					chains[cmd+" "+table+" "+f[1]] = true
				}
			}
		}
	}
	return chains, nil
}

// iptablesRules lists table's chains and rules (iptables -S).
func iptablesRules(cmd, table string) ([]string, error) {
	out, err := exec.Command(cmd, "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w", cmd, table, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n"), nil
}

// removeChains removes the CNI-* and KUBE-* chains not in base, with the
// rules of other chains that jump to them or name the node's network.
func removeChains(base map[string]bool) []error {
	var errs []error
	for _, cmd := range []string{"iptables", "ip6tables"} {
		for _, table := range iptablesTables {
			rules, err := iptablesRules(cmd, table)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			ours := map[string]bool{}
			for _, r := range rules {
				if f := strings.Fields(r); len(f) == 2 && f[0] == "-N" && nodeChain(f[1]) && !base[cmd+" "+table+" "+f[1]] {
					ours[f[1]] = true
				}
			}
			var script strings.Builder
			for _, r := range rules {
				f := strings.Fields(r)
				if len(f) < 2 || f[0] != "-A" || ours[f[1]] {
					continue
				}
				jumps := false
				for i := 0; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && ours[f[i+1]] {
						jumps = true
					}
				}
				if jumps || strings.Contains(r, `\"`+nodeNetwork+`\"`) {
					script.WriteString("-D" + strings.TrimPrefix(r, "-A") + "\n")
				}
			}
			if script.Len() == 0 && len(ours) == 0 {
				continue
			}
			for c := range ours {
				script.WriteString("-F " + c + "\n")
			}
			for c := range ours {
				script.WriteString("-X " + c + "\n")
			}
			cmdRestore := exec.Command(cmd+"-restore", "-w", "--noflush")
			cmdRestore.Stdin = strings.NewReader("*" + table + "\n" + script.String() + "COMMIT\n")
			if out, err := cmdRestore.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("remove the node's %s chains of table %s: %w: %s\n%s", cmd, table, err, bytes.TrimSpace(out), script.String()))
			}
		}
	}
	return errs
}

// nftTables returns nft's tables ("ip nat"), none without the nft
// command.
func nftTables() map[string]bool {
	tables := map[string]bool{}
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return tables
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "table" {
			tables[f[1]+" "+f[2]] = true
		}
	}
	return tables
}

// removeNFTTables deletes the iptables tables that iptables-nft made
// since base and that hold no rule nor chain of their own now.
func removeNFTTables(base map[string]bool) []error {
	var errs []error
	for t := range nftTables() {
		f := strings.Fields(t)
		if base[t] || (f[0] != "ip" && f[0] != "ip6") || !slices.Contains(iptablesTables, f[1]) {
			continue
		}
		cmd := map[string]string{"ip": "iptables", "ip6": "ip6tables"}[f[0]]
		rules, err := iptablesRules(cmd, f[1])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		empty := true
		for _, r := range rules {
			if r != "" && !strings.HasPrefix(r, "-P ") {
				empty = false
			}
		}
		if !empty {
			continue
		}
		if out, err := exec.Command("nft", "delete", "table", f[0], f[1]).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete nft table %s: %w: %s", t, err, bytes.TrimSpace(out)))
		}
	}
	return errs
}

// poll calls check every interval until it returns nil or ctx ends, and
// returns its last error then: a wait in a cleanup, which must go on.
func poll(ctx context.Context, interval time.Duration, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(interval):
		}
	}
}

// pauseSource is the node's sandbox program: it holds the pod's
// namespaces, reaps the orphans of a shared PID namespace, and exits on
// SIGINT or SIGTERM.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
`
