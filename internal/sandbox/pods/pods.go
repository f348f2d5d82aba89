// Package pods is the kube sandbox driver: each sandbox is a pod of a
// Kubernetes cluster whose container runs `stratus agent` (package
// agent): from the agent image, or, for a sandbox that runs an image
// (Spec.Image), from that image, with the agent at /.stratus/bin/stratus
// in an emptyDir (read-only there) that an init container from the agent
// image installed it into (`stratus agent --install`). The driver
// registers the sandbox's program, environment and mounts with its
// agent.Host, which the pod fetches them from: an init container of the
// agent image (`stratus agent --stage`) unpacks the mounts into their
// volumes, then the agent fetches the rest, relays the program's Runtime
// API to the server's and waits for Start. The driver follows
// each pod through an informer on the pods labelled with its node name,
// and talks to the agent at the pod's IP for Start, output, Wait and
// Stats.
//
// What a pod gets: the sandbox's memory (plus the agent's overhead) as
// its memory request and limit; its CPU share as the CPU request and, as
// a quota (Spec.CPUWeight false), as the limit, or one core at least
// (CPUWeight: the share is a weight under contention, as cpu.shares are);
// the server's region as required node affinity on
// topology.kubernetes.io/region; Spec.User (else nobody, 65534) as its
// user, non-root, no privilege escalation, no capabilities, the
// runtime's default seccomp profile, a read-only root, an emptyDir at
// /tmp and one for each mount (a folder of the server's host), bound
// read-only at its target in the container and writable only in the
// stager, the init container that unpacks it (at /.stratus/mounts/N); no
// service account token, no service links. The init containers have the
// same security context; the installer a small fixed memory and CPU, the
// stager the sandbox's. Spec.InitCPU is not applied: a pod's CPU limit cannot change
// without an in-place resize, so EndInit does nothing.
package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/agent"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Name is the driver's name, as --sandbox takes it.
const Name = "kube"

// Config configures a Driver.
type Config struct {
	// Client is the cluster and namespace pods are made in.
	Client *kube.Client
	// Node is this server's node name: its pods carry it (LabelNode), and
	// List returns only its own.
	Node string
	// Image is the agent image: the stratus binary at /stratus. Pods of
	// sandboxes that run an image of their own, or that have mounts, run
	// it as an init container too.
	Image string
	// PullPolicy is the image pull policy of the agent image and of the
	// images of sandboxes; "" is IfNotPresent.
	PullPolicy corev1.PullPolicy
	// Address is where pods reach this server: the agent Host listens
	// there, and so do the instances' Runtime APIs (Capabilities.HostIP).
	Address netip.Addr
	// Region, when set, is required of the nodes pods run on
	// (topology.kubernetes.io/region).
	Region string
	// Owner, when set, is the pod this server runs in: it owns the pods
	// the driver makes, so that Kubernetes deletes them with it (a server
	// pod that is replaced comes back under another node name, whose List
	// does not find them).
	Owner *metav1.OwnerReference
	// Log receives the driver's own events.
	Log *slog.Logger
}

// Bounds of the driver's waits and sizes.
const (
	// agentOverheadMB is added to a sandbox's memory for the agent (a Go
	// program relaying the Runtime API and buffering output).
	agentOverheadMB = 32
	// nobody is the user of a sandbox without Spec.User.
	nobody = 65534
	// readyPoll bounds one call to an agent while waiting for it.
	readyPoll = 2 * time.Second
	// startTimeout is how long a Prepare or Start may take: a pod is
	// scheduled, its images pulled (a pull failure reaches the pod's
	// status only at the kubelet's next sync of it, about 10 s later) and
	// its init containers run before its agent answers.
	startTimeout = time.Minute
	// drainOutput bounds the wait for a sandbox's output after its
	// program ended.
	drainOutput = 10 * time.Second
	// cleanUpTimeout bounds the removal of a sandbox that did not start.
	cleanUpTimeout = 30 * time.Second
	// tmpSizeMB bounds each sandbox's /tmp, as Lambda's default
	// ephemeral storage.
	tmpSizeMB = 512
)

// Driver runs sandboxes as pods. Its methods are safe for concurrent use.
type Driver struct {
	cfg      Config
	host     *agent.Host
	hostURL  string
	srv      *http.Server
	lister   listerscorev1.PodNamespaceLister
	factory  informers.SharedInformerFactory
	stopInf  chan struct{}
	nodeSel  string // label selector of this driver's pods
	nodeName string // LabelNode's value

	mu      sync.Mutex
	sbx     map[string]*sbx
	changed chan struct{} // closed and replaced when a pod changes
}

// sbx is one sandbox this driver made. It stays in Driver.sbx from
// Prepare until Wait has reported its exit (or its Prepare or Start
// failed), so that Stop does not lose the exit.
type sbx struct {
	spec   sandbox.Spec
	pod    string          // pod name
	client *agent.Client   // nil until the pod runs; set under Driver.mu
	follow *agent.Follower // nil until the agent is ready; set under Driver.mu
	ctx    context.Context // ends at Stop
	cancel context.CancelFunc
	// stopFollow ends the copying of the output, when the agent is gone.
	stopFollow context.CancelFunc
	started    bool
	exited     chan struct{} // closed once exit is set and output drained
	exit       sandbox.Exit
}

// ended reports whether s's program has ended and its output is drained.
func (s *sbx) ended() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// New starts the agent Host on cfg.Address and a pod informer, and
// returns once the informer has listed this node's pods.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	switch {
	case cfg.Client == nil:
		return nil, fmt.Errorf("kube sandbox driver: no cluster: %w", stratus.ErrInvalid)
	case cfg.Image == "":
		return nil, fmt.Errorf("kube sandbox driver: no agent image (--agent-image): %w", stratus.ErrInvalid)
	case cfg.Node == "":
		return nil, fmt.Errorf("kube sandbox driver: no node name: %w", stratus.ErrInvalid)
	case !cfg.Address.IsValid() || cfg.Address.IsLoopback() || cfg.Address.IsUnspecified():
		return nil, fmt.Errorf("kube sandbox driver: address %v: pods need an address of this server they can reach (--kube-address): %w", cfg.Address, stratus.ErrInvalid)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PullPolicy == "" {
		cfg.PullPolicy = corev1.PullIfNotPresent
	}
	d := &Driver{
		cfg: cfg, host: agent.NewHost(cfg.Log), stopInf: make(chan struct{}),
		nodeName: kube.Name(cfg.Node), sbx: make(map[string]*sbx), changed: make(chan struct{}),
	}
	d.nodeSel = kube.LabelNode + "=" + d.nodeName
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Address.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("kube sandbox driver: listen for agents at %v: %w", cfg.Address, err)
	}
	d.hostURL = "http://" + ln.Addr().String()
	d.srv = &http.Server{Handler: d.host.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := d.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Log.Error("kube sandbox driver: agent host stopped", "err", err)
		}
	}()
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client.Interface, 0,
		informers.WithNamespace(cfg.Client.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = d.nodeSel }))
	d.factory = factory
	pods := factory.Core().V1().Pods()
	inf := pods.Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.notify() },
		UpdateFunc: func(any, any) { d.notify() },
		DeleteFunc: func(any) { d.notify() },
	}); err != nil {
		d.srv.Close()
		return nil, err
	}
	d.lister = pods.Lister().Pods(cfg.Client.Namespace)
	factory.Start(d.stopInf)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		d.Close()
		return nil, fmt.Errorf("kube sandbox driver: list the pods of namespace %s: %w", cfg.Client.Namespace, stratus.ErrUnavailable)
	}
	return d, nil
}

// Close stops the informer and the agent Host. Sandboxes still running
// are left to the next server's List and Stop.
func (d *Driver) Close() error {
	select {
	case <-d.stopInf:
	default:
		close(d.stopInf)
	}
	err := d.srv.Close()
	d.factory.Shutdown()
	return err
}

// Name implements sandbox.Driver.
func (d *Driver) Name() string { return Name }

// Capabilities implements sandbox.Driver.
func (d *Driver) Capabilities() sandbox.Capabilities {
	return sandbox.Capabilities{
		MemoryLimit: true, Isolated: true, Users: true, Hostname: true,
		Mounts: true, Prepare: true, ImageRef: true, Regions: true, HostIP: d.cfg.Address,
		StartTimeout: startTimeout,
	}
}

// notify wakes everything waiting for a pod to change.
func (d *Driver) notify() {
	d.mu.Lock()
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// changes returns the channel the next pod change closes.
func (d *Driver) changes() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// podName is the name of sandbox id's pod.
func (d *Driver) podName(id string) string { return kube.Name("stratus", d.cfg.Node, id) }

// get returns sandbox id, or nil.
func (d *Driver) get(id string) *sbx {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sbx[id]
}

// ready returns sandbox id once its agent is ready (its client and
// follower set), live or ended; else an ErrNotFound.
func (d *Driver) ready(id string) (*sbx, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.sbx[id]; s != nil && s.follow != nil {
		return s, nil
	}
	return nil, fmt.Errorf("sandbox %s: %w", id, stratus.ErrNotFound)
}

// running returns sandbox id once its pod runs (its client set), until
// its program has ended; else an ErrNotFound.
func (d *Driver) running(id string) (*sbx, error) {
	d.mu.Lock()
	s := d.sbx[id]
	ok := s != nil && s.client != nil
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("sandbox %s: %w", id, stratus.ErrNotFound)
	}
	if s.ended() {
		return nil, fmt.Errorf("sandbox %s: ended: %w", id, stratus.ErrNotFound)
	}
	return s, nil
}

// drop forgets s, unless another sandbox took its ID.
func (d *Driver) drop(s *sbx) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sbx[s.spec.ID] == s {
		delete(d.sbx, s.spec.ID)
	}
}

// Prepare implements sandbox.Driver: it makes the pod and returns once
// its mounts are unpacked and its agent has the program's spec and waits
// for Start.
func (d *Driver) Prepare(ctx context.Context, spec sandbox.Spec) error {
	_, err := d.prepare(ctx, spec)
	return err
}

func (d *Driver) prepare(ctx context.Context, spec sandbox.Spec) (*sbx, error) {
	if err := check(spec); err != nil {
		return nil, err
	}
	d.mu.Lock()
	old := d.sbx[spec.ID]
	if old != nil && (old.follow == nil || !old.ended()) {
		d.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s: already live: %w", spec.ID, stratus.ErrConflict)
	}
	// An ended sandbox whose exit nobody waited for is replaced.
	sctx, cancel := context.WithCancel(context.Background())
	s := &sbx{spec: spec, pod: d.podName(spec.ID), ctx: sctx, cancel: cancel, exited: make(chan struct{})}
	d.sbx[spec.ID] = s
	d.mu.Unlock()
	fail := func(err error) (*sbx, error) {
		d.cleanUp(ctx, s)
		return nil, err
	}
	if old != nil {
		// Its pod, which watch deletes, must be gone to make one of the
		// same name.
		if err := d.deletePod(ctx, old.pod, 0); err != nil {
			return fail(fmt.Errorf("sandbox %s: %w", spec.ID, err))
		}
	}
	token := d.host.Add(agent.Sandbox{
		ID: spec.ID, Argv: spec.Argv, Env: spec.Env, Dir: spec.Dir, Mounts: spec.Mounts,
		RuntimeAPI: runtimeAPI(spec.Env),
	})
	pod := d.podSpec(spec, s.pod, token)
	if _, err := d.cfg.Client.Interface.CoreV1().Pods(d.cfg.Client.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return fail(fmt.Errorf("sandbox %s: create pod %s: %w", spec.ID, s.pod, kind(err)))
	}
	ip, err := d.waitRunning(ctx, s)
	if err != nil {
		return fail(err)
	}
	// The pod runs: its init containers ended well, the mounts are in
	// its volumes, and the Host serves them no more.
	d.host.Staged(spec.ID)
	client := &agent.Client{Addr: netip.AddrPortFrom(ip, agent.Port), Token: token}
	d.mu.Lock()
	s.client = client
	d.mu.Unlock()
	if err := d.waitAgent(ctx, s, client); err != nil {
		return fail(err)
	}
	// The agent has what it fetches: its credential opens nothing at the
	// Host any more.
	d.host.Remove(spec.ID)
	fctx, stopFollow := context.WithCancel(s.ctx)
	follow := client.Follow(fctx, orDiscard(spec.Stdout), orDiscard(spec.Stderr))
	d.mu.Lock()
	s.follow, s.stopFollow = follow, stopFollow
	d.mu.Unlock()
	go d.watch(s)
	return s, nil
}

// Start implements sandbox.Driver.
func (d *Driver) Start(ctx context.Context, spec sandbox.Spec) error {
	s := d.get(spec.ID)
	if s == nil {
		var err error
		if s, err = d.prepare(ctx, spec); err != nil {
			return err
		}
	}
	d.mu.Lock()
	if s.started || s.follow == nil {
		d.mu.Unlock()
		return fmt.Errorf("sandbox %s: already live: %w", spec.ID, stratus.ErrConflict)
	}
	s.started = true
	d.mu.Unlock()
	if err := s.client.Start(ctx); err != nil {
		d.cleanUp(ctx, s)
		return fmt.Errorf("sandbox %s: start: %w", spec.ID, err)
	}
	return nil
}

// waitRunning waits until s's pod runs and has an IP, and fails early
// when it cannot: it ended, was deleted, or its image cannot be had.
func (d *Driver) waitRunning(ctx context.Context, s *sbx) (netip.Addr, error) {
	for {
		ch := d.changes()
		pod, err := d.lister.Get(s.pod)
		if err == nil {
			if ip, ok := podIP(pod); ok && pod.Status.Phase == corev1.PodRunning {
				return ip, nil
			}
			if why := podFailed(pod); why != "" {
				return netip.Addr{}, fmt.Errorf("sandbox %s: pod %s: %s: %w", s.spec.ID, s.pod, why, stratus.ErrUnavailable)
			}
		}
		select {
		case <-ch:
		case <-s.ctx.Done():
			return netip.Addr{}, fmt.Errorf("sandbox %s: stopped before its pod ran: %w", s.spec.ID, stratus.ErrUnavailable)
		case <-ctx.Done():
			return netip.Addr{}, fmt.Errorf("sandbox %s: pod %s not running: %s: %w", s.spec.ID, s.pod, d.podState(s.pod), ctx.Err())
		}
	}
}

// waitAgent waits until s's agent, at client, is ready for Start.
func (d *Driver) waitAgent(ctx context.Context, s *sbx, client *agent.Client) error {
	delay := 20 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, readyPoll)
		err := client.Ready(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, agent.ErrSetup) || !errors.Is(err, stratus.ErrUnavailable) {
			return fmt.Errorf("sandbox %s: agent of pod %s: %w", s.spec.ID, s.pod, err)
		}
		if pod, gerr := d.lister.Get(s.pod); gerr == nil {
			if why := podFailed(pod); why != "" {
				return fmt.Errorf("sandbox %s: pod %s: %s: %w", s.spec.ID, s.pod, why, stratus.ErrUnavailable)
			}
		}
		select {
		case <-time.After(delay):
			delay = min(2*delay, 500*time.Millisecond)
		case <-s.ctx.Done():
			return fmt.Errorf("sandbox %s: stopped before its agent was ready: %w", s.spec.ID, stratus.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("sandbox %s: agent of pod %s not ready (%v): %w", s.spec.ID, s.pod, err, ctx.Err())
		}
	}
}

// watch sets s's exit once its program has ended (the agent says so, or
// the pod's status does when the agent cannot: the container was killed
// or the pod deleted) and its output has been drained, and deletes the
// pod, which has nothing more to do: an ended sandbox leaves List.
func (d *Driver) watch(s *sbx) {
	type result struct {
		exit sandbox.Exit
		err  error
	}
	fromAgent := make(chan result, 1)
	go func() {
		e, err := s.client.Wait(s.ctx)
		fromAgent <- result{e, err}
	}()
	var exit sandbox.Exit
	agentCh := (<-chan result)(fromAgent)
wait:
	for {
		ch := d.changes()
		if e, ended, clean := d.podExit(s.pod); ended {
			// An agent that ended by itself did so once its output was
			// read; one that was killed leaves what it had unread.
			exit = e
			if !clean {
				s.stopFollow()
			}
			break
		}
		select {
		case r := <-agentCh:
			if r.err == nil {
				exit = r.exit
				break wait
			}
			agentCh = nil // the pod's status tells
		case <-ch:
		case <-d.stopInf:
			// The driver is closed: no pod change comes any more.
			exit = sandbox.Exit{Code: -1, Signal: "killed"}
			s.stopFollow()
			break wait
		}
	}
	select {
	case <-s.follow.Done():
	case <-time.After(drainOutput):
		d.cfg.Log.Warn("kube sandbox: output not drained", "sandbox", s.spec.ID, "pod", s.pod)
		// Nothing reaches the sandbox's writers once Wait has returned.
		s.stopFollow()
		<-s.follow.Done()
	}
	// Deleted before Wait returns, so that List no longer has it then;
	// Stop waits for it to be gone.
	ctx, cancel := context.WithTimeout(context.Background(), cleanUpTimeout)
	secs := int64(1)
	err := d.cfg.Client.Interface.CoreV1().Pods(d.cfg.Client.Namespace).Delete(ctx, s.pod, metav1.DeleteOptions{GracePeriodSeconds: &secs})
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		d.cfg.Log.Warn("kube sandbox: delete the pod of an ended sandbox", "sandbox", s.spec.ID, "pod", s.pod, "err", err)
	}
	d.mu.Lock()
	s.exit = exit
	d.mu.Unlock()
	close(s.exited)
	s.cancel()
}

// Stop implements sandbox.Driver: it deletes the pod with grace as its
// grace period (a second at least: the kubelet then sends SIGTERM, and
// SIGKILL after it) and returns once the pod is gone. A sandbox whose
// agent was ready keeps its exit for Wait.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	s := d.get(id)
	if s == nil {
		return d.deletePod(ctx, d.podName(id), grace)
	}
	return d.forget(ctx, s, grace, false)
}

// cleanUp forgets s after a failed Prepare or Start, also when ctx has
// ended, within cleanUpTimeout.
func (d *Driver) cleanUp(ctx context.Context, s *sbx) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanUpTimeout)
	defer cancel()
	if err := d.forget(cctx, s, 0, true); err != nil {
		d.cfg.Log.Warn("kube sandbox: remove the pod of a sandbox that did not start", "sandbox", s.spec.ID, "pod", s.pod, "err", err)
	}
}

// forget deletes s's pod and waits for it to be gone and for s's exit.
// It forgets s when all is set or s has no exit to wait for (its agent
// was never ready); else Wait does.
func (d *Driver) forget(ctx context.Context, s *sbx, grace time.Duration, all bool) error {
	err := d.deletePod(ctx, s.pod, grace)
	d.mu.Lock()
	follow := s.follow
	d.mu.Unlock()
	if err == nil && follow != nil {
		select {
		case <-s.exited:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	s.cancel()
	d.mu.Lock()
	if d.sbx[s.spec.ID] == s {
		d.host.Remove(s.spec.ID)
		if all || follow == nil {
			delete(d.sbx, s.spec.ID)
		}
	}
	d.mu.Unlock()
	return err
}

// deletePod deletes pod name and waits until the API no longer has it.
func (d *Driver) deletePod(ctx context.Context, name string, grace time.Duration) error {
	secs := max(int64((grace+time.Second-1)/time.Second), 1)
	pods := d.cfg.Client.Interface.CoreV1().Pods(d.cfg.Client.Namespace)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete pod %s: %w", name, kind(err))
	}
	for {
		ch := d.changes()
		if _, err := d.lister.Get(name); apierrors.IsNotFound(err) {
			// The informer may lag behind a new pod of the same name;
			// the API has the last word.
			if _, err := pods.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return nil
			}
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
		case <-ctx.Done():
			return fmt.Errorf("delete pod %s: still there: %w", name, ctx.Err())
		}
	}
}

// Wait implements sandbox.Driver. Once it has reported the exit, the
// sandbox is forgotten.
func (d *Driver) Wait(ctx context.Context, id string) (sandbox.Exit, error) {
	s, err := d.ready(id)
	if err != nil {
		return sandbox.Exit{}, err
	}
	select {
	case <-s.exited:
		d.drop(s)
		d.mu.Lock()
		defer d.mu.Unlock()
		return s.exit, nil
	case <-ctx.Done():
		return sandbox.Exit{}, ctx.Err()
	}
}

// SyncOutput implements sandbox.Driver.
func (d *Driver) SyncOutput(ctx context.Context, id string) error {
	s, err := d.ready(id)
	if err != nil {
		return err
	}
	if s.ended() {
		return nil // drained
	}
	return s.follow.Sync(ctx)
}

// Addr implements sandbox.Driver: the pod's IP.
func (d *Driver) Addr(ctx context.Context, id string) (netip.Addr, error) {
	s, err := d.running(id)
	if err != nil {
		return netip.Addr{}, err
	}
	return s.client.Addr.Addr(), nil
}

// Owns implements sandbox.Driver: a connection is the sandbox's when it
// comes from its pod's IP, which no other pod of the cluster has while
// the pod lives (its agent relays the program's Runtime API calls).
func (d *Driver) Owns(ctx context.Context, id string, local, remote netip.AddrPort) (bool, error) {
	s, err := d.running(id)
	if err != nil {
		return false, err
	}
	return remote.Addr().Unmap() == s.client.Addr.Addr(), nil
}

// EndInit implements sandbox.Driver; it does nothing (see the package
// comment).
func (d *Driver) EndInit(ctx context.Context, id string) error { return nil }

// Stats implements sandbox.Driver: the agent reads its container's
// cgroup.
func (d *Driver) Stats(ctx context.Context, id string) (sandbox.Stats, error) {
	s, err := d.running(id)
	if err != nil {
		return sandbox.Stats{}, err
	}
	return s.client.Stats(ctx)
}

// List implements sandbox.Driver: the sandboxes of every pod labelled
// with this node's name, read from the API (not the informer's cache, so
// that a server starting up sees what it left).
func (d *Driver) List(ctx context.Context) ([]string, error) {
	list, err := d.cfg.Client.Interface.CoreV1().Pods(d.cfg.Client.Namespace).List(ctx, metav1.ListOptions{LabelSelector: d.nodeSel})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", kind(err))
	}
	var ids []string
	for _, p := range list.Items {
		if id := p.Annotations[annotationID]; id != "" && p.DeletionTimestamp == nil {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// kind gives an API error the kind of stratus error callers decide on.
func kind(err error) error {
	switch {
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return fmt.Errorf("%w: %w", err, stratus.ErrConflict)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %w", err, stratus.ErrNotFound)
	case apierrors.IsForbidden(err):
		// The server's RBAC lacks a right: its installation's fault.
		return fmt.Errorf("%w (see the Role of deploy/helm/stratus): %w", err, stratus.ErrUnavailable)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return fmt.Errorf("%w: %w", err, stratus.ErrInvalid)
	}
	return fmt.Errorf("%w: %w", err, stratus.ErrUnavailable)
}

// podState says where pod name is, for errors: its phase and why it
// waits.
func (d *Driver) podState(name string) string {
	pod, err := d.lister.Get(name)
	if err != nil {
		return "not seen yet"
	}
	state := "phase " + string(pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue && c.Message != "" {
			state += ", not scheduled: " + c.Message
		}
	}
	for _, c := range pod.Status.InitContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" {
			state += ", init container " + w.Reason
			if w.Message != "" {
				state += ": " + w.Message
			}
		}
	}
	for _, c := range pod.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil && w.Reason != "" {
			state += ", container " + w.Reason
			if w.Message != "" {
				state += ": " + w.Message
			}
		}
	}
	return state
}

// podIP returns pod's IP.
func podIP(pod *corev1.Pod) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(pod.Status.PodIP)
	return ip.Unmap(), err == nil
}

// orDiscard is w, or io.Discard when w is nil.
func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// itoa formats n.
func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// HostAddress returns the first global unicast address of this host's
// interfaces (IPv4 first): where pods reach a server that runs outside
// the cluster's pod network, or in a pod without --kube-address.
func HostAddress() (netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	var v6 netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil || !p.Addr().IsGlobalUnicast() {
			continue
		}
		if ip := p.Addr().Unmap(); ip.Is4() {
			return ip, nil
		} else if !v6.IsValid() {
			v6 = ip
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	return netip.Addr{}, fmt.Errorf("no address of this host other than loopback: set --kube-address: %w", stratus.ErrInvalid)
}
