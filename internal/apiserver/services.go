package apiserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/services"
)

// serviceManager deploys and runs services; *services.Manager is one.
type serviceManager interface {
	Deploy(ctx context.Context, name string, cfg stratus.ServiceConfig) (*stratus.Service, error)
	SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error)
	Remove(ctx context.Context, name string) error
	Get(name string) (stratus.Service, services.Status, error)
	List() ([]stratus.Service, []services.Status)
	Acquire(ctx context.Context, route string) (*services.Target, func(), error)
	Auth(route string) (string, bool)
}

// ServicesConfig configures the service routes.
type ServicesConfig struct {
	// Manager runs services; nil leaves the routes out.
	Manager serviceManager
	// Domain is the domain of host routes: NAME.<Domain>.
	Domain string
	// MaxRequestBytes bounds the body of a request to a service (413
	// beyond); 0 leaves it unbounded.
	MaxRequestBytes int64
	// Observe, if set, is called once for each request to a service with
	// its status and duration (gateway.ProxyConfig.Observe).
	Observe func(service string, status int, d time.Duration)
}

type serviceRoutes struct {
	s      *Server
	m      serviceManager
	domain string
}

// routeServices registers the service routes on mux and returns the
// proxy for host routes, or nil.
func (s *Server) routeServices(mux *http.ServeMux, c ServicesConfig) *gateway.ServiceProxy {
	if c.Manager == nil {
		return nil
	}
	t := &serviceRoutes{s: s, m: c.Manager, domain: c.Domain}
	auth := s.requireToken
	mux.Handle("GET /v1/services", auth(http.HandlerFunc(t.list)))
	mux.Handle("PUT /v1/services/{name}", auth(http.HandlerFunc(t.deploy)))
	mux.Handle("GET /v1/services/{name}", auth(http.HandlerFunc(t.get)))
	mux.Handle("DELETE /v1/services/{name}", auth(http.HandlerFunc(t.remove)))
	mux.Handle("PUT /v1/services/{name}/traffic", auth(http.HandlerFunc(t.setTraffic)))
	mux.Handle("GET /v1/services/{name}/logs", auth(http.HandlerFunc(t.logs)))
	mux.Handle("GET /v1/services/{name}/revisions", auth(http.HandlerFunc(t.revisions)))
	p := gateway.NewServiceProxy(gateway.ProxyConfig{
		Services: c.Manager, Token: s.token, Domain: c.Domain, MaxBody: c.MaxRequestBytes, Log: s.log,
		Observe: c.Observe, PathPolicy: s.pathPolicy(), TrustedProxies: s.trusted,
	})
	mux.HandleFunc("/svc/{name}", p.ServeSvcPath)
	mux.HandleFunc("/svc/{name}/{path...}", p.ServeSvcPath)
	return p
}

func (t *serviceRoutes) deploy(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var cfg stratus.ServiceConfig
	if err := decodeSpec(w, r, maxSpecBody, "service", &cfg); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	_, existed := t.m.Auth(name)
	svc, err := t.m.Deploy(r.Context(), name, cfg)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("service deployed", "service", name, "revision", svc.Revision)
	sv, st, err := t.m.Get(name)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	status := http.StatusOK
	if !existed {
		status = http.StatusCreated
	}
	t.s.answer.JSON(w, r, status, t.wire(r, sv, st, true))
}

func (t *serviceRoutes) setTraffic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req v1.TrafficRequest
	if err := decodeSpec(w, r, maxSpecBody, "traffic", &req); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	if _, err := t.m.SetTraffic(r.Context(), name, req.Traffic); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("service traffic set", "service", name)
	t.get(w, r)
}

func (t *serviceRoutes) get(w http.ResponseWriter, r *http.Request) {
	sv, st, err := t.m.Get(r.PathValue("name"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, t.wire(r, sv, st, true))
}

func (t *serviceRoutes) list(w http.ResponseWriter, r *http.Request) {
	svcs, sts := t.m.List()
	out := v1.ServiceList{Services: make([]v1.Service, len(svcs))}
	for i := range svcs {
		out.Services[i] = t.wire(r, svcs[i], sts[i], false)
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

func (t *serviceRoutes) remove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := t.m.Remove(r.Context(), name); err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.log.Info("service removed", "service", name)
	w.WriteHeader(http.StatusNoContent)
}

func (t *serviceRoutes) logs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := t.m.Auth(name); !ok {
		t.s.answer.Error(w, r, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound))
		return
	}
	t.s.serveLogs(w, r, stratus.ServiceLogKey(name), "")
}

// revisions answers every stored revision of a service, newest first,
// with the share of requests each takes now.
func (t *serviceRoutes) revisions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	sv, st, err := t.m.Get(name)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	revs, err := t.s.st.ListRevisions(r.Context(), name)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out := v1.RevisionList{Revisions: make([]v1.ServiceRevision, len(revs))}
	for i, rev := range revs {
		x := v1.ServiceRevision{
			Number: rev.Number, Name: rev.Name(), Image: rev.Config.Image, ImageDigest: rev.Digest,
			CreatedAt: rev.CreatedAt, Latest: rev.Number == sv.Revision,
		}
		for _, rt := range st.Routes {
			if rt.Target.Revision != rev.Number {
				continue
			}
			x.Percent += rt.Target.Percent
			x.Ready = rt.Ready
			if rt.Target.Tag != "" {
				x.Tags = append(x.Tags, rt.Target.Tag)
			}
		}
		out.Revisions[i] = x
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

// wire is a service as the API shows it; its URLs are on the server that
// answered r.
func (t *serviceRoutes) wire(r *http.Request, sv stratus.Service, st services.Status, detail bool) v1.Service {
	rev := stratus.Revision{Service: sv.Name, Number: sv.Revision}
	port := ""
	if _, p, err := net.SplitHostPort(r.Host); err == nil {
		port = ":" + p
	}
	out := v1.Service{
		Name: sv.Name, Revision: sv.Revision, RevisionName: rev.Name(), Config: sv.Config,
		ImageDigest: sv.Digest, CreatedAt: sv.CreatedAt, UpdatedAt: sv.UpdatedAt,
		Status: st.State,
		Node:   st.Node,
		Replicas: v1.ServiceReplicas{
			Ready: st.Ready, Desired: st.Desired, Draining: st.Draining, Waiting: st.Waiting,
		},
		Restarts: st.Restarts, LastError: st.LastError,
		URL:     "http://" + r.Host + "/svc/" + sv.Name,
		HostURL: "http://" + sv.Name + "." + t.domain + port,
		Traffic: make([]v1.TrafficTarget, 0, len(st.Routes)),
	}
	for _, rt := range st.Routes {
		tt := rt.Target
		name := stratus.Revision{Service: sv.Name, Number: tt.Revision}
		x := v1.TrafficTarget{
			Revision: tt.Revision, RevisionName: name.Name(), Latest: tt.Latest, Percent: tt.Percent, Tag: tt.Tag,
			Ready: rt.Ready,
		}
		if tt.Tag != "" {
			x.URL = out.URL + "@" + tt.Tag
			x.HostURL = "http://" + tt.Tag + "-" + sv.Name + "." + t.domain + port
		}
		out.Traffic = append(out.Traffic, x)
	}
	if detail {
		for _, rp := range st.Replicas {
			out.Detail = append(out.Detail, v1.Replica{
				ID: rp.ID, Revision: rp.Revision, Address: rp.Address, Node: rp.Node, State: rp.State, Inflight: rp.Inflight,
				Restarts: rp.Restarts, LastError: rp.LastErr,
			})
		}
	}
	return out
}
