package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/client"
)

const benchToken = "bench-token-0123456789"

// stratusServer is a running `stratus server`.
type stratusServer struct {
	p    *proc
	addr string // host:port
	data string
	c    *client.Client
	// cgPrefix is the cgroup path prefix of its runc containers and
	// bridge the name of its sandboxes' bridge, as the runc driver
	// derives them from its state dir (internal/sandbox/runc).
	cgPrefix string
	bridge   string
}

// startStratus starts bin as a server on a free loopback port with data
// dir data and the extra flags args.
func startStratus(ctx context.Context, bin, data, logPath string, args ...string) (*stratusServer, error) {
	data, err := filepath.Abs(data)
	if err != nil {
		return nil, err
	}
	argv := append([]string{bin, "server", "--listen", "127.0.0.1:0", "--data", data, "--token", benchToken}, args...)
	env := append(os.Environ(), "STRATUS_TOKEN=")
	p, out, err := startProc(argv, env, logPath, true)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rest, err := firstLine(sctx, p, out, "listening on http://")
	if err != nil {
		p.stop(time.Second)
		return nil, fmt.Errorf("start stratus server (log %s): %w", logPath, err)
	}
	addr := strings.Fields(rest)[0]
	sum := sha256.Sum256([]byte(filepath.Join(data, "run", "runc")))
	return &stratusServer{
		p: p, addr: addr, data: data, c: client.New("http://"+addr, benchToken),
		cgPrefix: "/stratus/" + hex.EncodeToString(sum[:4]) + "-",
		bridge:   "strat" + hex.EncodeToString(sum[:3]),
	}, nil
}

// stop ends the server with SIGTERM (it stops its replicas and instances)
// and waits, then checks that it left nothing behind.
func (s *stratusServer) stop() (time.Duration, leftovers) {
	start := time.Now()
	clean := s.p.stop(60 * time.Second)
	d := time.Since(start)
	l := s.leftovers(true)
	if !clean {
		l.Problems = append(l.Problems, "the server did not end within 60s of SIGTERM and was killed")
	}
	return d, l
}

// leftovers is what remains of a server's sandboxes.
type leftovers struct {
	Processes  []string // "PID comm" of processes in its containers' cgroups or naming its data dir
	Cgroups    int      // container cgroups left
	Containers int      // runc state dirs left
	Bridge     bool     // the bridge is still there (only checked after the server ended)
	Problems   []string
}

func (l leftovers) none() bool {
	return len(l.Processes) == 0 && l.Cgroups == 0 && l.Containers == 0 && !l.Bridge && len(l.Problems) == 0
}

func (l leftovers) String() string {
	if l.none() {
		return "nothing left"
	}
	var parts []string
	if len(l.Processes) > 0 {
		parts = append(parts, fmt.Sprintf("%d processes (%s)", len(l.Processes), strings.Join(l.Processes[:min(5, len(l.Processes))], ", ")))
	}
	if l.Cgroups > 0 {
		parts = append(parts, fmt.Sprintf("%d container cgroups", l.Cgroups))
	}
	if l.Containers > 0 {
		parts = append(parts, fmt.Sprintf("%d runc containers", l.Containers))
	}
	if l.Bridge {
		parts = append(parts, "the bridge")
	}
	return strings.Join(append(parts, l.Problems...), "; ")
}

// leftovers scans the host for what belongs to s's sandboxes: processes
// in their cgroups (or whose command line names the data dir, like runc
// with its --root), their cgroups, runc's state and, once the server has
// ended (ended), its bridge.
func (s *stratusServer) leftovers(ended bool) leftovers {
	var l leftovers
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || (!ended && pid == s.p.pid()) {
			continue
		}
		in := false
		for _, cg := range procCgroups(pid) {
			if strings.HasPrefix(cg, s.cgPrefix) {
				in = true
			}
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), s.data) {
			in = true
		}
		if in {
			l.Processes = append(l.Processes, fmt.Sprintf("%d %s", pid, comm(pid)))
		}
	}
	l.Cgroups = len(containerCgroups(s.cgPrefix))
	if st, err := os.ReadDir(filepath.Join(s.data, "run", "runc", "runc")); err == nil {
		l.Containers = len(st)
	}
	if ended {
		if _, err := os.Stat("/sys/class/net/" + s.bridge); err == nil {
			l.Bridge = true
		}
	}
	return l
}

// cgroupV1 reports whether the memory controller is on a cgroup v1
// hierarchy (as runc uses it on a hybrid host).
func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs")
	return err == nil
}

// containerCgroups lists the cgroup paths (relative to a hierarchy's
// root) of the containers whose cgroups start with prefix
// ("/stratus/xxxxxxxx-").
func containerCgroups(prefix string) []string {
	root := "/sys/fs/cgroup"
	if cgroupV1() {
		root = "/sys/fs/cgroup/memory"
	}
	dir, base := filepath.Split(prefix)
	ents, err := os.ReadDir(filepath.Join(root, dir))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), base) {
			out = append(out, dir+e.Name())
		}
	}
	return out
}

// cgroupCPU is the CPU time the processes of cgroup cg have used.
func cgroupCPU(cg string) time.Duration {
	if cgroupV1() {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuacct", cg, "cpuacct.usage"))
		if err != nil {
			return 0
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(ns)
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", cg, "cpu.stat"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
			us, _ := strconv.ParseInt(v, 10, 64)
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

// cgroupMemory is a container cgroup's memory: Usage is what the kernel
// charges it (v1 memory.usage_in_bytes, v2 memory.current: anonymous
// memory, page cache and, where accounted, kernel memory); RSS its
// anonymous memory, Cache its page cache, Kernel its kernel memory.
type cgroupMemory struct {
	Usage, RSS, Cache, Kernel int64
}

func readCgroupMemory(cg string) cgroupMemory {
	var m cgroupMemory
	num := func(p string) int64 {
		b, _ := os.ReadFile(p)
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	stat := func(p string) map[string]int64 {
		b, _ := os.ReadFile(p)
		out := map[string]int64{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, " "); ok {
				out[k], _ = strconv.ParseInt(v, 10, 64)
			}
		}
		return out
	}
	if cgroupV1() {
		dir := filepath.Join("/sys/fs/cgroup/memory", cg)
		m.Usage = num(filepath.Join(dir, "memory.usage_in_bytes"))
		m.Kernel = num(filepath.Join(dir, "memory.kmem.usage_in_bytes"))
		st := stat(filepath.Join(dir, "memory.stat"))
		m.RSS, m.Cache = st["total_rss"], st["total_cache"]
		return m
	}
	dir := filepath.Join("/sys/fs/cgroup", cg)
	m.Usage = num(filepath.Join(dir, "memory.current"))
	st := stat(filepath.Join(dir, "memory.stat"))
	m.RSS, m.Cache, m.Kernel = st["anon"], st["file"], st["kernel"]
	return m
}

// importImage imports the service image tarball.
func (s *stratusServer) importImage(ctx context.Context, tarPath string) error {
	if _, err := s.c.ImportImage(ctx, tarPath, imageRef, nil); err != nil {
		return fmt.Errorf("import image: %w", err)
	}
	return nil
}

// deployService deploys service name from the bench image.
func (s *stratusServer) deployService(ctx context.Context, name string, cfg stratus.ServiceConfig) (*v1.Service, error) {
	cfg.Image = imageRef
	svc, err := s.c.DeployService(ctx, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy service %s: %w", name, err)
	}
	return svc, nil
}

// readyAddr is the address of a ready replica of service name.
func (s *stratusServer) readyAddr(ctx context.Context, name string) (string, error) {
	svc, err := s.c.Service(ctx, name)
	if err != nil {
		return "", err
	}
	for _, r := range svc.Detail {
		if r.State == "ready" && r.Address != "" {
			return r.Address, nil
		}
	}
	return "", fmt.Errorf("service %s: no ready replica with an address (%+v)", name, svc.Detail)
}

// cpu samples the server's CPU time and that of every container of its.
func (s *stratusServer) cpu() (server, containers time.Duration) {
	server = procCPU(s.p.pid())
	for _, cg := range containerCgroups(s.cgPrefix) {
		containers += cgroupCPU(cg)
	}
	return server, containers
}

// goBuild builds pkg (a path relative to the module root) into out,
// statically, with extra build flags.
func goBuild(ctx context.Context, root, pkg, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, pkg)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// moduleRoot is the folder of the module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(b))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run the bench from inside the stratus module (go run ./bench/containers)")
	}
	return filepath.Dir(mod), nil
}
