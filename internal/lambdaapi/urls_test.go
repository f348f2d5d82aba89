package lambdaapi

import (
	"net/http"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestFunctionURLConfig(t *testing.T) {
	ta, mf := newMetaAPI(t, 100)
	ta.createPython(t, "fn", nil)
	const path = "/2021-10-31/functions/fn/url"
	auth := func() string { h, _ := mf.Head("fn"); return h.Config.Auth }
	wantError(t, ta.do(t, "GET", path, nil), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "PUT", path, map[string]any{"AuthType": "NONE"}), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "DELETE", path, nil), 404, "ResourceNotFoundException")

	var made functionURLConfig
	decodeInto(t, ta.do(t, "POST", path, map[string]any{"AuthType": "NONE", "Cors": map[string]any{"AllowOrigins": []string{"*"}, "MaxAge": 60}}), 201, &made)
	if made.FunctionURL != "http://example.com/fn/fn/" || made.AuthType != "NONE" || made.InvokeMode != "BUFFERED" ||
		made.FunctionArn != "arn:aws:lambda:eu-test-1:123456789012:function:fn" || made.CreationTime != "2026-03-04T05:06:07.000000Z" ||
		made.LastModifiedTime != "" || made.Cors == nil || made.Cors.AllowOrigins[0] != "*" || *made.Cors.MaxAge != 60 {
		t.Errorf("create answered %+v", made)
	}
	if auth() != stratus.AuthNone {
		t.Errorf("auth %q after NONE", auth())
	}
	wantError(t, ta.do(t, "POST", path, map[string]any{"AuthType": "NONE"}), 409, "ResourceConflictException")

	var got functionURLConfig
	decodeInto(t, ta.do(t, "GET", path, nil), 200, &got)
	if got.FunctionURL != made.FunctionURL || got.LastModifiedTime == "" || got.Cors == nil {
		t.Errorf("get %+v", got)
	}
	// Update: the auth changes, the CORS stays.
	decodeInto(t, ta.do(t, "PUT", path, map[string]any{"AuthType": "AWS_IAM"}), 200, &got)
	if got.AuthType != "AWS_IAM" || auth() != stratus.AuthSigned || got.Cors == nil || got.CreationTime != made.CreationTime {
		t.Errorf("update %+v, auth %q", got, auth())
	}
	var list listFunctionURLConfigsResponse
	decodeInto(t, ta.do(t, "GET", "/2021-10-31/functions/fn/urls", nil), 200, &list)
	if len(list.FunctionURLConfigs) != 1 || list.FunctionURLConfigs[0].AuthType != "AWS_IAM" {
		t.Errorf("list %+v", list)
	}

	// Refused, changing nothing.
	before, _ := mf.Head("fn")
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		typ          string
	}{
		{"PUT", path, map[string]any{"AuthType": "OPEN"}, 400, "InvalidParameterValueException"},
		{"PUT", path, map[string]any{"InvokeMode": "RESPONSE_STREAM"}, 400, "InvalidParameterValueException"},
		{"PUT", path, map[string]any{"Cors": map[string]any{"MaxAge": 86401}}, 400, "InvalidParameterValueException"},
		{"PUT", path, map[string]any{"Cors": map[string]any{"AllowMethods": []string{"GET", "PUT", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS"}}}, 400, "InvalidParameterValueException"},
		{"PUT", path + "?Qualifier=live", map[string]any{"AuthType": "NONE"}, 400, "InvalidParameterValueException"},
		{"POST", "/2021-10-31/functions/nope/url", map[string]any{"AuthType": "NONE"}, 404, "ResourceNotFoundException"},
		{"POST", path, `{"AuthType": 1}`, 400, "InvalidRequestContentException"},
		{"GET", "/2021-10-31/functions/fn/urls?MaxItems=51", nil, 400, "InvalidParameterValueException"},
	} {
		wantError(t, ta.do(t, tc.method, tc.path, tc.body), tc.status, tc.typ)
	}
	if after, _ := mf.Head("fn"); after.Version != before.Version {
		t.Errorf("a refused request made version %d after %d", after.Version, before.Version)
	}
	if u, _ := mf.URL(t.Context(), "fn"); u.InvokeMode != "BUFFERED" || u.Cors == "" {
		t.Errorf("a refused request changed the URL: %+v", u)
	}
	second := ta.createPython(t, "other", nil)
	_ = second
	wantError(t, ta.do(t, "POST", "/2021-10-31/functions/other/url", map[string]any{}), 400, "InvalidParameterValueException")
	if _, err := mf.URL(t.Context(), "other"); err == nil {
		t.Error("a create without AuthType made a URL")
	}

	if w := ta.do(t, "DELETE", path, nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if auth() != stratus.AuthToken {
		t.Errorf("auth %q after the URL's removal, want the token", auth())
	}
	decodeInto(t, ta.do(t, "GET", "/2021-10-31/functions/fn/urls", nil), 200, &list)
	if len(list.FunctionURLConfigs) != 0 {
		t.Errorf("list after delete %+v", list)
	}
	wantError(t, ta.do(t, "GET", "/2021-10-31/functions/nope/urls", nil), 404, "ResourceNotFoundException")
}

// Without a keeper of URLs the operations say so; they never pretend.
func TestFunctionURLConfigUnkept(t *testing.T) {
	ta := newTestAPI(t)
	ta.createPython(t, "fn", nil)
	wantError(t, ta.do(t, "POST", "/2021-10-31/functions/fn/url", map[string]any{"AuthType": "NONE"}), 501, "ServiceException")
}
