package e2e

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/eventually"
)

// revisionOf asks service route (NAME or NAME@TAG on the path route, or
// a Host) which revision answers: gosvc's /env holds K_REVISION.
func (s *server) revisionOf(t *testing.T, path, host string) string {
	t.Helper()
	var code int
	var body string
	if host != "" {
		code, body = s.hostGet(host, path)
	} else {
		code, body = s.get(path)
	}
	if code != 200 {
		t.Fatalf("GET %s%s: %d %s", host, path, code, body)
	}
	return decode[map[string]string](t, []byte(body))["K_REVISION"]
}

// trafficOf is service name's traffic as `service get -o json` shows it,
// each target as "REVISION PERCENT TAG".
func (s *server) trafficOf(name string) []string {
	var out []string
	for _, x := range s.service(name).Traffic {
		out = append(out, strings.TrimSpace(fmt.Sprintf("%s %d %s", x.RevisionName, x.Percent, x.Tag)))
	}
	return out
}

// TestServiceTrafficSplitAndTags: a service's requests split between two
// revisions by percent, a tag reaches its revision on both its routes,
// bad splits change nothing, and latest=100 gives the latest all.
func TestServiceTrafficSplitAndTags(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=1", "--min", "1")
	s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=2", "--min", "1")
	// The same configuration again makes no revision.
	if out := s.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--env", "REV=2", "--min", "1"); !strings.Contains(out, "web-00002") {
		t.Errorf("an unchanged deploy printed %q, want revision web-00002", out)
	}
	if got := s.revisionOf(t, "/svc/web/env", ""); got != "web-00002" {
		t.Fatalf("without a split, %s answered", got)
	}

	out := s.mustCLI("service", "traffic", "web", "1=80", "2=20", "--tag", "canary=2")
	for _, want := range []string{"80%", "web-00001", "20%", "web-00002", "canary", "/svc/web@canary"} {
		if !strings.Contains(out, want) {
			t.Errorf("service traffic printed no %q:\n%s", want, out)
		}
	}
	const n = 200
	counts := map[string]int{}
	for range n {
		counts[s.revisionOf(t, "/svc/web/env", "")]++
	}
	// Within 4 standard deviations of a binomial 80/20 draw.
	sd := math.Sqrt(n * 0.8 * 0.2)
	if math.Abs(float64(counts["web-00001"])-0.8*n) > 4*sd || counts["web-00001"]+counts["web-00002"] != n {
		t.Errorf("an 80/20 split over %d requests went %v", n, counts)
	}
	for range 10 {
		if got := s.revisionOf(t, "/svc/web@canary/env", ""); got != "web-00002" {
			t.Fatalf("/svc/web@canary answered by %s", got)
		}
		if got := s.revisionOf(t, "/env", "canary-web.localhost"); got != "web-00002" {
			t.Fatalf("canary-web.localhost answered by %s", got)
		}
	}
	if code, body := s.get("/svc/web@nope/env"); code != 404 || !strings.Contains(body, `no tag \"nope\"`) {
		t.Errorf("an unknown tag: %d %s", code, body)
	}
	svc := s.service("web")
	if len(svc.Traffic) != 2 || svc.Traffic[1].Tag != "canary" || svc.Traffic[1].HostURL == "" || svc.Traffic[0].Ready != 1 {
		t.Errorf("service get -o json: traffic %+v", svc.Traffic)
	}
	if get := s.mustCLI("service", "get", "web"); !strings.Contains(get, "TRAFFIC") || !strings.Contains(get, "canary") {
		t.Errorf("service get shows no split:\n%s", get)
	}
	// The revision history: newest first, each with its share now.
	revs := decode[[]v1.ServiceRevision](t, []byte(s.mustCLI("service", "revisions", "web", "-o", "json")))
	var history []string
	for _, r := range revs {
		history = append(history, fmt.Sprintf("%s=%d%%%v", r.Name, r.Percent, r.Tags))
	}
	if got, want := strings.Join(history, " "), "web-00002=20%[canary] web-00001=80%[]"; got != want {
		t.Errorf("service revisions: %s, want %s", got, want)
	}

	// A restart restores the split and its revisions' replicas.
	before := s.trafficOf("web")
	s.Stop()
	s.Restart()
	eventually.True(t, 10*time.Second, "both revisions ready after a restart", func() bool {
		for _, x := range s.service("web").Traffic {
			if x.Ready != 1 {
				return false
			}
		}
		return true
	})
	if after := s.trafficOf("web"); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("a restart changed the traffic from %v to %v", before, after)
	}
	if got := s.revisionOf(t, "/env", "canary-web.localhost"); got != "web-00002" {
		t.Errorf("after a restart, canary-web.localhost answered by %s", got)
	}
	counts = map[string]int{}
	for range 50 {
		counts[s.revisionOf(t, "/svc/web/env", "")]++
	}
	if counts["web-00001"] == 0 || counts["web-00002"] == 0 {
		t.Errorf("after a restart, 50 requests went %v", counts)
	}

	// Bad splits are refused and change nothing.
	for _, args := range [][]string{
		{"1=90"},
		{"9=100"},
		{"latest=100", "--tag", "Bad_Tag=1"},
		{"1=50", "latest=50", "--tag", "a=1", "--tag", "a=latest"},
	} {
		r := s.cli(append([]string{"service", "traffic", "web"}, args...)...)
		if r.Code == 0 {
			t.Errorf("traffic %q was taken", args)
		}
	}
	if after := s.trafficOf("web"); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("refused splits changed the traffic from %v to %v", before, after)
	}
	resp, body := s.do("PUT", "/v1/services/web/traffic", []byte(`{"traffic":[{"revision":1,"percent":"x"}]}`), true)
	if resp.StatusCode != 400 {
		t.Errorf("malformed traffic: %d %s", resp.StatusCode, body)
	}

	// The latest takes everything again.
	s.mustCLI("service", "traffic", "web", "latest=100")
	for range 20 {
		if got := s.revisionOf(t, "/svc/web/env", ""); got != "web-00002" {
			t.Fatalf("after latest=100, %s answered", got)
		}
	}
	if got := s.trafficOf("web"); len(got) != 1 || got[0] != "web-00002 100" {
		t.Errorf("traffic after latest=100: %v", got)
	}
	if code, _ := s.hostGet("canary-web.localhost", "/env"); code != 404 {
		t.Errorf("the removed tag's host route: %d, want 404", code)
	}
}

// TestServiceKnativeFields: args, the request timeout, the initial scale
// and a liveness path apart from the readiness one take effect in real
// containers.
func TestServiceKnativeFields(t *testing.T) {
	s := startServicesServer(t)
	s.mustCLI("service", "deploy", "knf", "--image", "gosvc:v1", "--arg", "-rev=fromargs", "--timeout", "1",
		"--initial-scale", "2", "--min", "0", "--window", "5m", "--target", "3")
	// The deploy returns once the initial scale is ready; with no traffic
	// the autoscaler may scale it down only after its (long) window.
	if svc := s.service("knf"); svc.Replicas.Ready != 2 || svc.Config.TimeoutSec != 1 || svc.Config.Target != 3 || time.Duration(svc.Config.Window) != 5*time.Minute {
		t.Errorf("after a deploy with initial scale 2: %+v", svc)
	}
	if code, body := s.get("/svc/knf/"); code != 200 || !strings.Contains(body, "rev=fromargs") {
		t.Errorf("GET /: %d %q, want the args' revision", code, body)
	}
	start := time.Now()
	code, body := s.get("/svc/knf/sleep?ms=5000")
	if took := time.Since(start); code != 504 || !strings.Contains(body, "no answer within 1s") || took > 4*time.Second {
		t.Errorf("a request past the timeout: %d %q after %s, want 504 after 1s", code, body, took)
	}
	if code, _ := s.get("/svc/knf/sleep?ms=100"); code != 200 {
		t.Errorf("a request within the timeout: %d", code)
	}

	// Ready on /id, alive on /healthz, which fails after a second: the
	// replica serves, then restarts, saying why.
	s.mustCLI("service", "deploy", "live", "--image", "gosvc:v1", "--min", "1", "--health", "/id", "--liveness", "/healthz",
		"--env", "UNHEALTHY_AFTER_SEC=1")
	eventually.True(t, 20*time.Second, "a restart by the liveness probe", func() bool {
		svc := s.service("live")
		return svc.Restarts >= 1 && strings.Contains(svc.LastError, "liveness probe failed 3 times: GET /healthz")
	})
}
