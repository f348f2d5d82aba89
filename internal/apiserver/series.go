package apiserver

import (
	"context"
	"net/http"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/series"
)

// seriesSource answers the workloads' time series; *series.Sampler is
// one. The workloads it is asked about exist: the routes check.
type seriesSource interface {
	Function(ctx context.Context, name string, r series.Range) (*v1.FunctionSeries, error)
	Service(ctx context.Context, name string, r series.Range) (*v1.ServiceSeries, error)
	Overview(ctx context.Context, r series.Range, fns, svcs []string) (*v1.SeriesOverview, error)
}

type seriesRoutes struct {
	s    *Server
	src  seriesSource
	svcs serviceManager // nil without services
}

// routeSeries registers GET /v1/series, /v1/functions/NAME/series (with
// functions) and /v1/services/NAME/series (with services); a nil src
// leaves them out.
func (s *Server) routeSeries(mux *http.ServeMux, src seriesSource, svcs serviceManager) {
	if src == nil {
		return
	}
	t := &seriesRoutes{s: s, src: src, svcs: svcs}
	auth := s.requireToken
	mux.Handle("GET /v1/series", auth(http.HandlerFunc(t.overview)))
	if s.fns != nil {
		mux.Handle("GET /v1/functions/{name}/series", auth(http.HandlerFunc(t.function)))
	}
	if svcs != nil {
		mux.Handle("GET /v1/services/{name}/series", auth(http.HandlerFunc(t.service)))
	}
}

func (t *seriesRoutes) function(w http.ResponseWriter, r *http.Request) {
	rng, err := series.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	f, err := t.s.fns.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out, err := t.src.Function(r.Context(), f.Name, rng)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

func (t *seriesRoutes) service(w http.ResponseWriter, r *http.Request) {
	rng, err := series.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	svc, _, err := t.svcs.Get(r.PathValue("name"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	out, err := t.src.Service(r.Context(), svc.Name, rng)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}

func (t *seriesRoutes) overview(w http.ResponseWriter, r *http.Request) {
	rng, err := series.ParseRange(r.URL.Query().Get("range"))
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	fns := []string{}
	if t.s.fns != nil {
		list, err := t.s.fns.List(r.Context())
		if err != nil {
			t.s.answer.Error(w, r, err)
			return
		}
		for i := range list {
			fns = append(fns, list[i].Name)
		}
	}
	svcs := []string{}
	if t.svcs != nil {
		list, _ := t.svcs.List()
		for i := range list {
			svcs = append(svcs, list[i].Name)
		}
	}
	out, err := t.src.Overview(r.Context(), rng, fns, svcs)
	if err != nil {
		t.s.answer.Error(w, r, err)
		return
	}
	t.s.answer.JSON(w, r, http.StatusOK, out)
}
