package functions

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"

	"github.com/stratus-run/stratus"
)

// Several servers on one store: each keeps its own memory of heads,
// published versions and aliases, and its own pools. What another server
// commits reaches this one through Reload (the store's change
// notification of one function) and ReloadAll (at start of a listen, and
// now and then), which make memory and the pools agree with the store,
// under deployMu as a deploy, so that they follow the store's order.

// Remote runs an invocation on the server that owns a function; name is
// the name as the caller gave it ("NAME" or "NAME:QUALIFIER"). It blocks
// until that server answers.
type Remote func(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)

// Reload reads function name from the store and makes memory and the
// pools agree with it: a new head gets its code here (from the kept zip
// or Config.Blobs) and goes to the pools; published versions and aliases
// are read again (the pools forget deleted versions); a function the
// store no longer has is forgotten as Remove does (pools, code,
// Config.Removed). A Reload that finds what memory has changes nothing.
// A store error changes nothing; code that cannot be had is an error
// returned once memory agrees with the store (the version's invocations
// then fail with stratus.ErrUnavailable naming the code until a later
// Reload gets it).
func (s *Service) Reload(ctx context.Context, name string) error {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	f, err := s.st.GetFunction(ctx, name)
	if errors.Is(err, stratus.ErrNotFound) {
		s.forgetKnown(ctx, name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reload function %q: %w", name, err)
	}
	pub, err := s.st.ListPublished(ctx, name)
	if err == nil {
		var as []stratus.Alias
		if as, err = s.st.ListAliases(ctx, name); err == nil {
			changed, err := s.apply(ctx, f, pub, as)
			if changed {
				s.gcCode(ctx)
			}
			return err
		}
	}
	if errors.Is(err, stratus.ErrNotFound) { // removed since GetFunction
		s.forgetKnown(ctx, name)
		return nil
	}
	return fmt.Errorf("reload function %q: %w", name, err)
}

// ReloadAll is Reload of every function the store has, and of every one
// memory has that the store lost.
func (s *Service) ReloadAll(ctx context.Context) error {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	fns, err := s.st.ListFunctions(ctx)
	if err != nil {
		return fmt.Errorf("reload functions: %w", err)
	}
	pub, err := s.st.AllPublished(ctx)
	if err != nil {
		return fmt.Errorf("reload functions: %w", err)
	}
	as, err := s.st.AllAliases(ctx)
	if err != nil {
		return fmt.Errorf("reload functions: %w", err)
	}
	pubOf := make(map[string][]stratus.Version)
	for _, v := range pub {
		pubOf[v.Function] = append(pubOf[v.Function], v)
	}
	asOf := make(map[string][]stratus.Alias)
	for _, a := range as {
		asOf[a.Function] = append(asOf[a.Function], a)
	}
	stored := make(map[string]bool, len(fns))
	var errs []error
	changed := false
	for i := range fns {
		f := &fns[i]
		stored[f.Name] = true
		c, err := s.apply(ctx, f, pubOf[f.Name], asOf[f.Name])
		changed = changed || c
		errs = append(errs, err)
	}
	s.mu.RLock()
	var lost []string
	for name := range s.heads {
		if !stored[name] {
			lost = append(lost, name)
		}
	}
	s.mu.RUnlock()
	for _, name := range lost {
		s.forget(ctx, name)
	}
	if changed && len(lost) == 0 {
		s.gcCode(ctx) // forget has freed it otherwise
	}
	return errors.Join(errs...)
}

// forgetKnown forgets function name if memory has it. The caller holds
// deployMu.
func (s *Service) forgetKnown(ctx context.Context, name string) {
	s.mu.RLock()
	_, ok := s.heads[name]
	s.mu.RUnlock()
	if ok {
		s.log.Info("function removed on another server", "fn", name)
		s.forget(ctx, name)
	}
}

// apply makes memory and the pools agree with function f as stored, with
// its published versions pub and its aliases as, and reports whether a
// version was replaced or dropped (so code may be free). The caller holds
// deployMu.
func (s *Service) apply(ctx context.Context, f *stratus.Function, pub []stratus.Version, as []stratus.Alias) (changed bool, _ error) {
	name := f.Name
	head := headOf(f)
	s.mu.RLock()
	old := s.heads[name]
	had := maps.Clone(s.published[name])
	s.mu.RUnlock()

	// Code first: the pools get no version whose code this server did
	// not try to have.
	var errs []error
	code := func(v *stratus.Version) {
		if v.Config.Image != "" {
			return
		}
		if err := s.ensureCode(ctx, v.CodeSHA); err != nil {
			errs = append(errs, fmt.Errorf("function %q: %w", name, err))
			s.log.Error("function code could not be had; its invocations fail until it is", "fn", name, "version", v.Qualifier, "err", err)
		}
	}
	newHead := old == nil || !sameVersion(old, head)
	if newHead {
		code(head)
	} else {
		code(old)
	}
	published := make(map[int]*stratus.Version, len(pub))
	for i := range pub {
		v := &pub[i]
		if cur := had[v.Number]; cur != nil && sameVersion(cur, v) {
			published[v.Number] = cur
			continue
		}
		code(v)
		published[v.Number] = v
	}
	aliases := make(map[string]*stratus.Alias, len(as))
	for i := range as {
		aliases[as[i].Name] = &as[i]
	}

	var drop []string // pool keys of published versions gone or replaced
	s.mu.Lock()
	if newHead {
		s.heads[name] = head
	}
	for n, v := range had {
		if published[n] == v {
			continue
		}
		key := (&stratus.Version{Function: name, Qualifier: strconv.Itoa(n)}).PoolKey()
		if s.pooled[key] {
			delete(s.pooled, key)
			drop = append(drop, key)
			s.leave(v, true) // its pool's busy instances finish
		}
		if published[n] == nil {
			// A deleted published version: its snapshot stays while its
			// instances may run (see DeleteVersion).
			k := versionKey{name, v.Version}
			s.retired[k] = s.now()
			s.unpublished[k] = true
		}
		changed = true
	}
	if len(published) > 0 {
		s.published[name] = published
	} else {
		delete(s.published, name)
	}
	if len(aliases) > 0 {
		s.aliases[name] = aliases
	} else {
		delete(s.aliases, name)
	}
	for _, key := range drop {
		s.pools.RemoveVersion(key)
	}
	s.mu.Unlock()
	if newHead {
		if old != nil {
			s.retired[versionKey{name, old.Version}] = s.now()
			s.leave(old, s.inUse != nil && s.inUse(name, old.Version))
			changed = true
		}
		s.log.Info("function changed on another server", "fn", name, "version", head.Version)
		s.pools.Deploy(head)
	}
	return changed, errors.Join(errs...)
}

// sameVersion reports whether a and b are the same stored version.
func sameVersion(a, b *stratus.Version) bool {
	return a.Version == b.Version && a.Number == b.Number && a.CodeSHA == b.CodeSHA && a.CreatedAt.Equal(b.CreatedAt)
}
