package lambdaapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTags(t *testing.T) {
	ta, mf := newMetaAPI(t, 100)
	ta.createPython(t, "fn", nil)
	arn := url.PathEscape("arn:aws:lambda:us-east-1:123456789012:function:fn")
	path := "/2017-03-31/tags/" + arn
	list := func() map[string]string {
		t.Helper()
		var out listTagsResponse
		decodeInto(t, ta.do(t, "GET", path, nil), 200, &out)
		if out.Tags == nil {
			t.Fatal("ListTags answered no Tags object")
		}
		return out.Tags
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("no tags yet: %v", got)
	}
	if w := ta.do(t, "POST", path, map[string]any{"Tags": map[string]string{"team": "a", "env": "prod"}}); w.Code != http.StatusNoContent {
		t.Fatalf("tag: %d %s", w.Code, w.Body)
	}
	if w := ta.do(t, "POST", path, map[string]any{"Tags": map[string]string{"team": "b"}}); w.Code != http.StatusNoContent {
		t.Fatalf("tag: %d %s", w.Code, w.Body)
	}
	if diff := cmp.Diff(map[string]string{"team": "b", "env": "prod"}, list()); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if w := ta.do(t, "DELETE", path+"?tagKeys=env&tagKeys=never", nil); w.Code != http.StatusNoContent {
		t.Fatalf("untag: %d %s", w.Code, w.Body)
	}
	if diff := cmp.Diff(map[string]string{"team": "b"}, list()); diff != "" {
		t.Errorf("after untag (-want +got):\n%s", diff)
	}
	// GetFunction shows them.
	var gf getFunctionResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/fn", nil), 200, &gf)
	if gf.Tags["team"] != "b" {
		t.Errorf("GetFunction's Tags %v", gf.Tags)
	}

	many := map[string]string{}
	for i := range 50 {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		typ          string
	}{
		{"POST", path, map[string]any{"Tags": map[string]string{"aws:x": "1"}}, 400, "InvalidParameterValueException"},
		{"POST", path, map[string]any{"Tags": map[string]string{"": "1"}}, 400, "InvalidParameterValueException"},
		{"POST", path, map[string]any{"Tags": map[string]string{"k": strings.Repeat("v", 257)}}, 400, "InvalidParameterValueException"},
		{"POST", path, map[string]any{"Tags": many}, 400, "InvalidParameterValueException"},
		{"POST", path, map[string]any{}, 400, "InvalidParameterValueException"},
		{"POST", path, `{"Tags": []}`, 400, "InvalidRequestContentException"},
		{"DELETE", path, nil, 400, "InvalidParameterValueException"},
		{"POST", "/2017-03-31/tags/" + url.PathEscape("arn:aws:lambda:us-east-1:123456789012:function:fn:1"), map[string]any{"Tags": map[string]string{"a": "1"}}, 400, "InvalidParameterValueException"},
		{"GET", "/2017-03-31/tags/" + url.PathEscape("arn:aws:lambda:us-east-1:123456789012:event-source-mapping:0f6b3a3c-8d1e-4a57-9a77-2f2c4c8b9f01"), nil, 400, "InvalidParameterValueException"},
		{"GET", "/2017-03-31/tags/fn", nil, 400, "InvalidParameterValueException"},
		{"GET", "/2017-03-31/tags/" + url.PathEscape("arn:aws:lambda:us-east-1:123456789012:function:nope"), nil, 404, "ResourceNotFoundException"},
		{"POST", "/2017-03-31/tags/" + url.PathEscape("arn:aws:lambda:us-east-1:123456789012:function:nope"), map[string]any{"Tags": map[string]string{"a": "1"}}, 404, "ResourceNotFoundException"},
	} {
		wantError(t, ta.do(t, tc.method, tc.path, tc.body), tc.status, tc.typ)
	}
	if diff := cmp.Diff(map[string]string{"team": "b"}, list()); diff != "" {
		t.Errorf("refused requests changed the tags (-want +got):\n%s", diff)
	}
	_ = mf
}

func TestCheckTags(t *testing.T) {
	if err := checkTags(map[string]string{"a": "b"}); err != nil {
		t.Errorf("good tags: %v", err)
	}
	err := checkTags(map[string]string{"aws:a": "b"})
	if e, ok := err.(*Error); !ok || e.Type != "InvalidParameterValueException" || strings.HasSuffix(e.Message, "invalid") {
		t.Errorf("reserved key: %v", err)
	}
}

func FuzzTaggedFunction(f *testing.F) {
	for _, s := range []string{"arn:aws:lambda:us-east-1:123456789012:function:fn", "arn:aws:lambda:us-east-1:123456789012:function:fn:1",
		"arn:aws:lambda:us-east-1:123456789012:code-signing-config:csc-1", "fn", "arn:aws:sns:r:1:t", ":::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arn string) {
		c := &call{params: map[string]string{"Resource": arn}}
		name, err := c.taggedFunction()
		if err == nil && (name == "" || strings.Contains(name, ":")) {
			t.Fatalf("%q named function %q", arn, name)
		}
	})
}
