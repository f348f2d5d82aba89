package cli

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestKeys(t *testing.T) {
	const id, secret = "STRA0123456789ABCDEF", "abcdEFGH0123456789+/abcdEFGH0123456789+/"
	f := newFakeAPI(t)
	f.on("POST /v1/keys", jsonReply(201, v1.AccessKey{AccessKeyID: id, SecretAccessKey: secret, Description: "ci", CreatedAt: testTime}))
	r := f.run("keys", "create", "--description", "ci")
	if r.code != ExitOK || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, secret) {
		t.Errorf("create: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "AWS_ACCESS_KEY_ID="+id) || !strings.Contains(r.stderr, "aws configure") ||
		!strings.Contains(r.stderr, "--endpoint-url "+f.url) || strings.Contains(r.stderr, secret) {
		t.Errorf("create's hint: %q", r.stderr)
	}
	var spec v1.AccessKeySpec
	sentJSON(t, f.only(), &spec)
	if spec.Description != "ci" {
		t.Errorf("create sent %+v", spec)
	}
	r = f.run("keys", "create", "-o", "json")
	var k v1.AccessKey
	decodeJSON(t, r.stdout, &k)
	if k.AccessKeyID != id || k.SecretAccessKey != secret {
		t.Errorf("create -o json: %q", r.stdout)
	}
	if r = f.run("keys", "create", "extra"); r.code != ExitUsage {
		t.Errorf("create with an argument: exit %d", r.code)
	}

	used := testTime.Add(3600e9)
	keys := []v1.AccessKey{
		{AccessKeyID: id, Description: "ci runner", CreatedAt: testTime, LastUsedAt: &used},
		{AccessKeyID: "STRAFEDCBA9876543210", CreatedAt: testTime},
	}
	f.on("GET /v1/keys", jsonReply(200, v1.AccessKeyList{Keys: keys}))
	r = f.run("keys", "ls")
	want := [][]string{
		{"ID", "DESCRIPTION", "CREATED", "LAST", "USED"},
		{id, "ci", "runner", "2026-01-02", "03:04:05", "2026-01-02", "04:04:05"},
		{"STRAFEDCBA9876543210", "-", "2026-01-02", "03:04:05", "-"},
	}
	if diff := cmp.Diff(want, fields(r.stdout)); diff != "" {
		t.Errorf("ls (-want +got):\n%s", diff)
	}
	r = f.run("keys", "ls", "-o", "json")
	var got []v1.AccessKey
	decodeJSON(t, r.stdout, &got)
	if diff := cmp.Diff(keys, got); diff != "" {
		t.Errorf("ls -o json (-want +got):\n%s", diff)
	}

	f.on("DELETE /v1/keys/"+id, reply{status: 204})
	if r = f.run("keys", "rm", id); r.code != ExitOK || r.stdout != "removed access key "+id+"\n" {
		t.Errorf("rm: exit %d, stdout %q", r.code, r.stdout)
	}
	f.on("DELETE /v1/keys/STRANOSUCHKEY0000000", jsonReply(404, v1.Error{Code: "NotFound", Message: "access key STRANOSUCHKEY0000000: not found"}))
	if r = f.run("keys", "rm", "STRANOSUCHKEY0000000"); r.code != ExitError || !strings.Contains(r.stderr, "not found") {
		t.Errorf("rm of an unknown key: exit %d, stderr %q", r.code, r.stderr)
	}
}
