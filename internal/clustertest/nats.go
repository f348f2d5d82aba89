package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/stratus-run/stratus/internal/eventually"
)

// natsModule is the module whose main package is nats-server.
const natsModule = "github.com/nats-io/nats-server/v2"

// Bounds of the harness's waits.
const (
	natsBuildTimeout = 10 * time.Minute
	natsReadyTimeout = 90 * time.Second
	natsExitTimeout  = 10 * time.Second
)

// NATSCluster is a NATS cluster of nats-server processes on loopback
// ports, with JetStream, started by StartNATSCluster. Its methods are
// called from the test's goroutine.
type NATSCluster struct {
	bin   string
	dir   string
	nodes []*natsNode
}

// natsNode is one server of the cluster; its ports and store dir stay the
// same across restarts.
type natsNode struct {
	name                      string
	client, route, monitoring int
	conf, logFile             string
	cmd                       *exec.Cmd     // nil while not running
	exited                    chan struct{} // closed when cmd has been waited for
}

// StartNATSCluster builds nats-server from the module version in go.mod
// (cached, see the package comment), starts n nodes named n1..nN on free
// loopback ports, each in its own process group, with cluster routes to
// one another and JetStream (store dirs in a temp dir), and waits until
// every node reports itself healthy and a stream with n replicas can be
// made (a JetStream meta leader is elected and every node is a peer). The
// nodes are killed in t's Cleanup. A missing go command skips the test, or
// fails it under CI=true; a failed build fails it.
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("start NATS cluster: %d nodes: want at least 1", n)
	}
	c := &NATSCluster{bin: natsServerBinary(t), dir: t.TempDir()}
	ports := FreePorts(t, 3*n)
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{
			name:   "n" + strconv.Itoa(i+1),
			client: ports[3*i], route: ports[3*i+1], monitoring: ports[3*i+2],
		})
	}
	for _, nd := range c.nodes {
		nd.conf = filepath.Join(c.dir, nd.name+".conf")
		nd.logFile = filepath.Join(c.dir, nd.name+".log")
		if err := os.WriteFile(nd.conf, []byte(c.config(nd)), 0o600); err != nil {
			t.Fatalf("start NATS cluster: %v", err)
		}
	}
	t.Cleanup(func() { c.stop(t) })
	for i := range c.nodes {
		c.launch(t, i)
	}
	for i := range c.nodes {
		c.waitHealthy(t, i)
	}
	c.waitReplicas(t, n)
	return c
}

// URL returns the client URLs of every node, comma-separated, as
// --nats-url takes them: "nats://127.0.0.1:p1,nats://127.0.0.1:p2,...".
func (c *NATSCluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i := range c.nodes {
		urls[i] = c.NodeURL(i)
	}
	return strings.Join(urls, ",")
}

// NodeURL returns the client URL of node i (from 0: node n1 is 0).
func (c *NATSCluster) NodeURL(i int) string {
	return "nats://127.0.0.1:" + strconv.Itoa(c.nodes[i].client)
}

// Size returns the number of nodes.
func (c *NATSCluster) Size() int { return len(c.nodes) }

// Kill sends SIGKILL to node i (from 0: node n1 is 0) and waits until its
// process has exited. Its store dir and ports are kept for Start.
func (c *NATSCluster) Kill(t testing.TB, i int) {
	t.Helper()
	nd := c.node(t, i)
	if nd.cmd == nil {
		t.Fatalf("kill NATS node %s: not running", nd.name)
	}
	if err := killNATSNode(nd); err != nil {
		t.Fatalf("kill NATS node %s: %v", nd.name, err)
	}
}

// Start starts node i (from 0) again after Kill, with the same ports and
// store dir, and waits until it reports itself healthy: it is back in the
// cluster and has caught up with the JetStream meta leader.
func (c *NATSCluster) Start(t testing.TB, i int) {
	t.Helper()
	nd := c.node(t, i)
	if nd.cmd != nil {
		t.Fatalf("start NATS node %s: already running", nd.name)
	}
	c.launch(t, i)
	c.waitHealthy(t, i)
}

func (c *NATSCluster) node(t testing.TB, i int) *natsNode {
	t.Helper()
	if i < 0 || i >= len(c.nodes) {
		t.Fatalf("NATS node %d: the cluster has nodes 0 to %d", i, len(c.nodes)-1)
	}
	return c.nodes[i]
}

// config is nd's configuration file.
func (c *NATSCluster) config(nd *natsNode) string {
	var routes []string
	for _, o := range c.nodes {
		if o != nd {
			routes = append(routes, strconv.Quote("nats-route://127.0.0.1:"+strconv.Itoa(o.route)))
		}
	}
	return fmt.Sprintf(`server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 256MB
  max_file_store: 4GB
}
cluster {
  name: "stratus-test"
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, nd.name, nd.client, nd.monitoring, filepath.Join(c.dir, nd.name), nd.route, strings.Join(routes, ", "))
}

// launch starts node i's process, its output appended to its log file.
func (c *NATSCluster) launch(t testing.TB, i int) {
	t.Helper()
	nd := c.nodes[i]
	out, err := os.OpenFile(nd.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("start NATS node %s: %v", nd.name, err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(c.bin, "-c", nd.conf)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, killed with it; and killed if the test
	// binary dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start NATS node %s: %v", nd.name, err)
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(nd.exited)
}

// killNATSNode kills nd's process group and waits for the process.
func killNATSNode(nd *natsNode) error {
	if err := syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-nd.exited:
	case <-time.After(natsExitTimeout):
		return fmt.Errorf("still running %s after SIGKILL", natsExitTimeout)
	}
	nd.cmd = nil
	return nil
}

// stop kills every running node; when t failed it shows the end of each
// node's log.
func (c *NATSCluster) stop(t testing.TB) {
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			if err := killNATSNode(nd); err != nil {
				t.Errorf("stop NATS node %s: %v", nd.name, err)
			}
		}
		if t.Failed() {
			if b, err := os.ReadFile(nd.logFile); err == nil {
				t.Logf("log of NATS node %s (end):\n%s", nd.name, LastLines(b, 40))
			}
		}
	}
}

// waitHealthy waits until node i's /healthz answers 200: it runs,
// JetStream is enabled, it has a meta leader and is current with it.
func (c *NATSCluster) waitHealthy(t testing.TB, i int) {
	t.Helper()
	nd := c.nodes[i]
	url := "http://127.0.0.1:" + strconv.Itoa(nd.monitoring) + "/healthz"
	client := &http.Client{Timeout: 2 * time.Second}
	eventually.Nil(t, natsReadyTimeout, "NATS node "+nd.name+" healthy", func() error {
		select {
		case <-nd.exited:
			b, _ := os.ReadFile(nd.logFile)
			t.Fatalf("NATS node %s exited; its log ends:\n%s", nd.name, LastLines(b, 40))
		default:
		}
		return GetOK(context.Background(), client, url)
	})
}

// waitReplicas waits until JetStream answers a client (it has a meta
// leader) and a stream with replicas copies can be placed, then removes
// that stream.
func (c *NATSCluster) waitReplicas(t testing.TB, replicas int) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connect to the NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("connect to the NATS cluster: %v", err)
	}
	const probe = "CLUSTERTEST_PROBE"
	eventually.Nil(t, natsReadyTimeout, "a JetStream meta leader and "+strconv.Itoa(replicas)+" peers", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("account info: %w", err)
		}
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: probe, Subjects: []string{"clustertest.probe"}, Storage: jetstream.MemoryStorage, Replicas: replicas,
		})
		if err != nil {
			return fmt.Errorf("create a stream with %d replicas: %w", replicas, err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, probe); err != nil {
		t.Fatalf("delete the probe stream: %v", err)
	}
}

// natsServerBinary returns the path of nats-server built from the module
// version in go.mod, building it once into the cache.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	dir := BuildGoTool(t, GoTool{
		Name:     "nats-server",
		Module:   natsModule,
		Binaries: map[string]string{"nats-server": natsModule},
		Timeout:  natsBuildTimeout,
	})
	return filepath.Join(dir, "nats-server")
}
