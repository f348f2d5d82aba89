package cli

import (
	"testing"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// TestServiceLogsReplicaNames: a service's lines name their replica whole;
// replicas of one revision differ only after the service's name and the
// revision's number.
func TestServiceLogsReplicaNames(t *testing.T) {
	lines := []stratus.LogLine{
		{ID: 1, Function: stratus.ServiceLogKey("web"), Time: testTime, Instance: "web-3-5c1f0e9a77b2d410", Stream: stratus.StreamStdout, Text: "listening"},
		{ID: 2, Function: stratus.ServiceLogKey("web"), Time: testTime, Instance: "web-3-a04be61c39d8f2e7", Stream: stratus.StreamStdout, Text: "listening"},
	}
	f := newFakeAPI(t)
	f.on("GET /v1/services/web/logs", jsonReply(200, v1.LogList{Lines: lines}), jsonReply(200, v1.LogList{Lines: []stratus.LogLine{}}))
	r := f.run("svc", "logs", "web")
	want := "2026-01-02T03:04:05.000 web-3-5c1f0e9a77b2d410 listening\n" +
		"2026-01-02T03:04:05.000 web-3-a04be61c39d8f2e7 listening\n"
	if r.code != ExitOK || r.stdout != want {
		t.Errorf("exit %d (%s), stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
}
