// Package cluster makes several Stratus servers on one PostgreSQL store
// act as one: it keeps the list of servers (nodes), gives each function
// and each service one owner at a time (leases with fencing), tells the
// server's parts what other servers changed (the store's notifications),
// and forwards what lands on a server that does not own it to the one
// that does.
//
// # Nodes
//
// Every server heartbeats into the store's nodes table every 2 s
// (Config.Heartbeat) with its address, region, version, instance and
// replica counts and state ("ready", "unready: REASON" from
// Config.Health, "stopping" while it stops). A node whose last heartbeat
// is older than 10 s (Config.DeadAfter) is dead: Nodes says so, and no
// request is forwarded to it. A server that stops cleanly releases its
// leases and deletes its row.
//
// Each Run has a random incarnation ID, written in the row: a heartbeat
// writes the row only if it is absent or its own incarnation's. At its
// start, Run takes the name (Join): a row of another incarnation that
// heartbeats again while Run watches it is a live server under the same
// name, and Run returns an error (give each server its own
// --node-name); one that does not (this server's previous run, killed)
// is taken once it is DeadAfter old. No lease is taken before. A running
// node whose heartbeat finds another incarnation in its row (it was
// taken for dead and its name taken over) logs an error and stops owning
// anything, for good: it drops its leases here, takes no more, and at
// its stop releases nothing and leaves the row (the leases and the row
// are the new incarnation's).
//
// # Ownership and fencing
//
// A lease ("function/NAME", "service/NAME") gives a workload to one node
// for 10 s (Config.LeaseTTL), renewed every 2 s (a fifth of the TTL). The
// owner runs all of the workload's instances or replicas and makes its
// scaling decisions; the pools' limits (max concurrency) and the
// autoscaler therefore act once per workload, as on one machine. Each new
// holding of a lease gets the next epoch (the store's AcquireLease); the
// epoch is the fencing token that forwarded requests carry. The leases
// are the store's rows, or those of Config.Leases (Lease objects on
// Kubernetes: internal/kube/lease), with the same semantics.
//
// An owner acts only until its local deadline: the start of its last
// successful renewal (or acquisition), on its own monotonic clock, plus
// the TTL minus a margin of 2 s (a fifth of the TTL). When renewals fail
// (the store is unreachable) the owner stops acting at that deadline
// (Owns turns false, its services are reloaded and stop), while the
// store lets another node take the lease only from the lease's expiry,
// which is at least the TTL after the renewal started, by the clock of
// the server that wrote it. So two owners never act at once as long as
// the servers' clocks agree within 1 s (the margin covers that, with a
// second to spare for a late check); what the old owner had under way
// at its deadline (an invocation running) finishes, nothing new starts
// there. A lease is free once expired or released; a
// workload without an owner is taken by the first server that needs it:
// an invocation (Route), a request to one of its service routes or API
// calls (ServiceForwarder), or the owner scan that every server runs at
// each heartbeat so that every stored service has an owner while any
// server lives. A lease whose holder is dead is never taken early: the
// taker waits until it expires.
//
// # Forwarding
//
// Invocations (everything that reaches functions.Service.Invoke: sync,
// async, topics, schedules, function URLs, the Lambda API) of a function
// owned elsewhere go through Route's Remote to the owner's
// POST /v1/internal/invoke/{name} (InternalHandler) as JSON: the request
// ID, the event, the client context, the Cognito identity, the trigger,
// the deadline of the caller's context and its W3C trace context. The
// answer is the invocation's Response, or the owner's error with its kind
// (a throttle stays stratus.ErrCapacity, so async retries and 429s behave
// as on the owner). Service routes (/svc/NAME..., Host NAME.<domain>) and
// service API calls (/v1/services/NAME...) are reverse-proxied to the
// owner by ServiceForwarder, streaming, WebSocket upgrades included.
//
// A forwarded request carries X-Stratus-Forwarded-By (the sender) and
// X-Stratus-Lease-Epoch (the epoch the sender saw) and is never forwarded
// again: the receiver serves it if it holds that lease at that epoch,
// else answers 503 (stratus.ErrUnavailable, ownership moved), and the
// sender reads the owner again and retries once. Owners are cached until
// their lease's expiry, so that an invocation costs no store query; an
// owner that cannot be reached (connection refused) is suspect until its
// next heartbeat, and its leases are waited for.
//
// # Changes
//
// Run listens to the store's change notifications (PostgreSQL
// LISTEN/NOTIFY) and hands each to the OnChange subscribers, with a
// Resync after every (re)connection and every 30 s. When this node gains
// or loses a service's lease, subscribers get Change{Table: "services",
// Name: NAME} too, so the service manager starts or stops its replicas.
//
// # One machine
//
// On SQLite (Single) there is one node: Route always answers "here",
// Owns is always true, nothing is forwarded and no lease is taken; the
// node still heartbeats so that `stratus nodes` lists it.
//
// # Goroutines and locks
//
// Run starts and waits for every goroutine of a Cluster: the heartbeat
// loop (heartbeats, node list, owner scan), the renewal loop, the
// deadline sweeper, the listener, the resync ticker and the dispatcher
// that calls subscribers, one change at a time, in order. Changes queue
// up to 256; beyond that they collapse into one Resync. A Cluster has two
// locks, never held together and never during I/O: mu (a RWMutex:
// invocations only read) around its maps, and the heartbeats' state's.
package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/store"
)

// Defaults of Config.
const (
	DefaultHeartbeat = 2 * time.Second
	DefaultDeadAfter = 10 * time.Second
	DefaultLeaseTTL  = 10 * time.Second
)

const (
	// resyncEvery is how often subscribers get a Resync without a
	// reconnection.
	resyncEvery = 30 * time.Second
	// changeQueue bounds the changes waiting for the subscribers.
	changeQueue = 256
	// stopTimeout bounds what Run does in the store after its context
	// ended.
	stopTimeout = 5 * time.Second
	// serviceLeaseGC is how long a service's lease is kept after the
	// service left the store (a deploy takes the lease before it stores
	// the service); then its holder deletes it.
	serviceLeaseGC = 10 * time.Minute
)

// Config configures a Cluster. Store, Node and Address are required.
type Config struct {
	Store *store.Store
	// Leases, if set, keeps the leases instead of Store (Lease objects of
	// a Kubernetes cluster: internal/kube/lease). Nil: Store's lease rows.
	Leases LeaseStore
	// Node is this server's name, unique in the cluster.
	Node string
	// Address is the base URL the other servers reach this one at:
	// "http://10.0.0.7:8080".
	Address string
	Region  string
	Version string
	// Token is the bearer token of the control API, the same on every
	// server: forwarded invocations carry it, InternalHandler requires it.
	Token string

	// Heartbeat is the time between two heartbeats (default 2 s);
	// DeadAfter the age of its last heartbeat from which a node is dead
	// (default 10 s); LeaseTTL how long a lease lasts without renewal
	// (default 10 s; renewed every fifth of it, acted on until a fifth of
	// it before its expiry).
	Heartbeat, DeadAfter, LeaseTTL time.Duration

	// Stats, if set, gives the instance and replica counts a heartbeat
	// carries.
	Stats func() (instances, replicas int)
	// Health, if set, says why the server is not ready ("" when it is);
	// the heartbeat's state is "ready" or "unready: " and the reason.
	Health func() string
	// Local runs an invocation here without asking where it runs
	// (functions.Service.InvokeLocal): InternalHandler's side. Nil:
	// forwarded invocations are refused (stratus.ErrUnavailable).
	Local func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)
	// Sync, if set, makes the records and log lines of the invocations
	// run here durable (the log writer's Sync): InternalHandler calls it
	// before it answers a forwarded queued event (async, topic,
	// schedule), whose sender acknowledges the event on that answer.
	Sync func(ctx context.Context) error
	// Services, if set, says whether a service of this name exists (the
	// service manager knows it, run here or elsewhere): ServiceForwarder
	// looks up the owner only of those (and of a new one a deploy with
	// the token creates), so that requests for names that are no service
	// cost no store query and take no lease. Nil: every name.
	Services func(name string) bool

	// Log receives what the Cluster does; nil discards it.
	Log *slog.Logger
}

// Cluster is this server's part in a cluster of servers. Create it with
// New, register subscribers with OnChange, then Run it.
type Cluster struct {
	cfg     Config
	db      db
	single  bool
	log     *slog.Logger
	answer  v1.Responder
	margin  time.Duration // a lease is acted on until this long before its expiry
	renewal time.Duration // time between two renewals
	// serviceGC is how long a service's lease is kept, held here, after
	// the service left the store (serviceLeaseGC; tests shorten it).
	serviceGC time.Duration
	started   time.Time
	// incarnation is this Cluster's random ID in its node row.
	incarnation string
	token       *gateway.Token // Config.Token, as the API checks it
	// joined: Run took the node's name (Join); evicted: another
	// incarnation took it since, and this node owns nothing for good.
	joined, evicted atomic.Bool

	client *http.Client           // forwarded invocations
	proxy  *httputil.ReverseProxy // forwarded service requests

	kick      chan struct{}     // wakes the sweeper: the holdings changed
	changes   chan store.Change // to the dispatcher
	resyncDue atomic.Bool       // a change was dropped: a Resync is owed

	beats beatState // the heartbeats' outcome, for Health

	mu       sync.RWMutex
	held     map[string]holding   // leases this node holds, by name
	released map[string]time.Time // leases being released (zero) or released then, by name
	known    map[string]known     // other leases as last read, by name
	nodes    map[string]nodeState // the nodes table as last read, by name
	nodesAt  time.Time            // when it was read
	badAddr  map[string]string    // nodes whose address was refused, by name: that address (logged once)
	subs     []func(store.Change)
	stopping bool // Run has ended: no lease is taken any more
}

// holding is a lease this node holds.
type holding struct {
	epoch    int64
	deadline time.Time // this node's monotonic clock: acts until then
	since    time.Time // when this node recorded it
}

// known is a lease as last read from the store, for as long as it may be
// relied on.
type known struct {
	lease  store.Lease
	exists bool      // the lease has a row
	until  time.Time // forgotten from then on
}

// nodeState is a node as last read, and whether a request to it failed
// to connect since its heartbeat (suspect).
type nodeState struct {
	node    store.Node
	addr    *url.URL  // node.Address parsed; nil if it is not a valid base URL
	suspect time.Time // zero, or when a connection to it was refused
}

// New returns the Cluster of cfg. On a SQLite store it is Single.
func New(cfg Config) *Cluster {
	return newCluster(cfg, cfg.Store.Dialect() != "postgres")
}

// newCluster is New, single or not whatever the store (tests run
// clusters of several nodes on one SQLite file).
func newCluster(cfg Config, single bool) *Cluster {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = DefaultDeadAfter
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		cfg:       cfg,
		db:        cfg.Store,
		single:    single,
		log:       log,
		answer:    v1.Responder{Log: log},
		margin:    cfg.LeaseTTL / 5,
		renewal:   cfg.LeaseTTL / 5,
		serviceGC: serviceLeaseGC,
		started:   time.Now(),
		kick:      make(chan struct{}, 1),
		changes:   make(chan store.Change, changeQueue),
		held:      map[string]holding{},
		released:  map[string]time.Time{},
		known:     map[string]known{},
		nodes:     map[string]nodeState{},
		badAddr:   map[string]string{},
		token:     gateway.NewToken(cfg.Token),
	}
	if cfg.Leases != nil {
		c.db = leasesElsewhere{nodeStore: cfg.Store, LeaseStore: cfg.Leases}
	}
	c.incarnation = rand.Text()
	transport := &http.Transport{
		Proxy:                 nil, // servers reach each other directly
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // an invocation may run for its whole timeout
		ExpectContinueTimeout: time.Second,
	}
	c.client = &http.Client{
		Transport: transport,
		// An owner's redirect is its answer, never followed here.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.proxy = c.newProxy(transport)
	return c
}

// Single reports whether this is the one server of its store (SQLite):
// it owns everything and forwards nothing.
func (c *Cluster) Single() bool { return c.single }

// OnChange adds fn to the functions that get the store's changes (see
// the package comment). Call it before Run. fn runs on the dispatcher's
// goroutine, one change at a time: a slow fn delays the next changes,
// and beyond 256 of them they collapse into one Resync.
func (c *Cluster) OnChange(fn func(store.Change)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.subs = append(c.subs, fn)
}

// Run heartbeats and, unless Single, renews this node's leases, drops
// the ones it could not renew at their deadline, takes the services
// nobody owns, and hands the store's changes to the subscribers, until
// ctx ends. Then it stops acting on its leases, releases them, and
// deletes its node row. Store errors are logged and retried, never
// returned: Run returns nil once every goroutine it started has ended,
// or at once an error wrapping stratus.ErrInvalid for a Config without
// Node (or, unless Single, Address), or one wrapping stratus.ErrConflict
// when a live server has the node's name (see join).
func (c *Cluster) Run(ctx context.Context) error {
	if c.cfg.Node == "" || (!c.single && c.cfg.Address == "") {
		return fmt.Errorf("run cluster: a node needs a name and, on a shared store, an address: %w", stratus.ErrInvalid)
	}
	if err := c.join(ctx); err != nil {
		return err
	}
	if !c.joined.Load() {
		return nil // ctx ended first
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.heartbeatLoop(ctx) })
	if !c.single {
		wg.Go(func() { c.renewLoop(ctx) })
		wg.Go(func() { c.sweepLoop(ctx) })
		wg.Go(func() { c.dispatchLoop(ctx) })
		wg.Go(func() {
			if err := c.db.Listen(ctx, c.deliver); err != nil {
				c.log.Error("listen to the store's changes", "err", err)
			}
		})
		wg.Go(func() { c.resyncLoop(ctx) })
	}
	wg.Wait()
	c.stop()
	return nil
}

// Leave is the start of this server's stop, before it stops serving: it
// stops owning (no lease is taken or renewed from now on), frees its
// leases in the store and heartbeats "stopping", so that the other
// servers take its functions and services at once rather than after the
// stop (its invocations in flight still finish here: for that moment a
// function may have instances on two servers). Run still heartbeats until
// it ends, and then leaves the list.
func (c *Cluster) Leave(ctx context.Context) {
	c.mu.Lock()
	c.stopping = true
	clear(c.held)
	c.mu.Unlock()
	if c.single || c.evicted.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := c.db.ReleaseLeases(ctx, c.cfg.Node); err != nil {
		c.log.Warn("release leases while stopping (they expire by themselves)", "err", err)
	}
	if err := c.db.Heartbeat(ctx, c.self("stopping")); err != nil && !errors.Is(err, stratus.ErrConflict) {
		c.log.Warn("heartbeat while stopping", "err", err)
	}
}

// stop is Run's end: heartbeat "stopping", drop every lease here, then
// free them in the store, then delete the node's row.
// An evicted node (another incarnation has its name) touches nothing:
// the leases under its name and the row are the other's.
func (c *Cluster) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := c.db.Heartbeat(ctx, c.self("stopping")); errors.Is(err, stratus.ErrConflict) {
		c.evict()
	} else if err != nil {
		c.log.Warn("heartbeat while stopping", "err", err)
	}
	c.mu.Lock()
	c.stopping = true
	clear(c.held)
	c.mu.Unlock()
	if c.evicted.Load() {
		return
	}
	if !c.single {
		if err := c.db.ReleaseLeases(ctx, c.cfg.Node); err != nil {
			c.log.Warn("release leases while stopping (they expire by themselves)", "err", err)
		}
	}
	if err := c.db.DeleteNode(ctx, c.cfg.Node, c.incarnation); err != nil {
		c.log.Warn("delete node row while stopping", "err", err)
	}
}

// self is this node's row with state.
func (c *Cluster) self(state string) store.Node {
	n := store.Node{
		Name: c.cfg.Node, Address: c.cfg.Address, Region: c.cfg.Region, Version: c.cfg.Version,
		StartedAt: c.started, State: state, Incarnation: c.incarnation,
	}
	if c.cfg.Stats != nil {
		n.Instances, n.Replicas = c.cfg.Stats()
	}
	return n
}

// state is this node's state as its heartbeat says it.
func (c *Cluster) state() string {
	c.mu.RLock()
	stopping := c.stopping
	c.mu.RUnlock()
	if stopping {
		return "stopping"
	}
	if c.cfg.Health != nil {
		if reason := c.cfg.Health(); reason != "" {
			return "unready: " + reason
		}
	}
	return "ready"
}

// heartbeatLoop heartbeats now and every Heartbeat, then reads the
// nodes and, unless Single, runs the owner scan.
func (c *Cluster) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		err := c.beat(ctx)
		if ctx.Err() == nil {
			c.beats.record(err)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			c.log.Warn("heartbeat failed; retrying", "err", err)
			failing = true
		case err == nil && failing:
			c.log.Info("heartbeat works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// beat is one turn of the heartbeat loop.
func (c *Cluster) beat(ctx context.Context) error {
	// A beat slower than half the dead timeout is as good as none.
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.Heartbeat, c.cfg.DeadAfter/2))
	defer cancel()
	if err := c.db.Heartbeat(ctx, c.self(c.state())); err != nil {
		if errors.Is(err, stratus.ErrConflict) {
			c.evict()
		}
		return err
	}
	if _, err := c.readNodes(ctx); err != nil {
		return err
	}
	if c.single {
		return nil
	}
	return c.scanServices(ctx)
}

// Nodes returns every node of the cluster as the store has it, alive or
// dead, by name, with Self set on this one. Alive is measured on this
// server's clock: a heartbeat younger than DeadAfter.
func (c *Cluster) Nodes(ctx context.Context) ([]v1.Node, error) {
	ns, err := c.readNodes(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]v1.Node, 0, len(ns))
	for _, n := range ns {
		age := max(now.Sub(n.HeartbeatAt), 0)
		out = append(out, v1.Node{
			Name: n.Name, Address: n.Address, Region: n.Region, Version: n.Version, State: n.State,
			Alive:     age < c.cfg.DeadAfter,
			StartedAt: n.StartedAt, HeartbeatAt: n.HeartbeatAt, HeartbeatAgeSec: age.Seconds(),
			Instances: n.Instances, Replicas: n.Replicas,
			Self: n.Name == c.cfg.Node,
		})
	}
	return out, nil
}

// readNodes reads the nodes table and keeps it for routing.
func (c *Cluster) readNodes(ctx context.Context) ([]store.Node, error) {
	ns, err := c.db.Nodes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.nodes
	c.nodes = make(map[string]nodeState, len(ns))
	for _, n := range ns {
		st := nodeState{node: n}
		if u, err := url.Parse(n.Address); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil {
			st.addr = u
			delete(c.badAddr, n.Name)
		} else if c.badAddr[n.Name] != n.Address {
			c.badAddr[n.Name] = n.Address
			c.log.Error("node's address is no http or https URL with a host: it is taken for unreachable", "node", n.Name, "address", n.Address)
		}
		// A refused connection stays suspect until a later heartbeat.
		if o, ok := old[n.Name]; ok && o.suspect.After(n.HeartbeatAt) {
			st.suspect = o.suspect
		}
		c.nodes[n.Name] = st
	}
	c.nodesAt = time.Now()
	return ns, nil
}

// resyncLoop owes the subscribers a Resync every resyncEvery.
func (c *Cluster) resyncLoop(ctx context.Context) {
	t := time.NewTicker(resyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.deliver(store.Change{Resync: true})
		}
	}
}

// deliver queues ch for the subscribers; a full queue owes them a
// Resync instead.
func (c *Cluster) deliver(ch store.Change) {
	select {
	case c.changes <- ch:
	default:
		c.resyncDue.Store(true)
	}
}

// dispatchLoop hands the queued changes to the subscribers, in order.
func (c *Cluster) dispatchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ch := <-c.changes:
			c.publish(ch)
		}
		if c.resyncDue.Swap(false) {
			c.publish(store.Change{Resync: true})
		}
	}
}

func (c *Cluster) publish(ch store.Change) {
	c.mu.Lock()
	subs := c.subs
	c.mu.Unlock()
	for _, fn := range subs {
		fn(ch)
	}
}
