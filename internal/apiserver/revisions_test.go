package apiserver

import (
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/store"
)

// TestServiceRevisions: GET /v1/services/NAME/revisions lists every
// stored revision newest first with the share of requests each takes.
func TestServiceRevisions(t *testing.T) {
	st, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "stratus.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for n := 1; n <= 3; n++ {
		img := "gosvc:v" + string(rune('0'+n))
		if _, err := st.PutRevision(t.Context(), &stratus.Revision{Service: "web", Number: n, Config: stratus.ServiceConfig{Image: img}, Digest: "sha256:" + img}); err != nil {
			t.Fatal(err)
		}
	}
	m := &trafficManager{traffic: []stratus.TrafficTarget{{Latest: true, Percent: 90}, {Revision: 1, Percent: 10, Tag: "old"}}}
	s := New(Config{Token: "tok", Store: st, Logs: stubFlusher{}, Services: ServicesConfig{Manager: m, Domain: "apps.test"}})
	do := func(path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, strings.NewReader(""))
		r.Header.Set("Authorization", "Bearer tok")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	w := do("/v1/services/web/revisions")
	if w.Code != 200 {
		t.Fatalf("GET revisions: %d %s", w.Code, w.Body)
	}
	var got v1.RevisionList
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for i := range got.Revisions {
		if got.Revisions[i].CreatedAt.IsZero() {
			t.Errorf("revision %d has no creation time", got.Revisions[i].Number)
		}
		got.Revisions[i].CreatedAt = got.Revisions[0].CreatedAt
	}
	at := got.Revisions[0].CreatedAt
	want := v1.RevisionList{Revisions: []v1.ServiceRevision{
		{Number: 3, Name: "web-00003", Image: "gosvc:v3", ImageDigest: "sha256:gosvc:v3", CreatedAt: at, Latest: true, Percent: 90, Ready: 3},
		{Number: 2, Name: "web-00002", Image: "gosvc:v2", ImageDigest: "sha256:gosvc:v2", CreatedAt: at},
		{Number: 1, Name: "web-00001", Image: "gosvc:v1", ImageDigest: "sha256:gosvc:v1", CreatedAt: at, Percent: 10, Tags: []string{"old"}, Ready: 1},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
	if w := do("/v1/services/nope/revisions"); w.Code != 404 {
		t.Errorf("unknown service: %d %s", w.Code, w.Body)
	}
}
