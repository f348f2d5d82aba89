package lambdaapi

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGetAccountSettings(t *testing.T) {
	ta, _ := newMetaAPI(t, 300)
	a := ta.createPython(t, "a", nil)
	b := ta.createPython(t, "b", nil)
	decodeInto(t, ta.do(t, "PUT", "/2017-10-31/functions/a/concurrency", map[string]int{"ReservedConcurrentExecutions": 15}), 200, nil)
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/b/versions", map[string]any{}), 201, nil)
	var got getAccountSettingsResponse
	decodeInto(t, ta.do(t, "GET", "/2016-08-19/account-settings", nil), 200, &got)
	want := getAccountSettingsResponse{
		AccountLimit: accountLimit{TotalCodeSize: 75 << 30, CodeSizeUnzipped: 250 << 20, CodeSizeZipped: 50 << 20, ConcurrentExecutions: 300, UnreservedConcurrentExecutions: 285},
		AccountUsage: accountUsage{TotalCodeSize: a.CodeSize + 2*b.CodeSize, FunctionCount: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("account settings (-want +got):\n%s", diff)
	}
	// Functions that tell no limits: the server's defaults.
	plain := newTestAPI(t)
	decodeInto(t, plain.do(t, "GET", "/2016-08-19/account-settings", nil), 200, &got)
	if got.AccountLimit.ConcurrentExecutions != 100 || got.AccountUsage.FunctionCount != 0 || got.AccountLimit.UnreservedConcurrentExecutions != 100 {
		t.Errorf("defaults %+v", got)
	}
}
