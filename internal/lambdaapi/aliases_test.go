package lambdaapi

import (
	"net/http"
	"testing"
)

func TestAliases(t *testing.T) {
	ta := newTestAPI(t)
	ta.createPython(t, "f", nil)
	ta.do(t, "POST", "/2015-03-31/functions/f/versions", nil)
	ta.do(t, "PUT", "/2015-03-31/functions/f/configuration", map[string]any{"MemorySize": 256})
	ta.do(t, "POST", "/2015-03-31/functions/f/versions", nil)

	var al aliasConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{
		"Name": "live", "FunctionVersion": "1", "Description": "prod",
		"RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.25}},
	}), 201, &al)
	if al.AliasArn != "arn:aws:lambda:eu-test-1:123456789012:function:f:live" || al.FunctionVersion != "1" || al.Description != "prod" ||
		al.RoutingConfig == nil || al.RoutingConfig.AdditionalVersionWeights["2"] != 0.25 || al.RevisionID == "" {
		t.Fatalf("CreateAlias %+v", al)
	}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{"Name": "live", "FunctionVersion": "1"}), 409, "ResourceConflictException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{"Name": "x", "FunctionVersion": "9"}), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{
		"Name": "x", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 1.5}},
	}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{"Name": "123", "FunctionVersion": "1"}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/nope/aliases", map[string]any{"Name": "x", "FunctionVersion": "1"}), 404, "ResourceNotFoundException")

	var got aliasConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f/aliases/live", nil), 200, &got)
	if got.RevisionID != al.RevisionID {
		t.Errorf("GetAlias %+v", got)
	}
	// The alias names a version in GetFunction; its ARN carries the alias.
	var cfg functionConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f:live/configuration", nil), 200, &cfg)
	if cfg.Version != "1" || cfg.FunctionArn != "arn:aws:lambda:eu-test-1:123456789012:function:f:live" {
		t.Errorf("configuration of f:live: %s %s", cfg.Version, cfg.FunctionArn)
	}

	// UpdateAlias keeps what it does not name; an empty RoutingConfig
	// removes the weights; a stale RevisionId fails.
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/aliases/live", map[string]any{"FunctionVersion": "2", "RevisionId": "stale"}), 412, "PreconditionFailedException")
	var up aliasConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/f/aliases/live", map[string]any{
		"FunctionVersion": "2", "RoutingConfig": map[string]any{}, "RevisionId": al.RevisionID,
	}), 200, &up)
	if up.FunctionVersion != "2" || up.Description != "prod" || up.RoutingConfig != nil || up.RevisionID == al.RevisionID {
		t.Errorf("UpdateAlias %+v", up)
	}
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/aliases/nope", map[string]any{"FunctionVersion": "2"}), 404, "ResourceNotFoundException")

	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{"Name": "beta", "FunctionVersion": "$LATEST"}), 201, nil)
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/f/aliases", map[string]any{"Name": "old", "FunctionVersion": "1"}), 201, nil)
	var list listAliasesResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f/aliases?MaxItems=2", nil), 200, &list)
	if len(list.Aliases) != 2 || list.Aliases[0].Name != "beta" || list.Aliases[1].Name != "live" || list.NextMarker != "old" {
		t.Errorf("ListAliases page 1: %+v next %q", list.Aliases, list.NextMarker)
	}
	list = listAliasesResponse{}
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f/aliases?FunctionVersion=1", nil), 200, &list)
	if len(list.Aliases) != 1 || list.Aliases[0].Name != "old" {
		t.Errorf("ListAliases of version 1: %+v", list.Aliases)
	}

	// A version an alias uses is not deleted.
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/f?Qualifier=1", nil), 409, "ResourceConflictException")
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/f/aliases/old", nil); w.Code != http.StatusNoContent {
		t.Fatalf("DeleteAlias: %d %s", w.Code, w.Body)
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/f/aliases/old", nil), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/f/aliases/old", nil), 404, "ResourceNotFoundException")
}
