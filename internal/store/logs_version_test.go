package store

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

// TestListLogsOfAVersion: a qualifier selects the lines of the instances
// that ran that version (an instance runs one version); records stored
// before qualifiers were kept count as $LATEST's.
func TestListLogsOfAVersion(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	var lines []stratus.LogLine
	for i, inst := range []string{"latest", "v1", "v2", "old", "v1", "idle"} {
		l := logLine("f", "r", t0, inst+string(rune('0'+i)))
		l.Instance = inst
		lines = append(lines, l)
	}
	if err := s.InsertLogs(ctx, lines); err != nil {
		t.Fatal(err)
	}
	recs := []stratus.Invocation{
		{RequestID: "a", Function: "f", Instance: "latest", Qualifier: stratus.LatestVersion, Start: t0, Outcome: stratus.OutcomeSuccess},
		{RequestID: "b", Function: "f", Instance: "v1", Qualifier: "1", Start: t0, Outcome: stratus.OutcomeSuccess},
		{RequestID: "c", Function: "f", Instance: "v2", Qualifier: "2", Start: t0, Outcome: stratus.OutcomeSuccess},
		{RequestID: "d", Function: "f", Instance: "old", Start: t0, Outcome: stratus.OutcomeSuccess},
		{RequestID: "e", Function: "g", Instance: "idle", Qualifier: "1", Start: t0, Outcome: stratus.OutcomeSuccess},
	}
	if err := s.InsertInvocations(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"", []string{"latest0", "v11", "v22", "old3", "v14", "idle5"}},
		{stratus.LatestVersion, []string{"latest0", "old3"}},
		{"1", []string{"v11", "v14"}},
		{"2", []string{"v22"}},
		{"3", []string{}},
	} {
		got, err := s.ListLogs(ctx, "f", LogQuery{Qualifier: tc.q})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, texts(got)); diff != "" {
			t.Errorf("qualifier %q (-want +got):\n%s", tc.q, diff)
		}
	}
}
