package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// stratusServer is a running `stratus server`.
type stratusServer struct {
	*benchkit.Server
	// cgPrefix is the cgroup path prefix of its runc containers and
	// bridge the name of its sandboxes' bridge, as the runc driver
	// derives them from its state dir (internal/sandbox/runc).
	cgPrefix string
	bridge   string
}

// startStratus starts bin as a server on a free loopback port with data
// dir data and the extra flags args.
func startStratus(ctx context.Context, bin, data, logPath string, args ...string) (*stratusServer, error) {
	s, err := benchkit.StartServer(ctx, bin, data, logPath, args)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(filepath.Join(s.Data, "run", "runc")))
	return &stratusServer{
		Server:   s,
		cgPrefix: "/stratus/" + hex.EncodeToString(sum[:4]) + "-",
		bridge:   "strat" + hex.EncodeToString(sum[:3]),
	}, nil
}

// stop ends the server with SIGTERM (it stops its replicas and instances)
// and waits, then checks that it left nothing behind.
func (s *stratusServer) stop() (time.Duration, leftovers) {
	start := time.Now()
	clean := s.Stop(60 * time.Second)
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
		if err != nil || pid == self || (!ended && pid == s.PID()) {
			continue
		}
		in := false
		for _, cg := range benchkit.Cgroups(pid) {
			if strings.HasPrefix(cg, s.cgPrefix) {
				in = true
			}
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), s.Data) {
			in = true
		}
		if in {
			l.Processes = append(l.Processes, fmt.Sprintf("%d %s", pid, benchkit.Comm(pid)))
		}
	}
	l.Cgroups = len(containerCgroups(s.cgPrefix))
	if st, err := os.ReadDir(filepath.Join(s.Data, "run", "runc", "runc")); err == nil {
		l.Containers = len(st)
	}
	if ended {
		if _, err := os.Stat("/sys/class/net/" + s.bridge); err == nil {
			l.Bridge = true
		}
	}
	return l
}

// containerCgroups lists the cgroup paths (relative to a hierarchy's
// root) of the containers whose cgroups start with prefix
// ("/stratus/xxxxxxxx-").
func containerCgroups(prefix string) []string {
	root := "/sys/fs/cgroup"
	if benchkit.CgroupV1() {
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
	if benchkit.CgroupV1() {
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
	if benchkit.CgroupV1() {
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
	if _, err := s.Client.ImportImage(ctx, tarPath, imageRef, nil); err != nil {
		return fmt.Errorf("import image: %w", err)
	}
	return nil
}

// deployService deploys service name from the bench image.
func (s *stratusServer) deployService(ctx context.Context, name string, cfg stratus.ServiceConfig) (*v1.Service, error) {
	cfg.Image = imageRef
	svc, err := s.Client.DeployService(ctx, name, cfg)
	if err != nil {
		return nil, fmt.Errorf("deploy service %s: %w", name, err)
	}
	return svc, nil
}

// readyAddr is the address of a ready replica of service name.
func (s *stratusServer) readyAddr(ctx context.Context, name string) (string, error) {
	svc, err := s.Client.Service(ctx, name)
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
	server = benchkit.ProcCPU(s.PID())
	for _, cg := range containerCgroups(s.cgPrefix) {
		containers += cgroupCPU(cg)
	}
	return server, containers
}
