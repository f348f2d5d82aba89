// Package functions deploys, lists and removes functions: it checks a
// deploy, unpacks its code once per content digest, records the new version
// in the store and hands it to the pools. It keeps the head version of
// every function in memory for the invocation path, rebuilt from the store
// at start.
//
// Functions and services share one namespace of names: the store's
// registry of names is the only judge, claimed in the transaction that
// records a version, so a deploy under a name a service holds (or is
// starting under) fails with stratus.ErrConflict. A deploy looks the name
// up first (Store.NameHolder), so that one under a service's name gets
// that conflict before its code is read, checked and kept, whatever the
// code.
//
// Locks: deployMu (one deploy, publish, alias change, remove or reload
// at a time) is taken before codeMu (the entries of DATA/code), codeMu
// before mu (the in-memory heads, versions and aliases), and mu before
// the pools' own lock; never the other way round. fetchMu (the code
// fetches in progress) is taken alone; a wait for another's fetch holds
// at most deployMu.
//
// Code is durable before it is named: a deploy writes the zip and its
// extracted folder under DATA/tmp, syncs them, renames them into
// DATA/code, syncs that folder, and only then commits the version's row.
// A crash at any point leaves the old version or the new one, never a row
// naming missing code; what an interrupted deploy left (staging folders,
// code no row names) is removed at the next start.
//
// A deploy changes only $LATEST, the head snapshot; Publish gives the
// head a version number (see versions.go), and aliases name $LATEST or
// published versions. Each published version runs in a pool of its own,
// made at its first invocation.
//
// A function keeps its newest KeepVersions unpublished snapshots (its
// published versions are never pruned). Older ones, with
// their code when no kept version shares it, are removed at each deploy
// and at start, except a version that may still have instances, which is
// removed at a later deploy or start. Instances only ever run the version
// that was the head when they started, and an instance of an older head
// ends with its last invocation; so a version may have instances only if
// it stopped being the head less than its timeout plus InstanceGrace ago
// and the pools still have busy instances of the function.
//
// Several servers may share one store (see cluster.go). Each function
// then has one owner at a time, which runs all of its instances:
// Invoke resolves the name here (an unknown one fails at once) and, when
// Config.Route names another server, forwards the invocation there,
// while InvokeLocal runs it here. A deploy puts its zip in the blob
// store (Config.Blobs) before it commits, so that a server that learns
// of the version (Reload, on the store's change notifications, and
// ReloadAll) fetches the code by its digest, checks it and extracts it
// before the pools get the version; memory and the pools then follow
// what other servers deployed, published, aliased and removed.
package functions

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/archive"
	"github.com/stratus-run/stratus/internal/store"
)

// Images finds the images that functions are deployed from.
type Images interface {
	// Lookup returns the manifest digest and size of the image ref names,
	// and whether it has an entrypoint or command; a missing image is an
	// error wrapping stratus.ErrNotFound.
	Lookup(ref string) (digest string, size int64, runnable bool, err error)
}

// deployer is what the pools do: run a new head or a published version,
// forget a function or a deleted version, and invoke.
type deployer interface {
	// Deploy makes v what its pool (v.PoolKey()) runs.
	Deploy(v *stratus.Version)
	// Remove forgets every pool of function name.
	Remove(name string)
	// RemoveVersion forgets the pool with key key.
	RemoveVersion(key string)
	// InvokeAs runs req in the pool with key key; invokedAs is the
	// qualifier the caller named ("" for none).
	InvokeAs(ctx context.Context, key, invokedAs string, req stratus.Request) (*stratus.Response, error)
}

// Service manages deployed functions.
type Service struct {
	st         *store.Store
	pools      deployer
	codeDir    string                  // DATA/code
	codeDirOf  func(sha string) string // CodeDirs(DATA)
	tmpDir     string
	limits     archive.Limits
	maxConc    int
	maxRetries int
	images     Images
	keep       int
	inUse      func(fn string, version int) bool
	removed    func(name string) // nil: none
	grace      time.Duration
	now        func() time.Time
	log        *slog.Logger
	route      func(ctx context.Context, fn string) (Remote, error) // nil: every function runs here
	blobs      CodeBlobs                                            // nil: none

	deployMu sync.Mutex // one deploy, publish, alias change, remove or reload at a time
	codeMu   sync.Mutex // entries of DATA/code appear and go under it

	fetchMu  sync.Mutex            // guards fetching
	fetching map[string]*codeFetch // by digest

	// Guarded by mu: the head of each function (Qualifier LatestVersion),
	// its published versions by number (Qualifier the number), its
	// aliases by name, and the pool keys of the published versions handed
	// to the pools (see versions.go).
	mu        sync.RWMutex
	heads     map[string]*stratus.Version
	published map[string]map[int]*stratus.Version
	aliases   map[string]map[string]*stratus.Alias
	pooled    map[string]bool
	// missing holds why the code with each digest could not be had here
	// (see ensureCode); guarded by mu.
	missing map[string]error

	// retired holds when each version stopped being its function's head
	// on this server; guarded by deployMu.
	retired map[versionKey]time.Time
	// unpublished marks the retired snapshots of deleted published
	// versions (see mayHaveInstances); guarded by deployMu.
	unpublished map[versionKey]bool
	// codeLeft holds, by digest, until when instances of a version that
	// stopped running here may still use its code: gcCode keeps it until
	// then, even when no version names it any more (another server may
	// prune versions this one still runs), unless the function is
	// removed. Guarded by deployMu.
	codeLeft map[string]codeHold
}

type versionKey struct {
	fn string
	n  int
}

// Config configures a Service. Store, Pools and DataDir are required;
// every other zero field means its default.
type Config struct {
	// Store keeps functions, versions and the registry of names.
	Store *store.Store
	// Pools receive each new head version, each published version at
	// its first invocation, each removed function and deleted version,
	// and run the invocations (Service.Invoke).
	Pools deployer
	// DataDir holds the code (DATA/code) and uploads being checked
	// (DATA/tmp).
	DataDir string
	// Limits bound an upload and its extraction (archive.DefaultLimits
	// when zero).
	Limits archive.Limits
	// MaxConcurrency is the server-wide cap a function may not exceed
	// (stratus.DefaultMaxConc when 0).
	MaxConcurrency int
	// MaxRetries is the most async retries a function may ask for
	// (stratus.DefaultMaxRetries when 0).
	MaxRetries int
	// Images resolves the images of functions deployed from one; nil
	// refuses such deploys.
	Images Images
	// KeepVersions is how many versions of a function are kept, the
	// newest; 0 keeps every version.
	KeepVersions int
	// HasInstances reports whether version of function fn may still have
	// instances (starting, busy or stopping), whose code must stay; nil:
	// none has. It may be conservative: versions that stopped being the
	// head long ago are not asked about (see InstanceGrace).
	HasInstances func(fn string, version int) bool
	// InstanceGrace is the longest an instance of a version outlives the
	// version's timeout after a newer one is deployed: its init timeout
	// and its stop grace (a minute when 0).
	InstanceGrace time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Removed, if set, is called with a function's name once its removal
	// has committed and the pools have been told (so that the server
	// drops the function's metric series); nil: nothing is called. It is
	// called once per successful Remove (and once when Reload or
	// ReloadAll finds that another server removed the function), never
	// after a failed one, while no other deploy or remove runs: it must
	// be quick and must not deploy or remove.
	Removed func(name string)
	// Route, if set, says where function fn (a name without qualifier)
	// runs: a nil Remote is here, else Invoke forwards to the Remote. It
	// is called on every Invoke of a known function; an error is
	// returned as it is. nil: every function runs here.
	Route func(ctx context.Context, fn string) (Remote, error)
	// Blobs, if set, keeps the code of every deploy (blob "code/SHA")
	// for the other servers, and gives this one the code of versions it
	// did not deploy (Open fetches what it misses, so Blobs must answer
	// by then). nil: code is only what this server deployed.
	Blobs CodeBlobs
	// Log receives what the Service does; nil discards it.
	Log *slog.Logger
}

// Open loads every function's head from the store and deploys it to the
// pools.
func Open(ctx context.Context, c Config) (*Service, error) {
	c.defaults()
	s := &Service{
		st: c.Store, pools: c.Pools, limits: c.Limits, maxConc: c.MaxConcurrency, maxRetries: c.MaxRetries, images: c.Images, log: c.Log,
		keep: c.KeepVersions, inUse: c.HasInstances, grace: c.InstanceGrace, now: c.Now, removed: c.Removed,
		route: c.Route, blobs: c.Blobs,
		fetching:    make(map[string]*codeFetch),
		missing:     make(map[string]error),
		retired:     make(map[versionKey]time.Time),
		unpublished: make(map[versionKey]bool),
		codeLeft:    make(map[string]codeHold),
		codeDir:     codeRoot(c.DataDir),
		codeDirOf:   CodeDirs(c.DataDir),
		tmpDir:      filepath.Join(c.DataDir, "tmp"),
		heads:       make(map[string]*stratus.Version),
		published:   make(map[string]map[int]*stratus.Version),
		aliases:     make(map[string]map[string]*stratus.Alias),
		pooled:      make(map[string]bool),
	}
	for _, d := range []string{s.codeDir, s.tmpDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	// Uploads a crashed server left half-written.
	if ents, err := os.ReadDir(s.tmpDir); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(s.tmpDir, e.Name()))
		}
	}
	fns, err := s.st.ListFunctions(ctx)
	if err != nil {
		return nil, err
	}
	// Versions beyond the bound, left by a smaller --keep-versions or a
	// crash between a deploy's commit and its pruning. No instance runs
	// yet.
	for i := range fns {
		s.pruneVersions(ctx, fns[i].Name)
	}
	for i := range fns {
		f := &fns[i]
		v := headOf(f)
		if v.Config.Image == "" {
			if err := s.ensureCode(ctx, v.CodeSHA); err != nil {
				s.log.Error("function code is missing; invocations fail until a deploy or reload brings it", "fn", f.Name, "err", err)
			}
		}
		s.heads[f.Name] = v
		s.pools.Deploy(v)
	}
	if err := s.loadPublished(ctx); err != nil {
		return nil, err
	}
	s.gcCode(ctx)
	return s, nil
}

// defaults fills the zero fields of c that have a default.
func (c *Config) defaults() {
	if c.Limits == (archive.Limits{}) {
		c.Limits = archive.DefaultLimits()
	}
	if c.MaxConcurrency <= 0 {
		c.MaxConcurrency = stratus.DefaultMaxConc
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.InstanceGrace <= 0 {
		c.InstanceGrace = time.Minute
	}
}

// loadPublished reads every published version and alias into memory;
// their pools are made at their first invocation.
func (s *Service) loadPublished(ctx context.Context) error {
	vs, err := s.st.AllPublished(ctx)
	if err != nil {
		return err
	}
	for i := range vs {
		v := &vs[i]
		if v.Config.Image == "" {
			if err := s.ensureCode(ctx, v.CodeSHA); err != nil {
				s.log.Error("code of a published version is missing; its invocations will fail", "fn", v.Function, "version", v.Number, "err", err)
			}
		}
		if s.published[v.Function] == nil {
			s.published[v.Function] = make(map[int]*stratus.Version)
		}
		s.published[v.Function][v.Number] = v
	}
	as, err := s.st.AllAliases(ctx)
	if err != nil {
		return err
	}
	for i := range as {
		a := &as[i]
		if s.aliases[a.Function] == nil {
			s.aliases[a.Function] = make(map[string]*stratus.Alias)
		}
		s.aliases[a.Function][a.Name] = a
	}
	return nil
}

// headOf is the $LATEST copy of f.
func headOf(f *stratus.Function) *stratus.Version {
	return &stratus.Version{
		Function: f.Name, Version: f.Version, Config: f.Config, CodeSHA: f.CodeSHA, CodeSize: f.CodeSize, CreatedAt: f.UpdatedAt,
		Qualifier: stratus.LatestVersion,
	}
}

// CodeDirs returns where, in data dir dataDir, the code with each digest
// is extracted: the folder a version's instances run in. It does not
// depend on a Service, so the pools can be given it before one opens.
func CodeDirs(dataDir string) func(sha string) string {
	code := codeRoot(dataDir)
	return func(sha string) string { return filepath.Join(code, sha) }
}

// codeRoot is the folder of all code in data dir dataDir.
func codeRoot(dataDir string) string { return filepath.Join(dataDir, "code") }

// CodeDir is the folder of the code with digest sha: CodeDirs of the
// Service's data dir.
func (s *Service) CodeDir(sha string) string { return s.codeDirOf(sha) }

func (s *Service) zipPath(sha string) string { return filepath.Join(s.codeDir, sha+".zip") }

// Head returns the version invocations of name use: the function's
// $LATEST, or for a qualified name ("NAME:N", "NAME:ALIAS") what HeadOf
// gives (false when the version or alias does not exist), so that
// callers that check a function's existence or read its settings accept
// qualified names.
func (s *Service) Head(name string) (*stratus.Version, bool) {
	if strings.Contains(name, ":") {
		ref, err := stratus.ParseFunctionRef(name)
		if err != nil {
			return nil, false
		}
		return s.HeadOf(ref)
	}
	s.mu.RLock()
	v, ok := s.heads[name]
	s.mu.RUnlock()
	return v, ok
}

// Deploy creates function name or updates it with a new version from cfg
// and the zip read from code, or, for a function from an image
// (cfg.Image), from the image in the image store (code is then nil).
// created reports a new function. Bad input is an error wrapping
// stratus.ErrInvalid (or stratus.ErrTooLarge), a name a service holds
// one wrapping stratus.ErrConflict; either changes nothing.
func (s *Service) Deploy(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (f *stratus.Function, created bool, err error) {
	return s.deploy(ctx, name, cfg, code, nil)
}

// deploy is Deploy, checking cond (when set) under deployMu before the
// code is kept.
func (s *Service) deploy(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader, cond func(head *stratus.Version) error) (f *stratus.Function, created bool, err error) {
	if err := stratus.ValidName(name); err != nil {
		return nil, false, err
	}
	if cfg.MaxConcurrency == 0 {
		// Unset: Lambda's default, within this server's cap.
		cfg.MaxConcurrency = min(stratus.DefaultMaxConc, s.maxConc)
	}
	cfg.Defaults()
	if err := cfg.Validate(stratus.Limits{MaxConcurrency: s.maxConc, MaxRetries: s.maxRetries}); err != nil {
		return nil, false, err
	}
	if err := s.checkTopics(ctx, cfg); err != nil {
		return nil, false, err
	}
	if err := s.checkName(ctx, name); err != nil {
		return nil, false, err
	}
	if cfg.Image != "" {
		if code != nil {
			return nil, false, fmt.Errorf("a function comes from an image or from code, not both: %w", stratus.ErrInvalid)
		}
		return s.deployImage(ctx, name, cfg, cond)
	}
	if code == nil {
		return nil, false, fmt.Errorf("code is required (or an image): %w", stratus.ErrInvalid)
	}
	tmp, err := os.CreateTemp(s.tmpDir, "upload-*.zip")
	if err != nil {
		return nil, false, fmt.Errorf("store upload: %w", err)
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(code, s.limits.MaxZipped+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("read code upload: %w", err)
	}
	if n == 0 {
		return nil, false, fmt.Errorf("code archive is empty: %w", stratus.ErrInvalid)
	}
	if n > s.limits.MaxZipped {
		return nil, false, fmt.Errorf("code archive is more than the %s limit: %w", sizeText(s.limits.MaxZipped), stratus.ErrTooLarge)
	}
	sha, size, err := archive.Hash(tmp.Name())
	if err != nil {
		return nil, false, err
	}
	// Code folders appear and go (gcCode) only under deployMu.
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if err := s.checkCond(name, cond); err != nil {
		return nil, false, err
	}
	kept, err := s.keepCode(tmp.Name(), sha, cfg)
	if err != nil {
		return nil, false, err
	}
	// The other servers can fetch the code before they hear of the
	// version.
	if err := s.putCode(ctx, sha, kept); err != nil {
		s.gcCode(context.WithoutCancel(ctx))
		return nil, false, err
	}
	return s.putVersion(ctx, name, cfg, sha, size)
}

// checkName fails with stratus.ErrConflict when another kind holds name
// now. It is only a first look: the transaction that stores the version
// claims the name (putVersion).
func (s *Service) checkName(ctx context.Context, name string) error {
	kind, ok, err := s.st.NameHolder(ctx, name)
	if err != nil {
		return err
	}
	if ok && kind != store.KindFunction {
		return fmt.Errorf("function %q: a %s has that name: %w", name, kind, stratus.ErrConflict)
	}
	return nil
}

// deployImage deploys a version that runs image cfg.Image; its code
// digest is the image's manifest digest.
func (s *Service) deployImage(ctx context.Context, name string, cfg stratus.FunctionConfig, cond func(*stratus.Version) error) (*stratus.Function, bool, error) {
	if s.images == nil {
		return nil, false, fmt.Errorf("functions from images need an image store: %w", stratus.ErrUnavailable)
	}
	digest, size, runnable, err := s.images.Lookup(cfg.Image)
	if err != nil {
		return nil, false, fmt.Errorf("deploy %q: %w (import or pull it first: stratus image import|pull)", name, err)
	}
	if !runnable && cfg.Handler == "" {
		return nil, false, fmt.Errorf("deploy %q: image %s has no entrypoint or command: %w", name, cfg.Image, stratus.ErrInvalid)
	}
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if err := s.checkCond(name, cond); err != nil {
		return nil, false, err
	}
	return s.putVersion(ctx, name, cfg, digest, size)
}

// putVersion stores a new head version and hands it to the pools. The
// caller holds deployMu. If it fails, code that no version names (what
// this deploy extracted) is removed.
func (s *Service) putVersion(ctx context.Context, name string, cfg stratus.FunctionConfig, sha string, size int64) (_ *stratus.Function, _ bool, err error) {
	defer func() {
		if err != nil {
			s.gcCode(context.WithoutCancel(ctx))
		}
	}()
	old, existed := s.Head(name)
	if err := s.checkLoop(name, cfg); err != nil {
		return nil, false, err
	}
	f, err := s.st.PutVersion(ctx, name, cfg, sha, size)
	if err != nil {
		return nil, false, err
	}
	v := headOf(f)
	s.mu.Lock()
	s.heads[name] = v
	s.mu.Unlock()
	if existed {
		s.retired[versionKey{name, old.Version}] = s.now()
		s.leave(old, s.inUse != nil && s.inUse(name, old.Version))
	}
	s.pools.Deploy(v)
	if s.pruneVersions(ctx, name) {
		s.gcCode(ctx)
	}
	return f, !existed, nil
}

// ServerLimits is the server's instance cap and code size limits (the
// Lambda API's account settings).
func (s *Service) ServerLimits() (maxConcurrency int, maxZipped, maxUnzipped int64) {
	return s.maxConc, s.limits.MaxZipped, s.limits.MaxUnzipped
}

// ImageInUse reports whether a function's head or published version
// runs the image with manifest digest d.
func (s *Service) ImageInUse(d string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, v := range s.heads {
		if v.Config.Image != "" && v.CodeSHA == d {
			return true
		}
	}
	for _, vs := range s.published {
		for _, v := range vs {
			if v.Config.Image != "" && v.CodeSHA == d {
				return true
			}
		}
	}
	return false
}

// Get returns function name.
func (s *Service) Get(ctx context.Context, name string) (*stratus.Function, error) {
	return s.st.GetFunction(ctx, name)
}

// Versions returns the kept snapshots of function name, newest first.
func (s *Service) Versions(ctx context.Context, name string) ([]stratus.Version, error) {
	return s.st.ListVersions(ctx, name)
}

// List returns every function.
func (s *Service) List(ctx context.Context) ([]stratus.Function, error) {
	return s.st.ListFunctions(ctx)
}

// Remove deletes function name with its published versions and aliases,
// stops the instances of every version, frees code no
// other function uses and then calls Config.Removed. An unknown name is
// an error wrapping stratus.ErrNotFound.
func (s *Service) Remove(ctx context.Context, name string) error {
	s.deployMu.Lock()
	defer s.deployMu.Unlock()
	if err := s.st.DeleteFunction(ctx, name); err != nil {
		return err
	}
	s.forget(ctx, name)
	return nil
}

// forget drops function name, which the store no longer has, from
// memory and the pools, frees its code and calls Config.Removed. The
// caller holds deployMu.
func (s *Service) forget(ctx context.Context, name string) {
	s.mu.Lock()
	delete(s.heads, name)
	delete(s.published, name)
	delete(s.aliases, name)
	maps.DeleteFunc(s.pooled, func(k string, _ bool) bool { return strings.HasPrefix(k, name+":") })
	s.mu.Unlock()
	maps.DeleteFunc(s.retired, func(k versionKey, _ time.Time) bool { return k.fn == name })
	maps.DeleteFunc(s.unpublished, func(k versionKey, _ bool) bool { return k.fn == name })
	maps.DeleteFunc(s.codeLeft, func(_ string, h codeHold) bool { return h.fn == name })
	s.pools.Remove(name)
	s.gcCode(ctx)
	if s.removed != nil {
		s.removed(name)
	}
}
