package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
)

// RegionLabel is the well-known node label of a node's region.
const RegionLabel = "topology.kubernetes.io/region"

// Node labels and annotations that mark a node as KWOK's: KWOK manages
// (heartbeats, and runs the pods of) the nodes with the annotation.
const (
	kwokAnnotation = "kwok.x-k8s.io/node"
	kwokValue      = "fake"
)

// Bounds of the harness's waits.
const (
	readyTimeout = 2 * time.Minute // a component ready, nodes Ready
	exitTimeout  = 10 * time.Second
)

// Node is a fake node that Start registers and KWOK keeps Ready.
type Node struct {
	// Name is the node's name; "" is kwok-N (N from 1, its place in the
	// list).
	Name string
	// Region is the value of its topology.kubernetes.io/region label; ""
	// leaves the label out.
	Region string
	// Labels are more labels.
	Labels map[string]string
}

// Cluster is a Kubernetes control plane of real processes on loopback
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and
// KWOK running the pods of its fake nodes. Start makes one; its methods
// are safe for concurrent use.
type Cluster struct {
	dir        string
	kubeconfig string
	config     *rest.Config
	client     *kubernetes.Clientset
	nodes      []string
	node       *realNode // StartWithNode's; nil for Start

	mu    sync.Mutex
	procs []*process // in start order; stopped in reverse
}

// process is one component's process, its output in logFile.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	exited  chan struct{} // closed once cmd has been waited for
}

// Start builds the cluster's programs (once, see the package comment),
// starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// KWOK on free loopback ports with their data in a temp dir, registers
// nodes as KWOK nodes, and returns once the API server is ready, every
// node is Ready, the controller-manager has made the default namespace's
// service account and the scheduler reports itself ready. Everything is
// stopped in t's Cleanup (Stop). A missing go command skips t (fails it
// under CI=true); a failed build or a component that does not come up
// fails it.
func Start(t testing.TB, nodes ...Node) *Cluster {
	t.Helper()
	return start(t, false, nodes)
}

// StartAPIServer is Start with etcd and kube-apiserver only: no
// controllers, scheduler or nodes, for tests of what the API server alone
// does (objects, optimistic concurrency, watches). Namespaces it makes
// are not finalized (no namespace controller) once deleted.
func StartAPIServer(t testing.TB) *Cluster {
	t.Helper()
	return start(t, true, nil)
}

// start is Start, or StartAPIServer if apiOnly.
func start(t testing.TB, apiOnly bool, nodes []Node) *Cluster {
	t.Helper()
	bin := buildBinaries(t)
	start := time.Now()
	c := &Cluster{dir: t.TempDir()}
	nodes = slices.Clone(nodes)
	for i, n := range nodes {
		if n.Name == "" {
			nodes[i].Name = "kwok-" + strconv.Itoa(i+1)
		}
		c.nodes = append(c.nodes, nodes[i].Name)
	}
	t.Cleanup(func() { c.stop(t, t.Failed()) })

	p, err := newPKI(c.dir)
	if err != nil {
		t.Fatalf("start a Kubernetes cluster: %v", err)
	}
	ports := clustertest.FreePorts(t, 5)
	etcdClient, etcdPeer, apiPort, kcmPort, schedPort := ports[0], ports[1], ports[2], ports[3], ports[4]

	// etcd, with no fsync: its data dies with the test.
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	etcd := c.launch(t, "etcd", bin.etcd,
		"--name=default",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	)
	c.waitHTTP(t, etcd, http.DefaultClient, etcdURL+"/health")

	apiserver := c.launch(t, "kube-apiserver", bin.apiserver,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--client-ca-file="+p.caFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=RBAC",
		// No Endpoints for the kubernetes Service: its address would be
		// a loopback one, which nothing in the cluster could reach.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	)
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.config = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: p.caPEM, CertData: p.adminCertPEM, KeyData: p.adminKeyPEM,
		},
		QPS: 100, Burst: 200,
	}
	apiClient, err := httpClient(p.caPEM, p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		t.Fatalf("start a Kubernetes cluster: %v", err)
	}
	c.waitHTTP(t, apiserver, apiClient, server+"/readyz")

	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, server, p); err != nil {
		t.Fatalf("start a Kubernetes cluster: write the kubeconfig: %v", err)
	}
	if c.client, err = kubernetes.NewForConfig(c.config); err != nil {
		t.Fatalf("start a Kubernetes cluster: %v", err)
	}
	if apiOnly {
		t.Logf("started a Kubernetes API server in %s", time.Since(start).Round(time.Millisecond))
		return c
	}

	// The other components, all with the admin's credentials.
	kcm := c.launch(t, "kube-controller-manager", bin.controllerManager,
		"--kubeconfig="+c.kubeconfig,
		"--authentication-kubeconfig="+c.kubeconfig, "--authorization-kubeconfig="+c.kubeconfig,
		"--leader-elect=false", "--use-service-account-credentials=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(kcmPort),
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--root-ca-file="+p.caFile, "--service-account-private-key-file="+p.saKey,
		"--profiling=false",
	)
	scheduler := c.launch(t, "kube-scheduler", bin.scheduler,
		"--kubeconfig="+c.kubeconfig,
		"--authentication-kubeconfig="+c.kubeconfig, "--authorization-kubeconfig="+c.kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(schedPort),
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--profiling=false",
	)
	kwok := c.launch(t, "kwok", bin.kwok,
		"--kubeconfig="+c.kubeconfig,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector="+kwokAnnotation+"="+kwokValue,
		"--cidr=10.244.0.1/16", "--node-ip=10.0.0.1",
		"--node-lease-duration-seconds=40",
	)

	for _, n := range nodes {
		if err := c.createNode(n); err != nil {
			t.Fatalf("start a Kubernetes cluster: %v", err)
		}
	}
	c.waitNodesReady(t, kwok)
	c.waitAlive(t, kcm, "the default service account (made by kube-controller-manager)", func(ctx context.Context) error {
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	c.waitHTTP(t, scheduler, apiClient, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/readyz")
	t.Logf("started a Kubernetes cluster (%d nodes) in %s", len(nodes), time.Since(start).Round(time.Millisecond))
	return c
}

// Kubeconfig returns the path of a kubeconfig file for the cluster's
// admin (a client certificate in group system:masters), for kubectl and
// for the programs under test.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin's client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Client returns a clientset of the admin.
func (c *Cluster) Client() kubernetes.Interface { return c.client }

// Nodes returns the names of the fake nodes, in the order given to Start.
func (c *Cluster) Nodes() []string { return append([]string(nil), c.nodes...) }

// Namespace creates a namespace with a fresh name starting with "test-"
// and returns its name; t's Cleanup deletes it.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "test-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create a namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !c.stopped() {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// Stop kills every component (in the reverse order of their start) and
// waits until each has exited; their ports are then free. With a real
// node, it stops the pods first and cleans the host after (see
// StartWithNode). It is idempotent; t's Cleanup calls it too.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.stop(t, false)
}

func (c *Cluster) stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.procs) == 0
}

// stop kills the components; with showLogs, it shows the end of each
// one's log first. With a real node, it first has the kubelet stop the
// pods, and last puts the host back as it was.
func (c *Cluster) stop(t testing.TB, showLogs bool) {
	if c.node != nil {
		c.drain(t)
		defer c.node.sweep(t)
	}
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		pr := procs[i]
		if err := pr.kill(); err != nil {
			t.Errorf("stop %s: %v", pr.name, err)
		}
		if showLogs {
			t.Logf("log of %s (end):\n%s", pr.name, pr.logTail(30))
		}
	}
}

// launch starts a component in its own process group, its output in
// DIR/NAME.log.
func (c *Cluster) launch(t testing.TB, name, bin string, args ...string) *process {
	t.Helper()
	pr := &process{name: name, logFile: filepath.Join(c.dir, name+".log"), exited: make(chan struct{})}
	out, err := os.OpenFile(pr.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	defer out.Close() // the child has its own copy
	pr.cmd = exec.Command(bin, args...)
	pr.cmd.Dir = c.dir
	pr.cmd.Stdout, pr.cmd.Stderr = out, out
	// HOME is the cluster's dir: KWOK reads ~/.kwok/kwok.yaml, and
	// nothing of the user's may change the cluster.
	pr.cmd.Env = append(os.Environ(), "HOME="+c.dir)
	// Its own process group, killed with it; and killed if the test
	// binary dies first.
	pr.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := pr.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = pr.cmd.Wait()
		close(pr.exited)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, pr)
	c.mu.Unlock()
	return pr
}

// kill kills pr's process group and waits for the process.
func (pr *process) kill() error {
	if err := syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-pr.exited:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("still running %s after SIGKILL", exitTimeout)
	}
}

// logTail returns the last n lines of pr's log.
func (pr *process) logTail(n int) string {
	b, err := os.ReadFile(pr.logFile)
	if err != nil {
		return err.Error()
	}
	return clustertest.LastLines(b, n)
}

// waitAlive waits until check passes, failing t at once, with pr's log,
// when pr exits first.
func (c *Cluster) waitAlive(t testing.TB, pr *process, what string, check func(ctx context.Context) error) {
	t.Helper()
	eventually.Nil(t, readyTimeout, what, func() error {
		select {
		case <-pr.exited:
			t.Fatalf("%s exited (%v); its log ends:\n%s", pr.name, pr.cmd.ProcessState, pr.logTail(40))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return check(ctx)
	})
}

// waitHTTP waits until url answers 200 to a GET with client.
func (c *Cluster) waitHTTP(t testing.TB, pr *process, client *http.Client, url string) {
	t.Helper()
	c.waitAlive(t, pr, pr.name+" ready ("+url+")", func(ctx context.Context) error {
		return clustertest.GetOK(ctx, client, url)
	})
}

// createNode registers n as a KWOK node, with the labels a kubelet sets
// and room for many pods.
func (c *Cluster) createNode(n Node) error {
	labels := map[string]string{
		"kubernetes.io/hostname": n.Name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	if n.Region != "" {
		labels[RegionLabel] = n.Region
	}
	for k, v := range n.Labels {
		labels[k] = v
	}
	room := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.client.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.Name,
			Labels:      labels,
			Annotations: map[string]string{kwokAnnotation: kwokValue},
		},
		Status: corev1.NodeStatus{Capacity: room, Allocatable: room},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	return nil
}

// waitNodesReady waits until every node has condition Ready True.
func (c *Cluster) waitNodesReady(t testing.TB, kwok *process) {
	t.Helper()
	c.waitAlive(t, kwok, "every node Ready (KWOK)", func(ctx context.Context) error {
		for _, name := range c.nodes {
			n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !NodeReady(n) {
				return fmt.Errorf("node %s not Ready", name)
			}
		}
		return nil
	})
}

// NodeReady reports whether n has condition Ready True.
func NodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// httpClient is a client that trusts caPEM and presents the admin's
// certificate.
func httpClient(caPEM, certPEM, keyPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("read the CA certificate: no certificate")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("read the admin certificate: %w", err)
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}

// writeKubeconfig writes a kubeconfig for server and the admin to file.
func writeKubeconfig(file, server string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stratus-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caPEM}
	cfg.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: p.adminCertPEM, ClientKeyData: p.adminKeyPEM}
	cfg.Contexts["stratus-test"] = &clientcmdapi.Context{Cluster: "stratus-test", AuthInfo: adminUser}
	cfg.CurrentContext = "stratus-test"
	return clientcmd.WriteToFile(*cfg, file)
}
