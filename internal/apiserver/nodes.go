package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/gateway"
)

// nodeSource lists the servers of the cluster; *cluster.Cluster is one.
// Nodes does I/O (it reads the store) and returns every node, alive or
// dead, by name, with Self set on this server's.
type nodeSource interface {
	Nodes(ctx context.Context) ([]v1.Node, error)
}

// routeNodes registers GET /v1/nodes; a nil src leaves it out. With
// kubeNodes the answer also has the Kubernetes cluster's nodes; when they
// cannot be read, it has a note saying why, not an error: the servers
// are still known.
func (s *Server) routeNodes(mux *http.ServeMux, src nodeSource, kubeNodes func(context.Context) (*v1.KubeNodes, error)) {
	if src == nil {
		return
	}
	mux.Handle("GET /v1/nodes", s.requireToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nodes, err := src.Nodes(r.Context())
		if err != nil {
			s.answer.Error(w, r, err)
			return
		}
		if nodes == nil {
			nodes = []v1.Node{} // [] rather than null
		}
		out := v1.NodeList{Nodes: nodes}
		if kubeNodes != nil {
			ctx, cancel := context.WithTimeout(r.Context(), kubeNodesTimeout)
			kn, err := kubeNodes(ctx)
			cancel()
			if err != nil {
				s.log.Warn("list the kubernetes nodes", "err", err)
				kn = &v1.KubeNodes{Nodes: []v1.KubeNode{}, Note: "the cluster's nodes could not be read: " + err.Error()}
			}
			out.Kube = kn
		}
		s.answer.JSON(w, r, http.StatusOK, out)
	})))
}

// kubeNodesTimeout bounds the reading of the Kubernetes cluster's nodes
// and pods for GET /v1/nodes.
const kubeNodesTimeout = 10 * time.Second

// instanceLister lists a function's sandboxes (internal/server's view of
// the pools is one), and so must Config.Pools be for the API to show them
// (a Pools that is not shows none). It does not block beyond the pool's
// lock and the placer's cache.
type instanceLister interface {
	Instances(name string) []v1.Instance
}

// instanceItems are the sandboxes of function name on this server, where
// the pools can list them (nil otherwise, and when it has none).
func (s *Server) instanceItems(name string) []v1.Instance {
	l, ok := s.pools.(instanceLister)
	if !ok {
		return nil
	}
	return l.Instances(name)
}

// routeInternal mounts h, the endpoints the servers of a cluster call on
// each other, at /v1/internal/. Only the token admits a request there: a
// console session is for people, not for servers. A nil h leaves the
// prefix out (it then answers 404 as any unknown /v1 path).
func (s *Server) routeInternal(mux *http.ServeMux, h http.Handler) {
	if h == nil {
		return
	}
	mux.Handle("/v1/internal/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.authOK(r) {
			s.answer.Error(w, r, v1.ErrUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// serveHosts is what the Server serves before Config.Wrap: a request
// whose Host names a service or a function (NAME.<domain>, NAME in lower
// case; functions and services share the name space, so at most one of
// them has a name) goes to it, path and all, and so does one that names a
// tag a service has (TAG-NAME.<domain>), even if a function has that
// whole name: a service's routes come first, so that deploying a function
// never takes a tag's host over (the function keeps /fn/NAME). A
// TAG-NAME whose NAME is a service without that tag, and no function's,
// is answered 404 naming the tag. Any other request goes to the routes.
func (s *Server) serveHosts(w http.ResponseWriter, r *http.Request) {
	var route string
	if s.svcProxy != nil {
		var ok bool
		if route, ok = s.svcProxy.HostService(r); ok && s.svcProxy.Exists(route) {
			s.svcProxy.ServeHost(w, r, route)
			return
		}
	}
	if s.gw != nil {
		if name, ok := s.gw.HostFunction(r); ok {
			s.gw.ServeHost(w, r, name)
			return
		}
	}
	if route != "" {
		s.svcProxy.ServeHost(w, r, route)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// noRoute answers a request that no route takes: 404, naming the host
// when it is NAME.<domain> (a host route whose function or service does
// not exist), which is then the likelier mistake.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	if label, ok := gateway.HostLabel(r.Host, s.domain); ok {
		s.answer.Error(w, r, fmt.Errorf("host %q: no function or service is named %q (host routes are NAME.%s), and no route for %s %s: %w",
			r.Host, label, s.domain, r.Method, r.URL.Path, stratus.ErrNotFound))
		return
	}
	s.answer.Error(w, r, fmt.Errorf("no route for %s %s: %w", r.Method, r.URL.Path, stratus.ErrNotFound))
}
