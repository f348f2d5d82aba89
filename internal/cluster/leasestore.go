package cluster

import (
	"context"
	"time"

	"github.com/stratus-run/stratus/internal/store"
)

// LeaseStore keeps the leases that give each workload one owner
// (Config.Leases): *store.Store's lease rows, or Lease objects of a
// Kubernetes cluster (internal/kube/lease). Every implementation keeps
// the store's semantics, which its methods' docs in internal/store
// describe: a lease ("function/NAME", "service/NAME") has one holder
// until it expires or is released; each new holding, including a node's
// taking back of its own lease after it expired or was released, gets
// an epoch above every earlier one (the fencing token) while the lease
// exists (DeleteLease removes it, with its epoch); acquiring is
// atomic (of many nodes that try at once, one gets it, and the others
// are told who); a released lease keeps its epoch and has no holder and
// a zero Expires. The methods block on I/O and honour ctx; an empty name
// or holder or a ttl <= 0 is refused with stratus.ErrInvalid.
type LeaseStore interface {
	// AcquireLease takes lease name for holder for ttl if it is free, or
	// extends it if holder holds it, and returns the lease as it stands
	// afterwards: Holder == holder when taken, else the holder's lease.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error)
	// RenewLeases extends by ttl every lease holder holds and has not let
	// expire, and returns them by name; one absent is lost. An error
	// means nothing is known of any of them.
	RenewLeases(ctx context.Context, holder string, ttl time.Duration) ([]store.Lease, error)
	// ReleaseLease frees lease name at once if holder holds it; else it
	// does nothing (no error). Idempotent.
	ReleaseLease(ctx context.Context, name, holder string) error
	// ReleaseLeases frees every lease holder holds. Idempotent.
	ReleaseLeases(ctx context.Context, holder string) error
	// DeleteLease removes lease name, its workload gone, if holder holds
	// it (expired or not) or nobody does (released or expired); one
	// another holder holds until its expiry is left alone, as is one that
	// does not exist (no error). Idempotent. A later holding of name
	// starts again at epoch 1.
	DeleteLease(ctx context.Context, name, holder string) error
	// Lease returns lease name, and whether it exists at all (it was
	// acquired at least once); a lease that does not is Lease{Name: name}.
	Lease(ctx context.Context, name string) (store.Lease, bool, error)
	// ServiceLeases returns the lease of every stored service, by the
	// service's name: Lease{Name: "service/NAME"} for one never taken;
	// leases of services no longer stored are left out.
	ServiceLeases(ctx context.Context) ([]store.Lease, error)
}

var _ LeaseStore = (*store.Store)(nil)

// nodeStore is what a Cluster uses of the store besides the leases.
type nodeStore interface {
	Heartbeat(ctx context.Context, n store.Node) error
	Nodes(ctx context.Context) ([]store.Node, error)
	ClaimNode(ctx context.Context, n, old store.Node) error
	DeleteNode(ctx context.Context, name, incarnation string) error
	Listen(ctx context.Context, fn func(store.Change)) error
}

// db is what a Cluster uses of the store and its leases; tests wrap it
// to make it fail.
type db interface {
	nodeStore
	LeaseStore
}

// leasesElsewhere is the store with its leases kept by a LeaseStore of
// their own (Config.Leases).
type leasesElsewhere struct {
	nodeStore
	LeaseStore
}
