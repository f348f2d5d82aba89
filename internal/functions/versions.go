package functions

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
)

// Published versions and aliases, and the invocation path that resolves
// a qualified name ("NAME", "NAME:N", "NAME:ALIAS") to the copy to run.
//
// A published version's pool is made at its first invocation
// (ensurePool) and removed with the version or the function. The
// in-memory maps (heads, published, aliases, pooled) change under s.mu
// only after the store committed, and only under deployMu, so that they
// follow the store's order; Resolve reads them under s.mu's read lock.
// The pools' own lock is taken under s.mu (ensurePool, DeleteVersion),
// never the other way round.

// Publish publishes the head ($LATEST) of function name as its next
// version (1, 2, ... per function, a number never given twice) with
// description; when nothing changed since the newest published version
// (same code and configuration) it returns that version instead. An
// unknown function is an error wrapping stratus.ErrNotFound.
func (s *Service) Publish(ctx context.Context, name, description string) (*stratus.Version, error) {
	return s.PublishIf(ctx, name, description, nil)
}

// PublishIf is Publish with a precondition: cond, when set, is called
// with the head of function name while no other deploy, publish or
// remove runs, so the head it accepts is the one published; an error of
// cond is returned as it is and changes nothing. cond must be quick and
// must not call the Service.
func (s *Service) PublishIf(ctx context.Context, name, description string, cond func(head *stratus.Version) error) (*stratus.Version, error) {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if cond != nil {
		s.mu.RLock()
		head := s.heads[name]
		s.mu.RUnlock()
		if head == nil {
			return nil, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound)
		}
		if err := cond(head); err != nil {
			return nil, err
		}
	}
	v, err := s.st.PublishVersion(ctx, name, description)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.published[name] == nil {
		s.published[name] = make(map[int]*stratus.Version)
	}
	if _, ok := s.published[name][v.Number]; !ok {
		c := *v
		s.published[name][v.Number] = &c
	}
	s.mu.Unlock()
	return v, nil
}

// PublishedVersions returns the published versions of function name by
// ascending number; an unknown function is an error wrapping
// stratus.ErrNotFound.
func (s *Service) PublishedVersions(ctx context.Context, name string) ([]stratus.Version, error) {
	return s.st.ListPublished(ctx, name)
}

// PublishedVersion returns published version n of function name, or an
// error wrapping stratus.ErrNotFound.
func (s *Service) PublishedVersion(ctx context.Context, name string, n int) (*stratus.Version, error) {
	return s.st.GetPublished(ctx, name, n)
}

// DeleteVersion deletes published version n of function name and stops
// its instances ($LATEST keeps running when it is the same snapshot). A
// version an alias points at or weighs is an error wrapping
// stratus.ErrConflict naming the alias; an unknown function or version
// one wrapping stratus.ErrNotFound.
func (s *Service) DeleteVersion(ctx context.Context, name string, n int) error {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	snap, err := s.st.DeleteVersion(ctx, name, n)
	if err != nil {
		return err
	}
	key := (&stratus.Version{Function: name, Qualifier: strconv.Itoa(n)}).PoolKey()
	s.mu.Lock()
	delete(s.published[name], n)
	var left *stratus.Version
	if s.pooled[key] {
		delete(s.pooled, key)
		s.pools.RemoveVersion(key)
		left = s.published[name][n]
	}
	s.mu.Unlock()
	if left != nil {
		s.leave(left, true) // its pool's busy instances finish
	}
	// The snapshot stays, unpublished, while the version's busy instances
	// (which RemoveVersion lets finish) may still run its code; pruning
	// removes it later.
	k := versionKey{name, snap}
	s.retired[k] = s.now()
	s.unpublished[k] = true
	if s.pruneVersions(ctx, name) {
		s.gcCode(ctx)
	}
	return nil
}

// PutAlias creates alias a (create) or updates it, with a fresh
// RevisionID, and returns it as stored. Bad input is an error wrapping
// stratus.ErrInvalid; creating an alias that exists one wrapping
// stratus.ErrConflict; updating a missing alias, or naming a missing
// function or version, one wrapping stratus.ErrNotFound; revisionID,
// when set, must be the alias's current one (else stratus.ErrConflict:
// the precondition failed).
func (s *Service) PutAlias(ctx context.Context, a stratus.Alias, create bool, revisionID string) (*stratus.Alias, error) {
	if err := stratus.ValidName(a.Function); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	a.Weights = maps.Clone(a.Weights)
	if len(a.Weights) == 0 {
		a.Weights = nil
	}
	a.RevisionID = newRevisionID()
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if err := s.st.PutAlias(ctx, a, create, revisionID); err != nil {
		return nil, err
	}
	c := a
	s.mu.Lock()
	if s.aliases[a.Function] == nil {
		s.aliases[a.Function] = make(map[string]*stratus.Alias)
	}
	s.aliases[a.Function][a.Name] = &c
	s.mu.Unlock()
	return &a, nil
}

// Alias returns alias alias of function name, or an error wrapping
// stratus.ErrNotFound.
func (s *Service) Alias(ctx context.Context, name, alias string) (*stratus.Alias, error) {
	return s.st.GetAlias(ctx, name, alias)
}

// Aliases returns the aliases of function name by name; an unknown
// function is an error wrapping stratus.ErrNotFound.
func (s *Service) Aliases(ctx context.Context, name string) ([]stratus.Alias, error) {
	return s.st.ListAliases(ctx, name)
}

// DeleteAlias deletes alias alias of function name, or returns an error
// wrapping stratus.ErrNotFound.
func (s *Service) DeleteAlias(ctx context.Context, name, alias string) error {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if err := s.st.DeleteAlias(ctx, name, alias); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.aliases[name], alias)
	s.mu.Unlock()
	return nil
}

// Resolve returns the copy of a function that an invocation of ref runs,
// from memory: the head for $LATEST (Qualifier LatestVersion), published
// version N (Qualifier "N"), or for an alias one of its versions, picked
// at random by the alias's weights. An unknown function, version or
// alias is an error wrapping stratus.ErrNotFound. The caller must not
// change the Version.
func (s *Service) Resolve(ref stratus.FunctionRef) (*stratus.Version, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.resolveLocked(ref, true)
}

// HeadOf is Resolve without the draw: for an alias, the version it
// points at. It reports false where Resolve fails.
func (s *Service) HeadOf(ref stratus.FunctionRef) (*stratus.Version, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.resolveLocked(ref, false)
	return v, err == nil
}

// resolveLocked is Resolve, drawing among an alias's versions when draw
// is set. s.mu is held.
func (s *Service) resolveLocked(ref stratus.FunctionRef, draw bool) (*stratus.Version, error) {
	if _, ok := s.heads[ref.Name]; !ok {
		return nil, fmt.Errorf("function %q: %w", ref.Name, stratus.ErrNotFound)
	}
	q := ref.Qualifier
	if alias, ok := ref.Alias(); ok {
		a := s.aliases[ref.Name][alias]
		if a == nil {
			return nil, fmt.Errorf("function %q has no alias %q: %w", ref.Name, alias, stratus.ErrNotFound)
		}
		q = a.Version
		if draw && len(a.Weights) > 0 {
			r := rand.Float64()
			for v, w := range a.Weights {
				if r < w {
					q = v
					break
				}
				r -= w
			}
		}
	}
	return s.versionLocked(ref.Name, q)
}

// versionLocked is the copy of function name that qualifier q (empty,
// LatestVersion or a number) runs. s.mu is held.
func (s *Service) versionLocked(name, q string) (*stratus.Version, error) {
	r := stratus.FunctionRef{Name: name, Qualifier: q}
	if r.Latest() {
		return s.heads[name], nil
	}
	n, ok := r.Version()
	if !ok {
		return nil, fmt.Errorf("function %q: qualifier %q: %w", name, q, stratus.ErrNotFound)
	}
	v := s.published[name][n]
	if v == nil {
		return nil, fmt.Errorf("function %q has no version %d: %w", name, n, stratus.ErrNotFound)
	}
	return v, nil
}

// Invoke runs req on function name: "NAME" or "NAME:QUALIFIER" (see
// stratus.ParseFunctionRef). It resolves the qualifier (Resolve) here,
// so an unknown function, version or alias fails at once; then, when
// Config.Route gives a Remote for the function, the Remote runs req
// (with name as given) and its answer is returned as it is. Otherwise
// Invoke makes the pool of a published version at its first use and
// invokes there; the Response's Record.Qualifier says what ran. Errors
// are Resolve's (stratus.ErrNotFound), stratus.ErrInvalid for a
// malformed name, Route's, stratus.ErrUnavailable when the version's
// code could not be had here, and the pools' (see pool.Manager.Invoke).
func (s *Service) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	return s.invoke(ctx, name, req, s.route)
}

// InvokeLocal is Invoke that runs req on this server whatever
// Config.Route says: the side of a server that another forwarded an
// invocation to. The forwarding server resolved name from its own
// memory, which may be ahead of this one's (its change notification has
// not arrived here yet): a function, version or alias unknown here is
// reloaded from the store (Reload) once before the invocation fails
// with stratus.ErrNotFound.
func (s *Service) InvokeLocal(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	ref, v, missing, err := s.lookup(name)
	if errors.Is(err, stratus.ErrNotFound) {
		rerr := s.Reload(ctx, ref.Name)
		ref, v, missing, err = s.lookup(name)
		if errors.Is(err, stratus.ErrNotFound) && rerr != nil {
			err = rerr
		}
	}
	if err != nil {
		return nil, err
	}
	return s.run(ctx, ref, v, missing, req)
}

// invoke is Invoke, asking route (when set) where the function runs.
func (s *Service) invoke(ctx context.Context, name string, req stratus.Request, route func(context.Context, string) (Remote, error)) (*stratus.Response, error) {
	ref, v, missing, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if route != nil {
		remote, err := route(ctx, ref.Name)
		if err != nil {
			return nil, err
		}
		if remote != nil {
			return remote(ctx, name, req)
		}
	}
	return s.run(ctx, ref, v, missing, req)
}

// lookup parses name ("NAME" or "NAME:QUALIFIER") and resolves it from
// memory (Resolve), with why the version's code is missing here (nil
// when it is not). ref is set whenever name parses.
func (s *Service) lookup(name string) (ref stratus.FunctionRef, v *stratus.Version, missing, err error) {
	ref = stratus.FunctionRef{Name: name}
	if strings.Contains(name, ":") {
		if ref, err = stratus.ParseFunctionRef(name); err != nil {
			return ref, nil, nil, err
		}
	}
	s.mu.RLock()
	v, err = s.resolveLocked(ref, true)
	if err == nil {
		missing = s.missingErr(v)
	}
	s.mu.RUnlock()
	return ref, v, missing, err
}

// run invokes v, which ref resolved to, here: in the pool of a published
// version (made at its first use), or in the head's unless its code is
// missing.
func (s *Service) run(ctx context.Context, ref stratus.FunctionRef, v *stratus.Version, missing error, req stratus.Request) (*stratus.Response, error) {
	key := v.PoolKey()
	if key != v.Function {
		if err := s.ensurePool(ctx, v, key); err != nil {
			return nil, err
		}
	} else if missing != nil {
		return nil, missing
	}
	return s.pools.InvokeAs(ctx, key, ref.Qualifier, req)
}

// ensurePool hands published version v to the pools the first time it
// is invoked, its code here first, unless it was deleted meanwhile (then
// ErrNotFound).
func (s *Service) ensurePool(ctx context.Context, v *stratus.Version, key string) error {
	s.mu.RLock()
	ok := s.pooled[key]
	s.mu.RUnlock()
	if ok {
		return nil
	}
	if v.Config.Image == "" {
		if err := s.ensureCode(ctx, v.CodeSHA); err != nil {
			return fmt.Errorf("function %q version %d: its code %s is not on this server (%v): %w", v.Function, v.Number, v.CodeSHA, err, stratus.ErrUnavailable)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pooled[key] {
		return nil
	}
	if s.published[v.Function][v.Number] != v {
		return fmt.Errorf("function %q has no version %d: %w", v.Function, v.Number, stratus.ErrNotFound)
	}
	s.pools.Deploy(v)
	s.pooled[key] = true
	return nil
}

// Configure makes a new $LATEST of function name with the head's code
// and its configuration as change leaves it, checked as a deploy's (the
// Lambda API's UpdateFunctionConfiguration, concurrency and event-invoke
// configuration). change runs while no other deploy, publish or remove
// runs: the head that Head returns then is the one changed, so change
// may check a precondition on it. An error of change is returned as it
// is; an unknown function is an error wrapping stratus.ErrNotFound, a
// bad configuration one wrapping stratus.ErrInvalid; either changes
// nothing.
func (s *Service) Configure(ctx context.Context, name string, change func(*stratus.FunctionConfig) error) (*stratus.Function, error) {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	f, err := s.st.GetFunction(ctx, name)
	if err != nil {
		return nil, err
	}
	cfg := cloneConfig(f.Config)
	if err := change(&cfg); err != nil {
		return nil, err
	}
	if cfg.MaxConcurrency == 0 {
		cfg.MaxConcurrency = min(stratus.DefaultMaxConc, s.maxConc)
	}
	cfg.Defaults()
	if err := cfg.Validate(stratus.Limits{MaxConcurrency: s.maxConc, MaxRetries: s.maxRetries}); err != nil {
		return nil, err
	}
	if cfg.Image != f.Config.Image {
		return nil, fmt.Errorf("configure %q: the image is the function's code: deploy to change it: %w", name, stratus.ErrInvalid)
	}
	if err := s.checkTopics(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Image == "" {
		if err := s.ensureCode(ctx, f.CodeSHA); err != nil {
			return nil, fmt.Errorf("configure %q: code: %w", name, err)
		}
		if err := checkCode(s.CodeDir(f.CodeSHA), cfg); err != nil {
			return nil, err
		}
	}
	nf, _, err := s.putVersion(ctx, name, cfg, f.CodeSHA, f.CodeSize)
	return nf, err
}

// cloneConfig is a deep copy of c.
func cloneConfig(c stratus.FunctionConfig) stratus.FunctionConfig {
	c.Env = maps.Clone(c.Env)
	if c.MaxRetries != nil {
		r := *c.MaxRetries
		c.MaxRetries = &r
	}
	return c
}

// newRevisionID is a random UUID (version 4), as Lambda's revision IDs.
func newRevisionID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
