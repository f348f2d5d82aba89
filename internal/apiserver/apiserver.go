// Package apiserver serves Stratus's control API (/v1/...), the health
// endpoints and metrics, and mounts the gateway's routes. It checks the
// bearer token and translates errors to HTTP once: every answer goes
// through one v1.Responder, which maps kinds to statuses with
// v1.ErrorFrom and logs each 5xx with its request ID.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/console"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/functions"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/lambdaapi"
	"github.com/stratus-run/stratus/internal/meter"
	"github.com/stratus-run/stratus/internal/store"
)

type instanceStats interface {
	Stats(name string) stratus.InstanceStats
}

// asyncQueue takes asynchronous invocations.
type asyncQueue interface {
	Enqueue(ctx context.Context, fn string, event []byte) (string, error)
	Depth(ctx context.Context, fn string) (pending int, oldest time.Duration, err error)
	// Depths is Depth of every function with events, in one JetStream
	// request plus one per such function.
	Depths(ctx context.Context) (map[string]events.AsyncDepth, error)
}

type flusher interface {
	Flushed() <-chan struct{}
	// Sync returns once what was queued before is stored.
	Sync(ctx context.Context) error
}

// Server is the HTTP handler of the whole API.
type Server struct {
	fns       *functions.Service
	st        *store.Store
	pools     instanceStats
	logs      flusher
	queue     asyncQueue
	gw        *gateway.Gateway // nil without Functions
	token     *gateway.Token
	maxUpload int64
	log       *slog.Logger
	answer    v1.Responder // the one writer of answers and errors
	meter     *meter.Meter // nil: invocation records without usage
	metrics   http.Handler

	ready    atomic.Bool
	checks   func() []Check
	stopping chan struct{} // closed when the server starts to stop: ends log follows
	mux      *http.ServeMux
	svcProxy *gateway.ServiceProxy // host routes; nil without services
	domain   string                // host routes' domain (ServicesConfig.Domain)
	trusted  []netip.Prefix        // Config.TrustedProxies
	sessions *console.Sessions     // nil without the console
	handler  http.Handler          // serveHosts, inside Config.Wrap
}

// Config configures a Server. Functions serves the function routes
// (/v1/functions/..., /v1/invocations/..., /fn/...), and with it Store,
// Pools, Logs and Queue are required; nil leaves those routes out. The
// service routes (Services.Manager) require Store and Logs too. New
// panics if a required field is nil. The other fields' zero values mean
// the defaults, or leave their routes out where they say so.
type Config struct {
	// Functions keeps the deployed functions and runs their invocations
	// (NAME or NAME:QUALIFIER); Store keeps their invocations, logs and
	// async states; Pools counts their instances; Logs is the writer of
	// invocations and logs to Store; Queue takes asynchronous
	// invocations.
	Functions *functions.Service
	Store     *store.Store
	Pools     instanceStats
	Logs      flusher
	Queue     asyncQueue
	// Token is the bearer token of the control endpoints; empty, no
	// request has it.
	Token string
	// MaxUpload bounds a function's code (DefaultMaxUpload if 0);
	// MaxEventBytes an event (gateway.DefaultMaxEvent if 0).
	MaxUpload     int64
	MaxEventBytes int64
	// TrustedProxies are the peers whose forwarding headers the function
	// and service routes believe and append to; nil: nobody's.
	TrustedProxies []netip.Prefix
	// Metrics serves GET /metrics, behind the token unless MetricsPublic.
	Metrics       http.Handler
	MetricsPublic bool
	// Info is what GET /v1/info answers.
	Info v1.Info
	// AccountID is the account in the ARNs and events the routes make.
	AccountID string
	// Ready, if set, gives the outcome of each readiness check: GET
	// /readyz answers 503 with the reasons while one fails. It must be
	// fast (no I/O beyond a statfs).
	Ready func() []Check
	// Log gets what the API did (deploys, removals) and every failure
	// answered 5xx; nil discards it.
	Log *slog.Logger
	// Schedules serves /v1/schedules; nil leaves the routes out.
	Schedules scheduler
	// Topics serves /v1/topics and /v1/subscriptions; nil leaves the
	// routes out. MaxAsyncEventBytes bounds each published event.
	Topics             topicService
	MaxAsyncEventBytes int64
	// Images serves /v1/images; a nil Images.Store leaves the routes out.
	Images ImagesConfig
	// Services serves /v1/services, /svc/NAME and host routes.
	Services ServicesConfig
	// Meter prices and meters usage: it serves GET /v1/usage and GET
	// /v1/advice[/NAME] (with Store), in Info.Region, and adds each
	// invocation record's usage to GET /v1/functions/NAME/invocations.
	// Nil leaves the usage and advice routes out.
	Meter *meter.Meter
	// Keys serves /v1/keys and gives the signed function routes their
	// SigV4 check (see KeysConfig).
	Keys KeysConfig
	// Now is the clock that usage and advice windows end at (time.Now
	// when nil).
	Now func() time.Time
	// Lambda serves the AWS Lambda API under its path prefixes
	// (lambdaapi.Prefixes) and authenticates its requests itself; nil
	// leaves those paths out.
	Lambda http.Handler
	// Console serves the web console (GET /, GET /ui/...) and its
	// sessions (/v1/session: a session cookie then stands for the token
	// on the /v1 routes), and adds console.SandboxPolicy to the answers
	// of the path routes /fn/ and /svc/, which share its origin. It
	// requires Store. False leaves all of it out.
	Console bool
	// Series answers the workloads' time series (GET /v1/series,
	// /v1/functions/NAME/series, /v1/services/NAME/series); nil leaves
	// those routes out.
	Series seriesSource
	// Nodes serves GET /v1/nodes, the servers of the cluster; nil
	// leaves the route out.
	Nodes nodeSource
	// KubeNodes, when set, adds the Kubernetes cluster's nodes to GET
	// /v1/nodes (a server with --sandbox kube).
	KubeNodes func(ctx context.Context) (*v1.KubeNodes, error)
	// Internal serves /v1/internal/..., what the servers of a cluster
	// call on each other, behind the token (a console session does not
	// admit there); nil leaves the prefix out.
	Internal http.Handler
	// Wrap, if set, wraps every request the Server serves, host routes
	// included, before any route or auth of its own (a cluster's
	// forwarder of service requests to their owner, which passes them on
	// as they came: the server receiving them checks them). What wraps
	// the Server outside (tracing, body bounds) stays outside.
	Wrap func(http.Handler) http.Handler
}

// DefaultMaxUpload bounds a function's code (a zip) when
// Config.MaxUpload is 0.
const DefaultMaxUpload int64 = 50 << 20

// New returns the API handler. It panics if a required field of c is
// nil (see Config): a wiring bug, which would otherwise surface at the
// first request.
func New(c Config) *Server {
	c.mustHaveRequired()
	c = c.withDefaults()
	s := &Server{
		fns: c.Functions, st: c.Store, pools: c.Pools, logs: c.Logs, queue: c.Queue,
		token: gateway.NewToken(c.Token), maxUpload: c.MaxUpload, log: c.Log,
		answer:  v1.Responder{Log: c.Log},
		metrics: c.Metrics, checks: c.Ready, stopping: make(chan struct{}),
		meter: c.Meter, domain: c.Services.Domain, trusted: c.TrustedProxies,
	}
	mux := http.NewServeMux()
	s.routeConsole(mux, c)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.answer.JSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	auth := s.requireToken
	if c.Metrics != nil {
		if c.MetricsPublic {
			mux.Handle("GET /metrics", c.Metrics)
		} else {
			mux.Handle("GET /metrics", auth(c.Metrics))
		}
	}
	info := c.Info
	mux.Handle("GET /v1/info", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.answer.JSON(w, r, http.StatusOK, info)
	})))
	if c.Functions != nil {
		s.gw = gateway.New(gateway.Config{
			Invoker: c.Functions, Queue: c.Queue, Heads: c.Functions, Versions: c.Functions, Token: s.token, MaxEvent: c.MaxEventBytes, Log: c.Log, AccountID: c.AccountID,
			Verify: c.Keys.Verify, Precheck: c.Keys.Precheck, PathPolicy: s.pathPolicy(),
			Domain: c.Services.Domain, TrustedProxies: c.TrustedProxies,
		})
		mux.Handle("GET /v1/functions", auth(http.HandlerFunc(s.handleList)))
		mux.Handle("PUT /v1/functions/{name}", auth(http.HandlerFunc(s.handleDeploy)))
		mux.Handle("GET /v1/functions/{name}", auth(http.HandlerFunc(s.handleGet)))
		mux.Handle("DELETE /v1/functions/{name}", auth(http.HandlerFunc(s.handleRemove)))
		mux.Handle("PATCH /v1/functions/{name}", auth(http.HandlerFunc(s.handlePatch)))
		mux.Handle("POST /v1/functions/{name}/invoke", auth(http.HandlerFunc(s.gw.ServeInvoke)))
		mux.Handle("GET /v1/functions/{name}/logs", auth(http.HandlerFunc(s.handleLogs)))
		mux.Handle("GET /v1/functions/{name}/invocations", auth(http.HandlerFunc(s.handleInvocations)))
		mux.Handle("GET /v1/invocations/{id}", auth(http.HandlerFunc(s.handleInvocation)))
		mux.HandleFunc("/fn/{name}", s.gw.ServeFunctionURL)
		mux.HandleFunc("/fn/{name}/{path...}", s.gw.ServeFunctionURL)
		s.routeVersions(mux)
	}
	s.routeSchedules(mux, c.Schedules)
	s.routeTopics(mux, c.Topics, c.MaxAsyncEventBytes, c.MaxEventBytes)
	s.routeKeys(mux, c.Keys)
	s.routeImages(mux, c.Images)
	s.svcProxy = s.routeServices(mux, c.Services)
	var svcs serviceManager
	if c.Services.Manager != nil {
		svcs = c.Services.Manager
	}
	s.routeUsage(mux, c.Meter, c.Info.Region, svcs, c.Now)
	s.routeSeries(mux, c.Series, svcs)
	s.routeNodes(mux, c.Nodes, c.KubeNodes)
	s.routeInternal(mux, c.Internal)
	if c.Lambda != nil {
		for _, p := range lambdaapi.Prefixes() {
			mux.Handle(p, c.Lambda)
		}
	}
	mux.Handle("/v1/", auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.answer.Error(w, r, fmt.Errorf("no endpoint %s %s: %w", r.Method, r.URL.Path, stratus.ErrNotFound))
	})))
	mux.HandleFunc("/", s.noRoute)
	s.mux = mux
	s.handler = http.HandlerFunc(s.serveHosts)
	if c.Wrap != nil {
		s.handler = c.Wrap(s.handler)
	}
	s.ready.Store(true)
	return s
}

// mustHaveRequired panics, naming the field, if c lacks a part that the
// routes it serves need.
func (c Config) mustHaveRequired() {
	need := func(has bool, field, by string) {
		if !has {
			panic("apiserver.New: Config." + field + " is nil; " + by + " needs it")
		}
	}
	if c.Functions != nil {
		need(c.Store != nil, "Store", "Functions")
		need(c.Pools != nil, "Pools", "Functions")
		need(c.Logs != nil, "Logs", "Functions")
		need(c.Queue != nil, "Queue", "Functions")
	}
	if c.Services.Manager != nil {
		need(c.Store != nil, "Store", "Services.Manager")
		need(c.Logs != nil, "Logs", "Services.Manager")
	}
	if c.Meter != nil {
		need(c.Store != nil, "Store", "Meter")
	}
	if c.Console {
		need(c.Store != nil, "Store", "Console")
	}
}

// withDefaults fills in the defaults of c's zero values.
func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.MaxUpload <= 0 {
		c.MaxUpload = DefaultMaxUpload
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// ServeHTTP implements http.Handler: Config.Wrap, if set, then
// serveHosts.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// Stopping marks the server not ready and ends streaming answers (log
// follows), so that http.Server.Shutdown can drain.
func (s *Server) Stopping() {
	if s.ready.CompareAndSwap(true, false) {
		close(s.stopping)
	}
}

// Check is the outcome of one readiness check: Err is nil when it passes.
type Check struct {
	Name string
	Err  error
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		s.answer.JSON(w, r, http.StatusServiceUnavailable, v1.Readiness{Status: "stopping", Reason: "the server is stopping"})
		return
	}
	if s.checks != nil {
		out := v1.Readiness{Status: "not ready", Checks: make(map[string]string)}
		var reasons []string
		for _, c := range s.checks() {
			out.Checks[c.Name] = "ok"
			if c.Err != nil {
				out.Checks[c.Name] = c.Err.Error()
				reasons = append(reasons, c.Name+": "+c.Err.Error())
			}
		}
		if len(reasons) > 0 {
			out.Reason = strings.Join(reasons, "; ")
			s.answer.JSON(w, r, http.StatusServiceUnavailable, out)
			return
		}
	}
	s.answer.JSON(w, r, http.StatusOK, v1.Readiness{Status: "ready"})
}

// authOK reports whether one of r's Authorization values is the token.
func (s *Server) authOK(r *http.Request) bool {
	return s.token.Authorized(r.Header)
}

// requireToken admits a request with the token, or on a /v1 route one
// with a live session cookie that passes the same-origin rule (see
// cookieAuth).
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authOK(r) {
			if err := s.cookieAuth(r); err != nil {
				s.refuse(w, r, err)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) view(f *stratus.Function) v1.Function {
	st := s.pools.Stats(f.Name)
	return v1.Function{
		Name: f.Name, Version: f.Version, Config: f.Config, CodeSHA: f.CodeSHA, CodeSize: f.CodeSize,
		CreatedAt: f.CreatedAt, UpdatedAt: f.UpdatedAt,
		Instances: v1.Instances{Live: st.Live, Idle: st.Idle, Busy: st.Busy, Items: s.instanceItems(f.Name)},
		URL:       "/fn/" + f.Name,
	}
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	fns, err := s.fns.List(r.Context())
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	depths, derr := s.queue.Depths(r.Context())
	out := v1.FunctionList{Functions: make([]v1.Function, 0, len(fns))}
	for i := range fns {
		v := s.view(&fns[i])
		if derr == nil { // as GET of one: left out when JetStream cannot be read
			d := depths[v.Name]
			v.Async = &v1.AsyncQueue{Depth: d.Pending, OldestAgeSec: d.Oldest.Seconds()}
		}
		out.Functions = append(out.Functions, v)
	}
	s.answer.JSON(w, r, http.StatusOK, out)
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	f, err := s.fns.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	v := s.view(f)
	if n, age, err := s.queue.Depth(r.Context(), f.Name); err == nil {
		v.Async = &v1.AsyncQueue{Depth: n, OldestAgeSec: age.Seconds()}
	}
	s.answer.JSON(w, r, http.StatusOK, v)
}

func (s *Server) handleInvocation(w http.ResponseWriter, r *http.Request) {
	_ = s.logs.Sync(r.Context())
	st, err := s.st.GetAsyncStatus(r.Context(), r.PathValue("id"))
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	s.answer.JSON(w, r, http.StatusOK, st)
}

func (s *Server) handleRemove(w http.ResponseWriter, r *http.Request) {
	if err := s.fns.Remove(r.Context(), r.PathValue("name")); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleDeploy reads a multipart form: the config part (JSON), then the
// code part (a zip), streamed to disk. A function from an image has only
// the config part.
func (s *Server) handleDeploy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := stratus.ValidName(name); err != nil {
		s.answer.Error(w, r, err)
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		s.answer.Error(w, r, fmt.Errorf("deploy needs a multipart/form-data body with a %q part (JSON) and a %q part (zip): %w", v1.PartConfig, v1.PartCode, stratus.ErrInvalid))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.maxUpload+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		s.answer.Error(w, r, fmt.Errorf("read deploy form: %v: %w", err, stratus.ErrInvalid))
		return
	}
	var cfg *stratus.FunctionConfig
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.answer.Error(w, r, formErr(err))
			return
		}
		switch part.FormName() {
		case v1.PartConfig:
			dec := json.NewDecoder(io.LimitReader(part, 64<<10))
			dec.DisallowUnknownFields()
			var c stratus.FunctionConfig
			if err := dec.Decode(&c); err != nil {
				s.answer.Error(w, r, fmt.Errorf("deploy config: %v: %w", err, stratus.ErrInvalid))
				return
			}
			cfg = &c
		case v1.PartCode:
			if cfg == nil {
				s.answer.Error(w, r, fmt.Errorf("deploy form: the %q part must come before the %q part: %w", v1.PartConfig, v1.PartCode, stratus.ErrInvalid))
				return
			}
			f, created, err := s.fns.Deploy(r.Context(), name, *cfg, part)
			if err != nil {
				s.answer.Error(w, r, formErr(err))
				return
			}
			status := http.StatusOK
			if created {
				status = http.StatusCreated
			}
			s.log.Info("deployed", "fn", name, "version", f.Version, "runtime", f.Config.Runtime)
			s.answer.JSON(w, r, status, s.view(f))
			return
		}
	}
	if cfg == nil || cfg.Image == "" {
		s.answer.Error(w, r, fmt.Errorf("deploy form has no %q part (and the config names no image): %w", v1.PartCode, stratus.ErrInvalid))
		return
	}
	// A function from an image: the config is all there is.
	f, created, err := s.fns.Deploy(r.Context(), name, *cfg, nil)
	if err != nil {
		s.answer.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.log.Info("deployed", "fn", name, "version", f.Version, "image", f.Config.Image)
	s.answer.JSON(w, r, status, s.view(f))
}

// formErr turns a body over the upload limit into ErrTooLarge and other
// failures to read the form into ErrInvalid; a full disk stays itself
// (507), whatever else it is.
func formErr(err error) error {
	if errors.Is(err, stratus.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("upload is more than %d MB: %w", mbe.Limit>>20, stratus.ErrTooLarge)
	}
	if errors.Is(err, stratus.ErrInvalid) || errors.Is(err, stratus.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("read deploy form: %v: %w", err, stratus.ErrInvalid)
}
