// Package lease keeps the leases that give each function and service of
// a Stratus cluster one owner (internal/cluster's LeaseStore) as
// coordination.k8s.io/v1 Lease objects in the namespace of a kube.Client,
// with the semantics of the store's lease rows (internal/store/leases.go).
//
// # Objects
//
// A lease "function/NAME" or "service/NAME" is the Lease object
// kube.Name("stratus", KIND, NAME) (a DNS-1123 label; odd names get a
// hash), labelled app.kubernetes.io/managed-by=stratus and
// stratus.run/function or stratus.run/service = NAME (or its kube.Name
// when NAME is no label value), with the lease's name in the annotation
// stratus.run/lease. Its spec says:
//
//   - holderIdentity: the holding node; absent once released.
//   - leaseDurationSeconds: the TTL of the last acquisition or renewal,
//     rounded up to whole seconds (a TTL under a second lasts one second):
//     a lease lasts at least as long as asked, at most a second longer.
//     The cluster computes its owners' deadlines from its own TTL, so a
//     rounded lease only makes others wait longer, never act sooner.
//   - acquireTime: when this holding began; renewTime: its last renewal.
//   - leaseTransitions: the epoch, the fencing token. It grows by one at
//     each new holding (1 for the first), including a node's taking back
//     of its own lease after it expired or was released, and never goes
//     back while the object lives: a release only clears the holder, and
//     the object is deleted only once its workload is gone (DeleteLease:
//     by its holder, or once it is free). A later holding of the name
//     then starts again at epoch 1, as in the store; harmless, since a
//     node serves a forwarded request only while it holds the lease.
//     Deleting a Lease object by hand may take one a server holds: don't.
//
// The holder is in the label stratus.run/node as well (kept in step with
// holderIdentity, removed at release), so that a node's renewal lists
// only its own leases.
//
// # Concurrency and clocks
//
// Every write is a Create, or an Update with the resourceVersion read
// just before: of servers that write one Lease at once, one succeeds and
// the others get a conflict, read the object again and decide anew (so an
// acquisition that loses learns the winner). A lease expires at renewTime
// plus leaseDurationSeconds; every server judges that by its own clock
// against a renewTime that the holder wrote by its own. As with
// Kubernetes' own Lease-based leader election (whose expiry also rests on
// the candidates' clocks), this assumes the servers' clocks agree: within
// internal/cluster's margin (a fifth of the TTL, 2 s by default), an owner
// stops acting before any other server can take its lease. Unlike the
// store on PostgreSQL there is no one clock here: keep the nodes on NTP.
package lease

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/kube"
	"github.com/stratus-run/stratus/internal/store"
)

// AnnotationLease holds the name of the lease ("function/NAME") a Lease
// object keeps.
const AnnotationLease = "stratus.run/lease"

// Kinds of lease, the first part of a lease's name.
const (
	kindFunction = "function"
	kindService  = "service"
)

const (
	// maxAttempts bounds the reads and writes of one lease in one call:
	// each conflict means another writer (another server, or this one's
	// renewal) wrote it meanwhile.
	maxAttempts = 16
	// conflictPause bounds the random pause after a conflict, times the
	// attempt's number: writers that keep meeting fall out of step.
	conflictPause = 2 * time.Millisecond
	// parallel bounds the Lease updates in flight of one RenewLeases or
	// ReleaseLeases.
	parallel = 8
)

// Services lists the stored services, by name (*store.Store does).
type Services interface {
	ListServices(ctx context.Context) ([]stratus.Service, error)
}

// Store keeps leases as Lease objects. Its methods are safe for
// concurrent use, block on the API server and honour ctx.
type Store struct {
	leases   coordinationclient.LeaseInterface
	services Services
	// now is the clock that judges expiry and stamps renewals; tests step
	// it.
	now func() time.Time
}

// New returns the leases of the Lease objects in c's namespace;
// services lists the stored services for ServiceLeases.
func New(c *kube.Client, services Services) *Store {
	return &Store{
		leases:   c.Interface.CoordinationV1().Leases(c.Namespace),
		services: services,
		now:      time.Now,
	}
}

// AcquireLease takes lease name for holder for ttl when it is free (no
// object, no holder, or expired: renewTime + duration <= now), or extends
// it when holder holds it. A new holding gets the epoch after the last one
// (1 for a new object); an extension keeps it; taking back one's own
// expired lease is a new holding. It returns the lease as it stands
// afterwards: Holder == holder when acquired, else the holder's lease,
// unchanged. Of servers that try at once, one gets it. An empty holder, a
// ttl <= 0 (or above what leaseDurationSeconds holds) or a name that is
// not "function/NAME" or "service/NAME" is refused (stratus.ErrInvalid);
// a lease that keeps changing under it, stratus.ErrUnavailable.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (store.Lease, error) {
	secs, err := durationSeconds(ttl)
	if err != nil || holder == "" {
		return store.Lease{}, fmt.Errorf("acquire lease %q for %q for %v: %w", name, holder, ttl, stratus.ErrInvalid)
	}
	ref, err := parseName(name)
	if err != nil {
		return store.Lease{}, fmt.Errorf("acquire lease: %w", err)
	}
	for attempt := range maxAttempts {
		cur, err := s.leases.Get(ctx, ref.object, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			now := s.clock()
			obj := ref.newObject()
			hold(obj, holder, secs, now, 1)
			created, err := s.leases.Create(ctx, obj, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue // another server made it first: read it
			}
			if err != nil {
				return store.Lease{}, fmt.Errorf("acquire lease %q: create Lease %s: %w", name, ref.object, err)
			}
			return ref.lease(created)
		case err != nil:
			return store.Lease{}, fmt.Errorf("acquire lease %q: get Lease %s: %w", name, ref.object, err)
		}
		if err := ref.check(cur); err != nil {
			return store.Lease{}, fmt.Errorf("acquire lease: %w", err)
		}
		now := s.clock()
		l := toLease(name, cur)
		epoch, take := acquired(l, holder, now)
		if !take {
			return l, nil
		}
		obj := cur.DeepCopy()
		hold(obj, holder, secs, now, epoch)
		updated, err := s.leases.Update(ctx, obj, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if err := pause(ctx, attempt); err != nil {
				return store.Lease{}, fmt.Errorf("acquire lease %q: %w", name, err)
			}
			continue // written meanwhile: decide again
		}
		if err != nil {
			return store.Lease{}, fmt.Errorf("acquire lease %q: update Lease %s: %w", name, ref.object, err)
		}
		return ref.lease(updated)
	}
	return store.Lease{}, fmt.Errorf("acquire lease %q: Lease %s changed %d times in a row: %w", name, ref.object, maxAttempts, stratus.ErrUnavailable)
}

// RenewLeases extends by ttl every lease holder holds and has not let
// expire, and returns them by name. A lease absent from the answer is
// lost: it expired (another server may have it now) or was released; an
// expired lease is never revived here, only taken anew (AcquireLease,
// with a new epoch). The Leases are updated in parallel (at most 8 at a
// time); if any update fails other than by losing the lease, RenewLeases
// returns an error and no leases: the caller then knows nothing new of
// any of them and keeps to its deadlines.
func (s *Store) RenewLeases(ctx context.Context, holder string, ttl time.Duration) ([]store.Lease, error) {
	secs, err := durationSeconds(ttl)
	if err != nil || holder == "" {
		return nil, fmt.Errorf("renew leases of %q for %v: %w", holder, ttl, stratus.ErrInvalid)
	}
	objs, err := s.heldBy(ctx, holder)
	if err != nil {
		return nil, fmt.Errorf("renew leases of %q: %w", holder, err)
	}
	var (
		mu   sync.Mutex
		out  []store.Lease
		errs []error
	)
	s.each(objs, func(obj *coordinationv1.Lease) {
		l, ok, err := s.renew(ctx, obj, holder, secs)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs = append(errs, err)
		case ok:
			out = append(out, l)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("renew leases of %q: %w", holder, err)
	}
	slices.SortFunc(out, func(a, b store.Lease) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// renew extends obj (as listed) for holder if holder still holds it and
// it has not expired; ok is false if not.
func (s *Store) renew(ctx context.Context, obj *coordinationv1.Lease, holder string, secs int32) (l store.Lease, ok bool, err error) {
	name := obj.Annotations[AnnotationLease]
	ref, err := parseName(name)
	if err != nil || ref.check(obj) != nil {
		return store.Lease{}, false, nil // not a lease of ours: no holding to renew
	}
	for attempt := range maxAttempts {
		now := s.clock()
		if l := toLease(name, obj); l.Holder != holder || !l.Held(now) {
			return store.Lease{}, false, nil
		}
		next := obj.DeepCopy()
		next.Spec.RenewTime = &metav1.MicroTime{Time: now}
		next.Spec.LeaseDurationSeconds = &secs
		updated, err := s.leases.Update(ctx, next, metav1.UpdateOptions{})
		switch {
		case err == nil:
			l, err := ref.lease(updated)
			return l, err == nil, err
		case apierrors.IsNotFound(err):
			return store.Lease{}, false, nil
		case !apierrors.IsConflict(err):
			return store.Lease{}, false, fmt.Errorf("update Lease %s: %w", obj.Name, err)
		}
		// Written meanwhile (an acquisition of the same holder, or a
		// taker): read it again.
		if err := pause(ctx, attempt); err != nil {
			return store.Lease{}, false, err
		}
		if obj, err = s.leases.Get(ctx, obj.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return store.Lease{}, false, nil
		} else if err != nil {
			return store.Lease{}, false, fmt.Errorf("get Lease %s: %w", ref.object, err)
		}
	}
	return store.Lease{}, false, fmt.Errorf("Lease %s changed %d times in a row: %w", ref.object, maxAttempts, stratus.ErrUnavailable)
}

// ReleaseLease frees lease name if holder holds it (expired or not), at
// once: another server may take it without waiting for it to expire. The
// object stays, with its epoch. A lease holder does not hold is left
// alone, and is no error; a name that is no lease's is refused
// (stratus.ErrInvalid).
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	ref, err := parseName(name)
	if err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	obj, err := s.leases.Get(ctx, ref.object, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release lease %q: get Lease %s: %w", name, ref.object, err)
	}
	if ref.check(obj) != nil {
		return nil // another lease's object: not holder's
	}
	if err := s.release(ctx, obj, holder); err != nil {
		return fmt.Errorf("release lease %q: %w", name, err)
	}
	return nil
}

// ReleaseLeases frees every lease holder holds (see ReleaseLease).
func (s *Store) ReleaseLeases(ctx context.Context, holder string) error {
	if holder == "" {
		return fmt.Errorf("release leases: holder is empty: %w", stratus.ErrInvalid)
	}
	objs, err := s.heldBy(ctx, holder)
	if err != nil {
		return fmt.Errorf("release leases of %q: %w", holder, err)
	}
	var (
		mu   sync.Mutex
		errs []error
	)
	s.each(objs, func(obj *coordinationv1.Lease) {
		if err := s.release(ctx, obj, holder); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release leases of %q: %w", holder, err)
	}
	return nil
}

// release clears obj's holder if it is holder, reading it again after a
// conflict.
func (s *Store) release(ctx context.Context, obj *coordinationv1.Lease, holder string) error {
	for attempt := range maxAttempts {
		if obj.Spec.HolderIdentity == nil || *obj.Spec.HolderIdentity != holder {
			return nil
		}
		next := obj.DeepCopy()
		next.Spec.HolderIdentity = nil
		delete(next.Labels, kube.LabelNode)
		_, err := s.leases.Update(ctx, next, metav1.UpdateOptions{})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("update Lease %s: %w", obj.Name, err)
		}
		if err := pause(ctx, attempt); err != nil {
			return err
		}
		if obj, err = s.leases.Get(ctx, obj.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("get Lease %s: %w", obj.Name, err)
		}
	}
	return fmt.Errorf("Lease %s changed %d times in a row: %w", obj.Name, maxAttempts, stratus.ErrUnavailable)
}

// DeleteLease deletes the object of lease name, whose workload is gone,
// if holder holds it (expired or not) or nobody does (released, or
// expired by this Store's clock): never one that another holder holds
// until its expiry, which is left alone, as is a lease with no object
// (neither is an error). The delete is conditional on the object as
// read: one that another server acquired meanwhile is read again and
// decided anew. Its epoch goes with it (see the package doc). An empty
// holder or a name that is no lease's is refused (stratus.ErrInvalid); a
// lease that keeps changing under it, stratus.ErrUnavailable.
func (s *Store) DeleteLease(ctx context.Context, name, holder string) error {
	ref, err := parseName(name)
	if err != nil {
		return fmt.Errorf("delete lease: %w", err)
	}
	if holder == "" {
		return fmt.Errorf("delete lease %q: holder is empty: %w", name, stratus.ErrInvalid)
	}
	for attempt := range maxAttempts {
		obj, err := s.leases.Get(ctx, ref.object, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete lease %q: get Lease %s: %w", name, ref.object, err)
		}
		l, err := ref.lease(obj)
		if err != nil {
			return nil // another lease's object: not name's to delete
		}
		if l.Held(s.clock()) && l.Holder != holder {
			return nil
		}
		rv, uid := obj.ResourceVersion, obj.UID
		err = s.leases.Delete(ctx, ref.object, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv, UID: &uid}})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("delete lease %q: delete Lease %s: %w", name, ref.object, err)
		}
		if err := pause(ctx, attempt); err != nil {
			return err
		}
	}
	return fmt.Errorf("delete lease %q: Lease %s changed %d times in a row: %w", name, ref.object, maxAttempts, stratus.ErrUnavailable)
}

// Lease returns lease name as its object has it, and whether it has an
// object at all (it has been acquired at least once). The lease may be
// expired or released: see store.Lease.Held.
func (s *Store) Lease(ctx context.Context, name string) (store.Lease, bool, error) {
	ref, err := parseName(name)
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("get lease: %w", err)
	}
	obj, err := s.leases.Get(ctx, ref.object, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return store.Lease{Name: name}, false, nil
	}
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("get lease %q: get Lease %s: %w", name, ref.object, err)
	}
	l, err := ref.lease(obj)
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("get lease: %w", err)
	}
	return l, true, nil
}

// ServiceLeases returns the lease of every service the Services list
// has, by name: its lease "service/NAME" as it stands, or one with no
// holder and epoch 0 for a service whose lease was never taken. Leases
// of services that are gone are not in it. It lists the services' Lease
// objects once.
func (s *Store) ServiceLeases(ctx context.Context) ([]store.Lease, error) {
	svcs, err := s.services.ListServices(ctx)
	if err != nil {
		return nil, fmt.Errorf("list service leases: %w", err)
	}
	sel := kube.LabelManaged + "=" + kube.Managed + "," + kube.LabelService // the label exists
	list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("list service leases: list Leases: %w", err)
	}
	byName := make(map[string]store.Lease, len(list.Items))
	for i := range list.Items {
		obj := &list.Items[i]
		name := obj.Annotations[AnnotationLease]
		if ref, err := parseName(name); err == nil && ref.check(obj) == nil {
			byName[name] = toLease(name, obj)
		}
	}
	out := make([]store.Lease, 0, len(svcs))
	for _, svc := range svcs {
		name := kindService + "/" + svc.Name
		l, ok := byName[name]
		if !ok {
			l = store.Lease{Name: name}
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b store.Lease) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// heldBy lists the Lease objects labelled with holder (a lease it holds
// or held: the caller checks holderIdentity).
func (s *Store) heldBy(ctx context.Context, holder string) ([]*coordinationv1.Lease, error) {
	sel := labels.Set{kube.LabelManaged: kube.Managed, kube.LabelNode: labelValue(holder)}.AsSelector()
	list, err := s.leases.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list Leases: %w", err)
	}
	out := make([]*coordinationv1.Lease, 0, len(list.Items))
	for i := range list.Items {
		if h := list.Items[i].Spec.HolderIdentity; h != nil && *h == holder {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

// each calls fn for every object, at most parallel at a time, and
// returns once every call has.
func (s *Store) each(objs []*coordinationv1.Lease, fn func(*coordinationv1.Lease)) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, obj := range objs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			fn(obj)
		})
	}
	wg.Wait()
}

// pause waits a random while of up to attempt+1 conflictPauses after a
// conflict, or until ctx ends.
func pause(ctx context.Context, attempt int) error {
	t := time.NewTimer(rand.N(time.Duration(attempt+1) * conflictPause))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// clock is the time now, as a Lease keeps it (microseconds, UTC).
func (s *Store) clock() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// acquired decides holder's acquisition at now of lease l (as stored):
// take is false while another holds it; else epoch is the holding's: l's
// for an extension of holder's own unexpired holding, the next one for a
// new holding.
func acquired(l store.Lease, holder string, now time.Time) (epoch int64, take bool) {
	switch {
	case l.Held(now) && l.Holder != holder:
		return l.Epoch, false
	case l.Held(now):
		return l.Epoch, true
	default:
		return l.Epoch + 1, true
	}
}

// hold makes obj's spec and labels say that holder holds it from now on
// for secs at epoch. A new holding (another epoch) starts its
// acquireTime now; an extension keeps it. (leaseTransitions is an int32:
// epochs stop growing after 2^31-1 holdings, decades of a change a
// second.)
func hold(obj *coordinationv1.Lease, holder string, secs int32, now time.Time, epoch int64) {
	transitions := int32(min(epoch, math.MaxInt32))
	t := metav1.MicroTime{Time: now}
	if obj.Spec.AcquireTime == nil || obj.Spec.LeaseTransitions == nil || *obj.Spec.LeaseTransitions != transitions {
		obj.Spec.AcquireTime = &t
	}
	obj.Spec.HolderIdentity = &holder
	obj.Spec.LeaseDurationSeconds = &secs
	obj.Spec.RenewTime = &t
	obj.Spec.LeaseTransitions = &transitions
	if obj.Labels == nil {
		obj.Labels = map[string]string{}
	}
	obj.Labels[kube.LabelNode] = labelValue(holder)
}

// toLease is the lease name as obj holds it. A lease with no holder (or
// no renewal time) has a zero Expires, as a released row of the store.
func toLease(name string, obj *coordinationv1.Lease) store.Lease {
	l := store.Lease{Name: name}
	if obj.Spec.LeaseTransitions != nil {
		l.Epoch = int64(*obj.Spec.LeaseTransitions)
	}
	if h := obj.Spec.HolderIdentity; h != nil && *h != "" && obj.Spec.RenewTime != nil {
		l.Holder = *h
		var secs int32
		if obj.Spec.LeaseDurationSeconds != nil {
			secs = *obj.Spec.LeaseDurationSeconds
		}
		l.Expires = obj.Spec.RenewTime.UTC().Add(time.Duration(secs) * time.Second)
	}
	return l
}

// ref is a lease's name and what its object is called and labelled.
type ref struct {
	name      string // "function/NAME"
	kindLabel string // kube.LabelFunction or kube.LabelService
	workload  string // NAME
	object    string // the Lease object's name
}

// parseName checks that name is "function/NAME" or "service/NAME", with
// a NAME, and returns its ref.
func parseName(name string) (ref, error) {
	kind, workload, _ := strings.Cut(name, "/")
	r := ref{name: name, workload: workload, object: objectName(kind, workload)}
	switch kind {
	case kindFunction:
		r.kindLabel = kube.LabelFunction
	case kindService:
		r.kindLabel = kube.LabelService
	}
	if r.kindLabel == "" || workload == "" {
		return ref{}, fmt.Errorf("lease name %q: want function/NAME or service/NAME: %w", name, stratus.ErrInvalid)
	}
	return r, nil
}

// objectName is the name of the Lease object of workload name of kind.
func objectName(kind, name string) string {
	return kube.Name("stratus", kind, name)
}

// newObject is the Lease object of r, without a spec.
func (r ref) newObject() *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{
		Name: r.object,
		Labels: map[string]string{
			kube.LabelManaged: kube.Managed,
			r.kindLabel:       labelValue(r.workload),
		},
		Annotations: map[string]string{AnnotationLease: r.name},
	}}
}

// check makes sure obj is r's: an object of the same name that keeps
// another lease (names cut and hashed alike) or that Stratus did not make
// is refused (stratus.ErrConflict).
func (r ref) check(obj *coordinationv1.Lease) error {
	if got := obj.Annotations[AnnotationLease]; got != r.name {
		return fmt.Errorf("lease %q: Lease %s keeps %q (annotation %s): rename or delete it: %w", r.name, obj.Name, got, AnnotationLease, stratus.ErrConflict)
	}
	return nil
}

// lease is r's lease as obj holds it, checked to be r's.
func (r ref) lease(obj *coordinationv1.Lease) (store.Lease, error) {
	if err := r.check(obj); err != nil {
		return store.Lease{}, err
	}
	return toLease(r.name, obj), nil
}

// durationSeconds is ttl in whole seconds, rounded up (a TTL under a
// second is one second), for leaseDurationSeconds; a ttl <= 0 or one that
// does not fit is refused.
func durationSeconds(ttl time.Duration) (int32, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("lease ttl %v: want more than 0: %w", ttl, stratus.ErrInvalid)
	}
	secs := (ttl + time.Second - 1) / time.Second
	if secs > math.MaxInt32 {
		return 0, fmt.Errorf("lease ttl %v: want at most %d s: %w", ttl, math.MaxInt32, stratus.ErrInvalid)
	}
	return int32(secs), nil
}

// labelValue is s if it is a label value, else kube.Name(s) (a DNS-1123
// label, which is one).
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	return kube.Name(s)
}
