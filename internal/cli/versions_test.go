package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestPublish(t *testing.T) {
	v := v1.Version{Function: "fn", Version: "2", Snapshot: 5, Description: "second", CodeSHA: "abc", CodeSize: 10, CreatedAt: testTime}
	f := newFakeAPI(t)
	f.on("POST /v1/functions/fn/publish", jsonReply(201, v), jsonReply(200, v))
	r := f.run("publish", "fn", "--description", "second")
	if r.code != ExitOK || r.stdout != "2\n" || r.stderr != "" {
		t.Errorf("publish: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var spec v1.PublishSpec
	sentJSON(t, f.only(), &spec)
	if spec.Description != "second" {
		t.Errorf("publish sent %+v", spec)
	}
	// Nothing changed: the same number, and a word on stderr.
	r = f.run("publish", "fn")
	if r.code != ExitOK || r.stdout != "2\n" || r.stderr != "fn has not changed since version 2 was published\n" {
		t.Errorf("publish of nothing new: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = f.run("publish", "fn", "-o", "json")
	var got v1.Version
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(v, got); diff != "" {
		t.Errorf("publish -o json (-want +got):\n%s", diff)
	}
	if r = f.run("publish", "fn:1"); r.code != ExitUsage {
		t.Errorf("publish of a qualified name: exit %d", r.code)
	}
	f.on("POST /v1/functions/nope/publish", apiError(404, v1.CodeNotFound, `function "nope": not found`))
	if r = f.run("publish", "nope"); r.code != ExitError || r.stderr != "error: function \"nope\": not found (ResourceNotFoundException)\n" {
		t.Errorf("publish of an unknown function: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestVersions(t *testing.T) {
	vs := []v1.Version{
		{Function: "fn", Version: stratus.LatestVersion, Snapshot: 3, CodeSHA: "ccc", CreatedAt: testTime},
		{Function: "fn", Version: "1", Snapshot: 1, CodeSHA: "aaa", Description: "first one", CreatedAt: testTime},
		{Function: "fn", Version: "2", Snapshot: 2, CodeSHA: "bbb", CreatedAt: testTime},
	}
	f := newFakeAPI(t)
	f.on("GET /v1/functions/fn/versions", jsonReply(200, v1.VersionList{Versions: vs}))
	r := f.run("versions", "fn")
	want := [][]string{
		{"VERSION", "CODE", "SHA256", "CREATED", "DESCRIPTION"},
		{"$LATEST", "ccc", "2026-01-02", "03:04:05", "-"},
		{"1", "aaa", "2026-01-02", "03:04:05", "first", "one"},
		{"2", "bbb", "2026-01-02", "03:04:05", "-"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("versions: exit %d (-want +got):\n%s", r.code, diff)
	}
	r = f.run("versions", "fn", "-o", "json")
	var got []v1.Version
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(vs, got); diff != "" {
		t.Errorf("versions -o json (-want +got):\n%s", diff)
	}
}

func TestAlias(t *testing.T) {
	live := stratus.Alias{Function: "fn", Name: "live", Version: "1", Weights: map[string]float64{"2": 0.1}, Description: "prod", RevisionID: "r-1"}
	f := newFakeAPI(t)
	f.on("PUT /v1/functions/fn/aliases/live", jsonReply(201, live), jsonReply(200, live))
	r := f.run("alias", "set", "fn", "live", "1", "--weight", "2=0.1", "--description", "prod")
	if r.code != ExitOK || r.stdout != "created alias fn:live: version 1 (90%), 2 (10%)\n" {
		t.Errorf("set: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var spec v1.AliasSpec
	sentJSON(t, f.only(), &spec)
	if diff := cmp.Diff(v1.AliasSpec{Version: "1", Weights: map[string]float64{"2": 0.1}, Description: "prod"}, spec); diff != "" {
		t.Errorf("set sent (-want +got):\n%s", diff)
	}
	if r = f.run("alias", "set", "fn", "live", "1", "--weight", "2=0.1"); r.code != ExitOK || r.stdout != "updated alias fn:live: version 1 (90%), 2 (10%)\n" {
		t.Errorf("set again: exit %d, stdout %q", r.code, r.stdout)
	}

	// Bad command lines send nothing.
	before := len(f.requests())
	for _, args := range [][]string{
		{"alias", "set", "fn", "live", "1", "--weight", "2=lots"},
		{"alias", "set", "fn", "live", "1", "--weight", "2"},
		{"alias", "set", "fn", "live", "1", "--weight", "2=0.7", "--weight", "3=0.6"},
		{"alias", "set", "fn", "live", "1", "--weight", "2=1.5"},
		{"alias", "set", "fn", "live", "1", "--weight", "1=0.5"},
		{"alias", "set", "fn", "live", "one"},
		{"alias", "set", "fn", "123", "1"},
		{"alias", "set", "fn", "live"},
	} {
		if r := f.run(args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, stderr %q; want %d", args, r.code, r.stderr, ExitUsage)
		}
	}
	if n := len(f.requests()); n != before {
		t.Errorf("refused command lines sent %d requests", n-before)
	}
	f.on("PUT /v1/functions/fn/aliases/live", apiError(400, v1.CodeInvalid, `alias "live": version 9 of function "fn": not found`))
	if r = f.run("alias", "set", "fn", "live", "9"); r.code != ExitError || r.stderr == "" {
		t.Errorf("set to a missing version: exit %d, stderr %q", r.code, r.stderr)
	}

	plain := stratus.Alias{Function: "fn", Name: "beta", Version: stratus.LatestVersion, RevisionID: "r-2"}
	f.on("GET /v1/functions/fn/aliases", jsonReply(200, v1.AliasList{Aliases: []stratus.Alias{plain, live}}))
	r = f.run("alias", "ls", "fn")
	want := [][]string{
		{"ALIAS", "VERSION", "DESCRIPTION"},
		{"beta", "$LATEST", "-"},
		{"live", "1", "(90%),", "2", "(10%)", "prod"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); r.code != ExitOK || diff != "" {
		t.Errorf("ls: exit %d (-want +got):\n%s", r.code, diff)
	}
	r = f.run("alias", "ls", "fn", "-o", "json")
	var list []stratus.Alias
	decodeJSON(t, r.stdout, &list)
	if diff := cmp.Diff([]stratus.Alias{plain, live}, list); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("GET /v1/functions/fn/aliases/live", jsonReply(200, live))
	r = f.run("alias", "get", "fn", "live")
	rows := fields(r.stdout)
	for _, row := range [][]string{{"Version:", "1", "(90%),", "2", "(10%)"}, {"Revision", "ID:", "r-1"}, {"Invoke", "as:", "fn:live"}} {
		if !containsRow(rows, row) {
			t.Errorf("get: no row %v in\n%s", row, r.stdout)
		}
	}

	f.on("DELETE /v1/functions/fn/aliases/live", reply{status: 204})
	if r = f.run("alias", "rm", "fn", "live"); r.code != ExitOK || r.stdout != "removed alias fn:live\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestInvokeQualified: a qualified name reaches the invoke route with its
// ':' escaped, and the version that ran is said on stderr.
func TestInvokeQualified(t *testing.T) {
	f := newFakeAPI(t)
	f.on("POST /v1/functions/fn:live/invoke", reply{status: 200, body: `{"ok":true}`,
		header: map[string]string{v1.HeaderVersion: "2", v1.HeaderRequestID: "req-1"}})
	r := f.run("invoke", "fn:live")
	if r.code != ExitOK || r.stdout != "{\"ok\":true}\n" || r.stderr != "ran fn:live version 2\n" {
		t.Errorf("invoke fn:live: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if c := f.only(); c.Header.Get("Content-Type") != "application/json" {
		t.Errorf("invoke sent %+v", c)
	}
	f.on("POST /v1/functions/fn:live/invoke", reply{status: 202, body: `{"requestId":"req-2"}`})
	if r = f.run("invoke", "fn:live", "--async"); r.code != ExitOK || r.stdout != "req-2\n" {
		t.Errorf("invoke fn:live --async: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
