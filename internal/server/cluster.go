package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/blobs"
	"github.com/stratus-run/stratus/internal/cluster"
	"github.com/stratus-run/stratus/internal/config"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/image"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/kube/lease"
	"github.com/stratus-run/stratus/internal/pool"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/store"
)

// node is this server's part in a cluster (see internal/cluster): on
// PostgreSQL one of several servers, on SQLite the only one. It hands
// the parts what they need of the cluster, each nil on one machine so
// that their hot paths pay nothing for it.
type node struct {
	cl    *cluster.Cluster
	multi bool         // a cluster of several servers (PostgreSQL)
	blobs *blobs.Store // code and images shared by the servers; nil on one machine
	log   *slog.Logger

	// Set by follow, once the parts exist.
	w     workloads
	ready func() string // why the server is not ready, "" when it is

	// ctx ends at close: it bounds what follows other servers' changes.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	// reloads holds the services being reloaded, true when one more
	// reload was asked for meanwhile.
	reloads map[string]bool
}

// workloads are the parts that keep state in memory which another
// server's changes make stale.
type workloads struct {
	fns    *functions.Service
	svcs   *services.Manager
	pools  *pool.Manager
	sched  *events.Scheduler
	topics *events.Topics
	// sync makes the records and log lines written so far durable.
	sync func(context.Context) error
}

// newNode makes this server's node. addr is the listener's address, the
// default of the URL the other servers reach this one at.
func newNode(ctx context.Context, cfg config.Config, st *store.Store, bus *events.Bus, kc *kube.Client, token, addr string, log *slog.Logger) (*node, error) {
	n := &node{multi: cfg.Cluster(), log: log.With("component", "cluster"), reloads: make(map[string]bool)}
	n.ctx, n.stop = context.WithCancel(context.WithoutCancel(ctx))
	if n.multi {
		obs, err := bus.MakeObjectStore(ctx, blobs.BucketConfig())
		if err != nil {
			return nil, fmt.Errorf("open blob store %s: %w", blobs.Bucket, err)
		}
		n.blobs = blobs.On(obs)
	}
	// On Kubernetes, ownership is kept in Lease objects.
	var leases cluster.LeaseStore
	if n.multi && kc != nil {
		leases = lease.New(kc, st)
	}
	n.cl = cluster.New(cluster.Config{
		Store: st, Leases: leases, Node: cfg.Node(), Address: cfg.AdvertiseURL(addr), Region: cfg.Region,
		Version: stratus.ServerVersion(), Token: token,
		Stats: n.stats, Health: func() string {
			if n.ready == nil {
				return "starting"
			}
			return n.ready()
		},
		Local: func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
			if n.w.fns == nil {
				return nil, stratus.ErrUnavailable
			}
			return n.w.fns.InvokeLocal(ctx, name, req)
		},
		Sync: func(ctx context.Context) error {
			if n.w.sync == nil {
				return stratus.ErrUnavailable
			}
			return n.w.sync(ctx)
		},
		Services: n.knowsService,
		Log:      n.log,
	})
	if n.multi && cfg.NatsCreds == "" && cfg.NatsNkey == "" && !strings.Contains(cfg.NatsURL, "@") {
		// What reaches the NATS cluster reaches every event, function's
		// code and image, and the sandboxes reach the host's addresses.
		log.Warn("the NATS cluster is reached without credentials: anything that can connect to it (a function or service can reach this host's non-loopback addresses) can read and change events, code and images; give it authorization and --nats-creds (see README: When one machine is not enough)")
	}
	if n.multi {
		log.Info("cluster node", "node", cfg.Node(), "address", cfg.AdvertiseURL(addr), "nats_replicas", bus.Replicas())
	}
	return n, nil
}

// imageBlobs is what the image store shares images through; nil on one
// machine.
func (n *node) imageBlobs() image.Blobs {
	if n.blobs == nil {
		return nil
	}
	return n.blobs
}

// codeBlobs is what the functions share their code through; nil on one
// machine.
func (n *node) codeBlobs() functions.CodeBlobs {
	if n.blobs == nil {
		return nil
	}
	return n.blobs
}

// route says where a function's invocations run: its owner's.
func (n *node) route() func(context.Context, string) (functions.Remote, error) {
	if !n.multi {
		return nil
	}
	return n.cl.Route
}

// ownsService and serviceOwner tell the service manager which services
// this server runs.
func (n *node) ownsService() func(string) bool {
	if !n.multi {
		return nil
	}
	return func(name string) bool { return n.cl.Owns("service", name) }
}

func (n *node) serviceOwner() func(string) string {
	if !n.multi {
		return nil
	}
	return func(name string) string { return n.cl.Owner("service", name) }
}

// functionExists tells the async queue, before it takes a function this
// server does not know as gone, whether the store has it (another server
// may have deployed it a moment ago). A qualified name is judged by its
// function: an unknown version or alias fails at its invocation.
func (n *node) functionExists(st *store.Store) func(context.Context, string) (bool, error) {
	if !n.multi {
		return nil
	}
	return func(ctx context.Context, fn string) (bool, error) {
		name, _, _ := strings.Cut(fn, ":")
		_, err := st.GetFunction(ctx, name)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, stratus.ErrNotFound):
			return false, nil
		}
		return false, err
	}
}

// internal is the endpoint forwarded invocations reach.
func (n *node) internal() http.Handler {
	if !n.multi {
		return nil
	}
	return n.cl.InternalHandler()
}

// knowsService says whether the service manager knows a service of this
// name (run here or elsewhere): the forwarder looks up owners only for
// those.
func (n *node) knowsService(name string) bool {
	if n.w.svcs == nil {
		return false
	}
	_, ok := n.w.svcs.Auth(name)
	return ok
}

// forwarder sends a service's requests to the server that runs it.
func (n *node) forwarder(domain string) func(http.Handler) http.Handler {
	if !n.multi {
		return nil
	}
	return func(h http.Handler) http.Handler { return n.cl.ServiceForwarder(domain, h) }
}

// stats are the node's instances and replicas for its heartbeats.
func (n *node) stats() (instances, replicas int) {
	if n.w.pools != nil {
		instances = n.w.pools.Total()
	}
	if n.w.svcs != nil {
		for _, s := range n.w.svcs.Stats() {
			replicas += s.ReadyReplicas
		}
	}
	return instances, replicas
}

// health is the readiness check of the node: in a cluster, whether its
// heartbeats reach the store.
func (n *node) health() error {
	if !n.multi {
		return nil
	}
	return n.cl.Health()
}

// follow hands the parts the changes other servers make (and, for
// services, this node's gains and losses of ownership), and the
// server's readiness to the heartbeats.
func (n *node) follow(w workloads, r *readiness) {
	n.w = w
	n.ready = func() string {
		var why []string
		for _, c := range r.Checks() {
			if c.Err != nil && c.Name != "cluster" {
				why = append(why, c.Name+": "+c.Err.Error())
			}
		}
		return strings.Join(why, "; ")
	}
	if !n.multi {
		return
	}
	n.cl.OnChange(n.apply)
}

// applyTimeout bounds what following one change may take: a service's
// reload waits for a deploy of it in progress.
const applyTimeout = 2 * time.Minute

// apply makes the parts agree with one change of the store. It runs on
// the cluster's dispatcher, one change at a time; a service's reload,
// which may wait for a deploy of it, runs beside it (reloadService).
func (n *node) apply(ch store.Change) {
	if n.ctx.Err() != nil {
		return // stopping
	}
	ctx, cancel := context.WithTimeout(n.ctx, applyTimeout)
	defer cancel()
	var err error
	switch {
	case ch.Resync:
		err = n.w.fns.ReloadAll(ctx)
		if e := n.w.svcs.ReloadAll(ctx); err == nil {
			err = e
		}
		n.w.sched.Reload()
		n.w.topics.Reload()
	default:
		switch ch.Table {
		case "functions", "versions", "aliases", "function_urls", "function_tags":
			err = n.w.fns.Reload(ctx, ch.Name)
		case "services", "revisions":
			n.reloadService(ch.Name)
		case "schedules":
			n.w.sched.Reload()
		case "topics", "subscriptions":
			n.w.topics.Reload()
		}
	}
	if err != nil {
		n.log.Warn("follow a change of another server", "table", ch.Table, "name", ch.Name, "resync", ch.Resync, "err", err)
	}
}

// reloadService reloads service name off the dispatcher: one reload per
// service at a time, and changes that arrive meanwhile make one more.
func (n *node) reloadService(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, running := n.reloads[name]; running {
		n.reloads[name] = true // once more when it ends
		return
	}
	n.reloads[name] = false
	n.wg.Go(func() {
		for {
			ctx, cancel := context.WithTimeout(n.ctx, applyTimeout)
			if err := n.w.svcs.Reload(ctx, name); err != nil && n.ctx.Err() == nil {
				n.log.Warn("follow a change of another server", "table", "services", "name", name, "err", err)
			}
			cancel()
			n.mu.Lock()
			again := n.reloads[name] && n.ctx.Err() == nil
			if !again {
				delete(n.reloads, name)
			} else {
				n.reloads[name] = false
			}
			n.mu.Unlock()
			if !again {
				return
			}
		}
	})
}

// close ends what follows other servers' changes and waits for it: once
// the server stopped serving, before its parts stop.
func (n *node) close() {
	n.stop()
	n.wg.Wait()
}
