package lambdaapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestEventInvokeConfig(t *testing.T) {
	ta, mf := newMetaAPI(t, 100)
	ta.createPython(t, "fn", nil)
	ta.createPython(t, "sink", nil)
	const path = "/2019-09-25/functions/fn/event-invoke-config"
	wantError(t, ta.do(t, "GET", path, nil), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "DELETE", path, nil), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "POST", path, map[string]any{"MaximumRetryAttempts": 1}), 404, "ResourceNotFoundException")

	var put functionEventInvokeConfig
	decodeInto(t, ta.do(t, "PUT", path, map[string]any{
		"MaximumRetryAttempts": 1, "MaximumEventAgeInSeconds": 120,
		"DestinationConfig": map[string]any{
			"OnSuccess": map[string]string{"Destination": "arn:aws:lambda:us-east-1:123456789012:function:sink"},
			"OnFailure": map[string]string{"Destination": "arn:aws:sns:us-east-1:123456789012:alerts"},
		},
	}), 200, &put)
	head, _ := mf.Head("fn")
	cfg := head.Config
	if cfg.Retries() != 1 || cfg.EventAge() != 2*time.Minute || cfg.OnSuccess != "function:sink" || cfg.OnFailure != "topic:alerts" {
		t.Errorf("config %+v", cfg)
	}
	str := func(s string) *string { return &s }
	one, age := 1, 120
	want := functionEventInvokeConfig{
		LastModified: epochSeconds(head.CreatedAt), FunctionArn: "arn:aws:lambda:eu-test-1:123456789012:function:fn:$LATEST",
		MaximumRetryAttempts: &one, MaximumEventAgeInSeconds: &age,
		DestinationConfig: destinationConfig{
			OnSuccess: &destination{Destination: str("arn:aws:lambda:eu-test-1:123456789012:function:sink")},
			OnFailure: &destination{Destination: str("arn:aws:sns:eu-test-1:123456789012:alerts")},
		},
	}
	if diff := cmp.Diff(want, put); diff != "" {
		t.Errorf("put answered (-want +got):\n%s", diff)
	}
	if put.LastModified < 1e9 || put.LastModified != float64(head.CreatedAt.UnixMilli())/1000 {
		t.Errorf("LastModified %v: want seconds since the epoch", put.LastModified)
	}
	var got functionEventInvokeConfig
	decodeInto(t, ta.do(t, "GET", path+"?Qualifier=$LATEST", nil), 200, &got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("get (-want +got):\n%s", diff)
	}
	// The wire form: LastModified a number, empty destinations as {}.
	if b := ta.do(t, "GET", path, nil).Body.String(); !strings.Contains(b, `"LastModified":17`) {
		t.Errorf("body %s: LastModified is not epoch seconds", b)
	}

	// Update merges: the retries change, the rest stays; a destination
	// given empty is removed.
	got = functionEventInvokeConfig{}
	decodeInto(t, ta.do(t, "POST", path, map[string]any{
		"MaximumRetryAttempts": 0, "DestinationConfig": map[string]any{"OnSuccess": map[string]string{}},
	}), 200, &got)
	cfg = func() stratus.FunctionConfig { h, _ := mf.Head("fn"); return h.Config }()
	if cfg.Retries() != 0 || cfg.EventAge() != 2*time.Minute || cfg.OnSuccess != "" || cfg.OnFailure != "topic:alerts" {
		t.Errorf("after update: %+v", cfg)
	}
	if got.DestinationConfig.OnSuccess == nil || got.DestinationConfig.OnSuccess.Destination != nil {
		t.Errorf("update answered %+v", got.DestinationConfig)
	}
	// Put replaces all: what it leaves out is the default again.
	decodeInto(t, ta.do(t, "PUT", path, map[string]any{"MaximumEventAgeInSeconds": 60}), 200, &got)
	cfg = func() stratus.FunctionConfig { h, _ := mf.Head("fn"); return h.Config }()
	if cfg.Retries() != 2 || cfg.EventAge() != time.Minute || cfg.OnFailure != "" {
		t.Errorf("after a second put: %+v", cfg)
	}
	var list listEventInvokeConfigsResponse
	decodeInto(t, ta.do(t, "GET", path+"/list?MaxItems=5", nil), 200, &list)
	if len(list.FunctionEventInvokeConfigs) != 1 {
		t.Errorf("list %+v", list)
	}

	// Refused, changing nothing.
	before, _ := mf.Head("fn")
	for _, tc := range []struct {
		path string
		body any
		typ  string
	}{
		{path, map[string]any{"MaximumRetryAttempts": 3}, "InvalidParameterValueException"},
		{path, map[string]any{"MaximumRetryAttempts": -1}, "InvalidParameterValueException"},
		{path, map[string]any{"MaximumEventAgeInSeconds": 59}, "InvalidParameterValueException"},
		{path, map[string]any{"MaximumEventAgeInSeconds": 21601}, "InvalidParameterValueException"},
		{path + "?Qualifier=1", map[string]any{}, "InvalidParameterValueException"},
		{"/2019-09-25/functions/fn:live/event-invoke-config", map[string]any{}, "InvalidParameterValueException"},
		{path, map[string]any{"DestinationConfig": map[string]any{"OnFailure": map[string]string{"Destination": "arn:aws:sqs:us-east-1:123456789012:q"}}}, "InvalidParameterValueException"},
		{path, map[string]any{"DestinationConfig": map[string]any{"OnFailure": map[string]string{"Destination": "arn:aws:s3:::bucket"}}}, "InvalidParameterValueException"},
		{path, map[string]any{"DestinationConfig": map[string]any{"OnFailure": map[string]string{"Destination": "nonsense"}}}, "InvalidParameterValueException"},
		{path, `{"MaximumRetryAttempts": "two"}`, "InvalidRequestContentException"},
		{"/2019-09-25/functions/nope/event-invoke-config", map[string]any{}, "ResourceNotFoundException"},
	} {
		w := ta.do(t, "PUT", tc.path, tc.body)
		if w.Code < 400 || w.Header().Get("X-Amzn-ErrorType") != tc.typ {
			t.Errorf("PUT %s %v: %d %s %s, want %s", tc.path, tc.body, w.Code, w.Header().Get("X-Amzn-ErrorType"), w.Body, tc.typ)
		}
	}
	if after, _ := mf.Head("fn"); after.Version != before.Version || after.Config.OnFailure != before.Config.OnFailure {
		t.Errorf("a refused put changed the function: version %d after %d", after.Version, before.Version)
	}

	if w := ta.do(t, "DELETE", path, nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	if h, _ := mf.Head("fn"); hasEventInvokeConfig(&h.Config) {
		t.Errorf("after delete: %+v", h.Config)
	}
	wantError(t, ta.do(t, "GET", path, nil), 404, "ResourceNotFoundException")
	decodeInto(t, ta.do(t, "GET", path+"/list", nil), 200, &list)
	if len(list.FunctionEventInvokeConfigs) != 0 {
		t.Errorf("list after delete %+v", list)
	}
	// A configuration put with no fields exists.
	decodeInto(t, ta.do(t, "PUT", path, map[string]any{}), 200, &got)
	decodeInto(t, ta.do(t, "GET", path, nil), 200, &got)
}

func TestStratusDestination(t *testing.T) {
	for _, tc := range []struct{ arn, want string }{
		{"", ""},
		{"arn:aws:lambda:us-east-1:123456789012:function:sink", "function:sink"},
		{"arn:aws:lambda:us-east-1:123456789012:function:sink:$LATEST", ""},
		{"arn:aws:sns:eu-west-1:123456789012:alerts", "topic:alerts"},
		{"arn:aws:events:eu-west-1:123456789012:event-bus/orders", "topic:orders"},
		{"arn:aws:events:eu-west-1:123456789012:rule/orders", ""},
		{"arn:aws:sqs:eu-west-1:123456789012:q", ""},
		{"arn:aws:sns:eu-west-1:123456789012:bad.name", ""},
		{"arn:aws:lambda:us-east-1:123456789012:function:sink:live", ""},
		{"topic:alerts", ""},
	} {
		got, err := stratusDestination("D", tc.arn)
		if tc.want == "" && tc.arn != "" {
			// Refused, unless ParseDestination takes qualified function
			// names (then the qualified form is the answer).
			if err == nil && !strings.HasPrefix(got, "function:sink:") {
				t.Errorf("%q: %q, want an error", tc.arn, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.arn, got, err, tc.want)
		}
	}
}

func FuzzStratusDestination(f *testing.F) {
	for _, s := range []string{"", "arn:aws:lambda:us-east-1:123456789012:function:sink", "arn:aws:sns:eu-west-1:123456789012:alerts",
		"arn:aws:events:eu-west-1:123456789012:event-bus/orders", "arn:aws:sqs:x:1:q", "arn:::::", "arn:aws:sns:r:a:a:b", "function:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arn string) {
		d, err := stratusDestination("D", arn)
		if err != nil || d == "" {
			return
		}
		if _, _, err := stratus.ParseDestination(d); err != nil {
			t.Fatalf("%q became %q, which is no destination: %v", arn, d, err)
		}
	})
}
