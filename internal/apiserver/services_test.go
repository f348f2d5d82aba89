package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/services"
	"github.com/stratus-run/stratus/internal/store"
)

// trafficManager holds service web at revision 3 and takes any split
// that stratus.ValidateTraffic takes and that names revisions 1 to 3.
type trafficManager struct {
	stubManager
	traffic []stratus.TrafficTarget
}

func (m *trafficManager) SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*stratus.Service, error) {
	if name != "web" {
		return nil, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	if err := stratus.ValidateTraffic(t); err != nil {
		return nil, err
	}
	for _, x := range t {
		if x.Revision > 3 {
			return nil, fmt.Errorf("service %q has no revision %d: %w", name, x.Revision, stratus.ErrNotFound)
		}
	}
	m.traffic = t
	svc, _, err := m.Get(name)
	return &svc, err
}

func (m *trafficManager) Get(name string) (stratus.Service, services.Status, error) {
	if name != "web" {
		return stratus.Service{}, services.Status{}, fmt.Errorf("service %q: %w", name, stratus.ErrNotFound)
	}
	st := services.Status{State: services.StateReady}
	routes := m.traffic
	if len(routes) == 0 {
		routes = []stratus.TrafficTarget{{Latest: true, Percent: 100}}
	}
	for _, t := range routes {
		if t.Latest {
			t.Revision = 3
		}
		st.Routes = append(st.Routes, services.Route{Target: t, Ready: t.Revision})
	}
	return stratus.Service{Name: "web", Revision: 3, Traffic: m.traffic}, st, nil
}

func TestServiceTraffic(t *testing.T) {
	m := &trafficManager{}
	s := New(Config{Token: "tok", Store: &store.Store{}, Logs: stubFlusher{},
		Services: ServicesConfig{Manager: m, Domain: "apps.test"}})
	do := func(method, path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.Host = "127.0.0.1:8080"
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}

	// No split: the latest at 100%.
	w := do("GET", "/v1/services/web", "")
	var svc v1.Service
	if err := json.Unmarshal(w.Body.Bytes(), &svc); err != nil || w.Code != 200 {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	want := []v1.TrafficTarget{{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 100, Ready: 3}}
	if diff := cmp.Diff(want, svc.Traffic); diff != "" {
		t.Errorf("traffic without a split (-want +got):\n%s", diff)
	}

	w = do("PUT", "/v1/services/web/traffic", `{"traffic":[{"revision":1,"percent":90},{"latest":true,"percent":10,"tag":"canary"}]}`)
	svc = v1.Service{}
	if err := json.Unmarshal(w.Body.Bytes(), &svc); err != nil || w.Code != 200 {
		t.Fatalf("PUT traffic: %d %s", w.Code, w.Body)
	}
	want = []v1.TrafficTarget{
		{Revision: 1, RevisionName: "web-00001", Percent: 90, Ready: 1},
		{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 10, Tag: "canary", Ready: 3,
			URL: "http://127.0.0.1:8080/svc/web@canary", HostURL: "http://canary-web.apps.test:8080"},
	}
	if diff := cmp.Diff(want, svc.Traffic); diff != "" {
		t.Errorf("traffic after PUT (-want +got):\n%s", diff)
	}

	set := m.traffic
	for _, tc := range []struct {
		name, path, body string
		code             int
		says             string
	}{
		{"malformed", "/v1/services/web/traffic", `{"traffic":[`, 400, "traffic"},
		{"unknown field", "/v1/services/web/traffic", `{"traffic":[],"weights":1}`, 400, "weights"},
		{"percent as text", "/v1/services/web/traffic", `{"traffic":[{"revision":1,"percent":"90"}]}`, 400, "percent"},
		{"sum 90", "/v1/services/web/traffic", `{"traffic":[{"revision":1,"percent":90}]}`, 400, "sum to 90"},
		{"unknown revision", "/v1/services/web/traffic", `{"traffic":[{"revision":9,"percent":100}]}`, 404, "no revision 9"},
		{"bad tag", "/v1/services/web/traffic", `{"traffic":[{"revision":1,"percent":100,"tag":"A B"}]}`, 400, "tag"},
		{"unknown service", "/v1/services/api/traffic", `{"traffic":[]}`, 404, "api"},
	} {
		w := do("PUT", tc.path, tc.body)
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.says) {
			t.Errorf("%s: %d %s, want %d saying %q", tc.name, w.Code, w.Body, tc.code, tc.says)
		}
	}
	if !cmp.Equal(m.traffic, set) {
		t.Errorf("refused splits changed the traffic to %v", m.traffic)
	}
	// Without the token: 401.
	r := httptest.NewRequest("PUT", "/v1/services/web/traffic", strings.NewReader(`{"traffic":[]}`))
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", w.Code)
	}
}
