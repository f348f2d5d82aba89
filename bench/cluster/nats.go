package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// natsModule is the module whose main package is nats-server.
const natsModule = "github.com/nats-io/nats-server/v2"

// natsBinary is nats-server built from the version of natsModule that
// go.mod requires, with this Go, kept where internal/clustertest keeps it
// (${XDG_CACHE_HOME:-~/.cache}/stratus-tools/nats-server-VERSION-GOVERSION/)
// and built there once, under the same file lock, if it is missing.
func natsBinary(ctx context.Context, root string) (string, error) {
	goOut := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		b, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	version, err := goOut("list", "-m", "-f", "{{.Version}}", natsModule)
	if err != nil {
		return "", err
	}
	goVersion, err := goOut("env", "GOVERSION")
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "stratus-tools", "nats-server-"+version+"-"+goVersion)
	bin := filepath.Join(dir, "nats-server")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		return bin, nil
	}
	benchkit.Logf("building nats-server %s into %s (once)", version, dir)
	tmp := bin + ".tmp"
	cmd := exec.CommandContext(ctx, "go", "build", "-o", tmp, natsModule)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server %s: %v\n%s", version, err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// natsCluster is nats-server processes on loopback ports, routed to one
// another as one cluster, with JetStream.
type natsCluster struct {
	nodes []*natsNode
}

type natsNode struct {
	name                      string
	client, route, monitoring string // host:port
	proc                      *benchkit.Proc
}

// startNATS starts n nodes of bin named n1..nN under dir (config, store
// and log of each) and waits until each says it is healthy (JetStream
// on, a meta leader, caught up with it), within a minute.
func startNATS(ctx context.Context, bin, dir string, n int) (*natsCluster, error) {
	c := &natsCluster{}
	for i := range n {
		nd := &natsNode{name: "n" + strconv.Itoa(i+1)}
		for _, p := range []*string{&nd.client, &nd.route, &nd.monitoring} {
			a, err := benchkit.FreeAddr()
			if err != nil {
				return nil, err
			}
			*p = a
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		conf := filepath.Join(dir, nd.name+".conf")
		if err := os.WriteFile(conf, []byte(natsConfig(nd, c.nodes, filepath.Join(dir, nd.name))), 0o600); err != nil {
			c.stop()
			return nil, err
		}
		p, err := benchkit.StartProc([]string{bin, "-c", conf}, nil, "", filepath.Join(dir, nd.name+".log"))
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("start NATS node %s: %w", nd.name, err)
		}
		nd.proc = p
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, nd := range c.nodes {
		for {
			err := benchkit.GetOK(wctx, hc, "http://"+nd.monitoring+"/healthz", nil)
			if err == nil {
				break
			}
			select {
			case <-wctx.Done():
				c.stop()
				return nil, fmt.Errorf("NATS node %s not healthy (log %s): %v", nd.name, filepath.Join(dir, nd.name+".log"), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return c, nil
}

// natsConfig is node nd's configuration file: its ports, a JetStream
// store under store, routes to the other nodes.
func natsConfig(nd *natsNode, all []*natsNode, store string) string {
	var routes []string
	for _, o := range all {
		if o != nd {
			routes = append(routes, strconv.Quote("nats-route://"+o.route))
		}
	}
	return fmt.Sprintf(`server_name: %q
listen: %q
http: %q
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: "stratus-bench"
  listen: %q
  routes: [%s]
}
`, nd.name, nd.client, nd.monitoring, store, nd.route, strings.Join(routes, ", "))
}

// URL is the client URLs of every node, as --nats-url takes them.
func (c *natsCluster) URL() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, "nats://"+nd.client)
	}
	return strings.Join(urls, ",")
}

// pids are the nodes' processes.
func (c *natsCluster) pids() []int {
	var out []int
	for _, nd := range c.nodes {
		if nd.proc != nil {
			out = append(out, nd.proc.PID())
		}
	}
	return out
}

// stop stops every node (SIGTERM, SIGKILL after 10 s) and waits for it.
func (c *natsCluster) stop() {
	for _, nd := range c.nodes {
		if nd.proc != nil {
			nd.proc.Stop(10 * time.Second)
			nd.proc = nil
		}
	}
}
