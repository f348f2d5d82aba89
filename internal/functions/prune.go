package functions

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
)

// pruneVersions removes the unpublished snapshots of function name
// beyond the newest s.keep of them, except those that still have
// instances, and reports whether it removed any (their code is then for
// gcCode to free). Published versions are never pruned. It never fails a
// deploy: a version it cannot remove now stays until the next try. The
// caller holds deployMu or is Open.
func (s *Service) pruneVersions(ctx context.Context, name string) bool {
	if s.keep <= 0 {
		return false
	}
	all, err := s.st.ListVersions(ctx, name)
	if err != nil {
		s.log.Warn("list versions to prune", "fn", name, "err", err)
		return false
	}
	var vs []stratus.Version // unpublished, newest first
	for _, v := range all {
		if v.Number == 0 {
			vs = append(vs, v)
		}
	}
	if len(vs) <= s.keep {
		return false
	}
	var drop, busy []int
	for _, v := range vs[s.keep:] { // newest first: the head is kept (DeleteVersions keeps it anyway)
		if s.mayHaveInstances(&v) {
			busy = append(busy, v.Version)
			continue
		}
		drop = append(drop, v.Version)
		delete(s.retired, versionKey{name, v.Version})
		delete(s.unpublished, versionKey{name, v.Version})
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		s.log.Info("old versions may still have instances; kept until a later deploy or start", "fn", name, "versions", busy)
	}
	n, err := s.st.DeleteVersions(ctx, name, drop)
	if err != nil {
		s.log.Warn("remove old versions", "fn", name, "err", err)
		return false
	}
	if n > 0 {
		s.log.Info("removed old versions", "fn", name, "count", n, "keep", s.keep)
	}
	return n > 0
}

// mayHaveInstances reports whether an instance may still run v: only if
// v stopped being the head on this server recently enough for one of its
// invocations to be running or its instance stopping, and the pools say
// the function has busy instances. The caller holds deployMu or is Open.
// (Only $LATEST's pool runs unpublished snapshots; published versions,
// which aliases name and pools of their own run, are never pruned.)
func (s *Service) mayHaveInstances(v *stratus.Version) bool {
	k := versionKey{v.Function, v.Version}
	if s.inUse == nil && !s.unpublished[k] {
		return false
	}
	at, ok := s.retired[k]
	if !ok {
		return false // the head before this server started: no instance ran it
	}
	window := time.Duration(v.Config.TimeoutSec)*time.Second + s.grace
	if s.now().Sub(at) >= window {
		delete(s.retired, k)
		delete(s.unpublished, k)
		return false
	}
	if s.unpublished[k] {
		// A deleted published version: its own pool's busy instances,
		// which inUse does not see, may run it.
		return true
	}
	return s.inUse(v.Function, v.Version)
}

// gcCode removes code folders and archives no version refers to, except
// code that instances may still use (codeLeft), and what an interrupted
// extract left in the code folder. The caller holds deployMu or is Open.
func (s *Service) gcCode(ctx context.Context) {
	s.codeMu.Lock()
	defer s.codeMu.Unlock()
	inUse, err := s.st.CodeInUse(ctx)
	if err != nil {
		s.log.Warn("list code in use", "err", err)
		return
	}
	ents, err := os.ReadDir(s.codeDir)
	if err != nil {
		return
	}
	now := s.now()
	maps.DeleteFunc(s.codeLeft, func(_ string, h codeHold) bool { return !now.Before(h.until) })
	removed := false
	for _, e := range ents {
		sha := strings.TrimSuffix(e.Name(), ".zip")
		if _, left := s.codeLeft[sha]; !inUse[sha] && !left {
			if err := os.RemoveAll(filepath.Join(s.codeDir, e.Name())); err != nil {
				s.log.Warn("remove unused code", "code", e.Name(), "err", err)
			}
			removed = true
		}
	}
	if removed {
		_ = archive.SyncDir(s.codeDir)
	}
}

// leave notes that v stopped running here: when busy (instances may
// still run it), its code stays on disk for v's timeout and
// InstanceGrace. The caller holds deployMu.
func (s *Service) leave(v *stratus.Version, busy bool) {
	if !busy || v.Config.Image != "" {
		return
	}
	until := s.now().Add(time.Duration(v.Config.TimeoutSec)*time.Second + s.grace)
	if until.After(s.codeLeft[v.CodeSHA].until) {
		s.codeLeft[v.CodeSHA] = codeHold{v.Function, until}
	}
}

// codeHold is how long code stays for the instances of a function.
type codeHold struct {
	fn    string
	until time.Time
}
