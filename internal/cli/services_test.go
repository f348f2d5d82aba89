package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func trafficService() v1.Service {
	svc := testService()
	svc.Traffic = []v1.TrafficTarget{
		{Revision: 1, RevisionName: "web-00001", Percent: 80, Ready: 2},
		{Revision: 3, RevisionName: "web-00003", Latest: true, Percent: 20, Tag: "canary", Ready: 1,
			URL: "http://127.0.0.1:8080/svc/web@canary", HostURL: "http://canary-web.localhost:8080"},
	}
	return svc
}

func TestServiceTraffic(t *testing.T) {
	svc := trafficService()
	for _, tc := range []struct {
		name string
		args []string
		want []stratus.TrafficTarget
	}{
		{"numbers and latest", []string{"1=80", "latest=20", "--tag", "canary=latest"},
			[]stratus.TrafficTarget{{Revision: 1, Percent: 80}, {Latest: true, Percent: 20, Tag: "canary"}}},
		{"revision names and a percent sign", []string{"web-00001=80%", "web-00003=20"},
			[]stratus.TrafficTarget{{Revision: 1, Percent: 80}, {Revision: 3, Percent: 20}}},
		{"a tag at 0%", []string{"latest=100", "--tag", "old=2"},
			[]stratus.TrafficTarget{{Latest: true, Percent: 100}, {Revision: 2, Tag: "old"}}},
		{"two tags of one revision", []string{"2=100", "--tag", "a=2", "--tag", "b=web-00002"},
			[]stratus.TrafficTarget{{Revision: 2, Percent: 100, Tag: "a"}, {Revision: 2, Tag: "b"}}},
	} {
		f := newFakeAPI(t)
		f.on("PUT /v1/services/web/traffic", jsonReply(200, svc))
		r := f.run(append([]string{"service", "traffic", "web"}, tc.args...)...)
		if r.code != ExitOK {
			t.Errorf("%s: exit %d, stderr %q", tc.name, r.code, r.stderr)
			continue
		}
		var sent v1.TrafficRequest
		sentJSON(t, f.only(), &sent)
		if diff := cmp.Diff(tc.want, sent.Traffic); diff != "" {
			t.Errorf("%s: sent (-want +got):\n%s", tc.name, diff)
		}
		rows := fields(r.stdout)
		for _, row := range [][]string{
			{"TRAFFIC", "REVISION", "LATEST", "TAG", "READY", "URL"},
			{"80%", "web-00001", "-", "-", "2", "-"},
			{"20%", "web-00003", "yes", "canary", "1", "http://127.0.0.1:8080/svc/web@canary"},
		} {
			if !containsRow(rows, row) {
				t.Errorf("%s: no row %v in\n%s", tc.name, row, r.stdout)
			}
		}
	}

	// Bad input is refused before any request.
	for _, args := range [][]string{
		{},
		{"1"},
		{"1=abc"},
		{"1=101"},
		{"1=-5"},
		{"x=100"},
		{"0=100"},
		{"api-00001=100"},
		{"1=50", "1=50"},
		{"latest=100", "--tag", "=1"},
		{"latest=100", "--tag", "canary"},
		{"latest=100", "--tag", "canary=nope"},
	} {
		f := newFakeAPI(t)
		r := f.run(append([]string{"service", "traffic", "web"}, args...)...)
		if r.code != ExitUsage || len(f.requests()) != 0 {
			t.Errorf("traffic %q: exit %d with %d requests, want a usage error; stderr %q", args, r.code, len(f.requests()), r.stderr)
		}
	}

	// The server's refusal is the exit's.
	f := newFakeAPI(t)
	f.on("PUT /v1/services/web/traffic", jsonReply(400, v1.Error{Code: v1.CodeInvalid, Message: "traffic: percents sum to 90, not 100: invalid"}))
	r := f.run("service", "traffic", "web", "1=90")
	if r.code == ExitOK || !strings.Contains(r.stderr, "sum to 90") {
		t.Errorf("a refused split: exit %d, stderr %q", r.code, r.stderr)
	}

	// -o json prints the service.
	f = newFakeAPI(t)
	f.on("PUT /v1/services/web/traffic", jsonReply(200, svc))
	r = f.run("service", "traffic", "web", "latest=100", "-o", "json")
	var got v1.Service
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(svc, got); diff != "" {
		t.Errorf("-o json (-want +got):\n%s", diff)
	}
}

func TestServiceGetShowsTrafficAndKnativeFields(t *testing.T) {
	svc := trafficService()
	three := 3
	svc.Config.Args, svc.Config.LivenessPath, svc.Config.TimeoutSec = []string{"--v"}, "/alive", 30
	svc.Config.Target, svc.Config.InitialScale, svc.Config.Window = 5, &three, stratus.Duration(2*time.Minute)
	svc.Config.CPU, svc.Config.CPURequest = 1, 0.125
	f := newFakeAPI(t)
	f.on("GET /v1/services/web", jsonReply(200, svc))
	r := f.run("service", "get", "web")
	rows := fields(r.stdout)
	for _, row := range [][]string{
		{"args:", "--v"}, {"liveness:", "/alive"}, {"timeout:", "30s"}, {"target:", "5", "requests", "per", "replica"},
		{"initial", "scale:", "3"}, {"window:", "2m0s"}, {"cpu:", "1", "(request", "0.125)"},
		{"80%", "web-00001", "-", "-", "2", "-"},
		{"20%", "web-00003", "yes", "canary", "1", "http://127.0.0.1:8080/svc/web@canary"},
	} {
		if !containsRow(rows, row) {
			t.Errorf("get: no row %v in\n%s", row, r.stdout)
		}
	}
}

func TestServiceDeployKnativeFlags(t *testing.T) {
	f := newFakeAPI(t)
	f.on("PUT /v1/services/web", jsonReply(200, testService()))
	r := f.run("service", "deploy", "web", "--image", "web:v1", "--arg", "-v", "--arg", "serve", "--liveness", "/alive",
		"--timeout", "30", "--target", "2.5", "--initial-scale", "0", "--window", "90s", "--h2c", "--cpu", "1", "--cpu-request", "0.125")
	if r.code != ExitOK {
		t.Fatalf("deploy: exit %d, stderr %q", r.code, r.stderr)
	}
	var cfg stratus.ServiceConfig
	sentJSON(t, f.only(), &cfg)
	if !cmp.Equal(cfg.Args, []string{"-v", "serve"}) || cfg.LivenessPath != "/alive" || cfg.TimeoutSec != 30 || cfg.Target != 2.5 ||
		cfg.InitialScale == nil || *cfg.InitialScale != 0 || cfg.Window != stratus.Duration(90*time.Second) || !cfg.H2C ||
		cfg.CPU != 1 || cfg.CPURequest != 0.125 {
		t.Errorf("deploy sent %+v", cfg)
	}

	// Without the flags: nothing set.
	f = newFakeAPI(t)
	f.on("PUT /v1/services/web", jsonReply(200, testService()))
	if r := f.run("service", "deploy", "web", "--image", "web:v1"); r.code != ExitOK {
		t.Fatalf("deploy: exit %d, stderr %q", r.code, r.stderr)
	}
	cfg = stratus.ServiceConfig{}
	sentJSON(t, f.only(), &cfg)
	if cfg.InitialScale != nil || cfg.Window != 0 || cfg.TimeoutSec != 0 || cfg.Target != 0 || cfg.H2C || cfg.CPURequest != 0 {
		t.Errorf("deploy without the flags sent %+v", cfg)
	}
	for _, flag := range []string{"--timeout", "--target", "--window", "--cpu-request"} {
		if r := f.run("service", "deploy", "web", "--image", "web:v1", flag, "0"); r.code != ExitUsage {
			t.Errorf("%s 0: exit %d", flag, r.code)
		}
	}
}

// FuzzParseTraffic: any arguments give a split whose targets each name a
// revision or the latest, with a percent from 0 to 100, or a usage error;
// never a panic.
func FuzzParseTraffic(f *testing.F) {
	for _, seed := range [][2]string{
		{"1=80 latest=20", "canary=latest"}, {"web-00002=100%", ""}, {"2=100", "a=2 b=web-00002"},
		{"=", "="}, {"1==1", "x=y=z"}, {"web-=1", ""}, {"latest=100", "old=1"}, {"+1=100", ""}, {"1=+100", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, args, tags string) {
		split, err := parseTraffic("web", strings.Fields(args), strings.Fields(tags))
		if err != nil {
			return
		}
		for _, x := range split {
			if x.Latest == (x.Revision != 0) || x.Revision < 0 || x.Percent < 0 || x.Percent > 100 {
				t.Fatalf("parseTraffic(%q, %q) gave %+v", args, tags, split)
			}
		}
	})
}

func TestServiceRevisions(t *testing.T) {
	created := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	revs := v1.RevisionList{Revisions: []v1.ServiceRevision{
		{Number: 3, Name: "web-00003", Image: "app:v3", CreatedAt: created, Latest: true, Percent: 20, Tags: []string{"canary"}, Ready: 1},
		{Number: 2, Name: "web-00002", Image: "app:v2", CreatedAt: created.Add(-time.Hour)},
		{Number: 1, Name: "web-00001", Image: "app:v1", CreatedAt: created.Add(-2 * time.Hour), Percent: 80, Ready: 2},
	}}
	f := newFakeAPI(t)
	f.on("GET /v1/services/web/revisions", jsonReply(200, revs))
	r := f.run("service", "revisions", "web")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	rows := fields(r.stdout)
	for _, row := range [][]string{
		{"REVISION", "LATEST", "TRAFFIC", "TAGS", "READY", "IMAGE", "CREATED"},
		{"web-00003", "yes", "20%", "canary", "1", "app:v3", created.Local().Format(time.RFC3339)},
		{"web-00002", "-", "0%", "-", "0", "app:v2", created.Add(-time.Hour).Local().Format(time.RFC3339)},
		{"web-00001", "-", "80%", "-", "2", "app:v1", created.Add(-2 * time.Hour).Local().Format(time.RFC3339)},
	} {
		if !containsRow(rows, row) {
			t.Errorf("no row %v in\n%s", row, r.stdout)
		}
	}

	f = newFakeAPI(t)
	f.on("GET /v1/services/nope/revisions", jsonReply(404, v1.Error{Code: "ResourceNotFoundException", Message: `service "nope": not found`}))
	if r := f.run("service", "revisions", "nope"); r.code != ExitError || !strings.Contains(r.stderr, "not found") {
		t.Errorf("unknown service: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := newFakeAPI(t).run("service", "revisions"); r.code != ExitUsage {
		t.Errorf("no NAME: exit %d, want %d", r.code, ExitUsage)
	}
}
