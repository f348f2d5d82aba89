package lambdaapi

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

// Every operation of the model is routed to itself from its own URI.
func TestRouterMatchesEveryOperation(t *testing.T) {
	rt := newRouter(operations)
	if len(operations) < 80 {
		t.Fatalf("the table has %d operations; the model has 85", len(operations))
	}
	for i := range operations {
		op := &operations[i]
		path, query, _ := strings.Cut(op.URI, "?")
		want := map[string]string{}
		var segs []string
		for _, s := range strings.Split(path, "/") {
			if isParam(s) {
				v := "arn:aws:lambda:eu-test-1:123456789012:function:f-" + s[1:len(s)-1] + ":live"
				want[s[1:len(s)-1]] = v
				s = url.PathEscape(v)
			}
			segs = append(segs, s)
		}
		target := strings.Join(segs, "/")
		if query != "" {
			target += "?" + query + "&Other=1"
		}
		got, params, err := rt.match(httptest.NewRequest(op.Method, target, nil))
		if err != nil {
			t.Errorf("%s %s: %v", op.Method, target, err)
			continue
		}
		if got.Name != op.Name {
			t.Errorf("%s %s: matched %s, want %s", op.Method, target, got.Name, op.Name)
		}
		if len(want) == 0 {
			want = nil
		}
		if diff := cmp.Diff(want, params); diff != "" {
			t.Errorf("%s params (-want +got):\n%s", op.Name, diff)
		}
	}
}

func TestRouterCases(t *testing.T) {
	rt := newRouter(operations)
	for _, tc := range []struct {
		method, target string
		op             string // "" = no operation
		params         map[string]string
	}{
		{"GET", "/2015-03-31/functions/", "ListFunctions", nil},
		{"GET", "/2015-03-31/functions", "ListFunctions", nil},
		{"POST", "/2015-03-31/functions/my-fn/invocations", "Invoke", map[string]string{"FunctionName": "my-fn"}},
		{"POST", "/2015-03-31/functions/my-fn%3A2/invocations?Qualifier=2", "Invoke", map[string]string{"FunctionName": "my-fn:2"}},
		{"POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn/invocations", "Invoke",
			map[string]string{"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:my-fn"}},
		{"POST", "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:my-fn/invocations", "Invoke",
			map[string]string{"FunctionName": "arn:aws:lambda:us-east-1:123456789012:function:my-fn"}},
		{"GET", "/2015-03-31/functions/f/aliases/live", "GetAlias", map[string]string{"FunctionName": "f", "Name": "live"}},
		{"GET", "/2019-09-30/functions/f/concurrency", "GetFunctionConcurrency", map[string]string{"FunctionName": "f"}},
		{"PUT", "/2017-10-31/functions/f/concurrency", "PutFunctionConcurrency", map[string]string{"FunctionName": "f"}},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency", "GetProvisionedConcurrencyConfig", map[string]string{"FunctionName": "f"}},
		{"GET", "/2019-09-30/functions/f/provisioned-concurrency?List=ALL", "ListProvisionedConcurrencyConfigs", map[string]string{"FunctionName": "f"}},
		{"GET", "/2018-10-31/layers?find=LayerVersion", "GetLayerVersionByArn", nil},
		{"GET", "/2018-10-31/layers", "ListLayers", nil},
		{"GET", "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aeu-test-1%3A123456789012%3Afunction%3Af", "ListTags",
			map[string]string{"Resource": "arn:aws:lambda:eu-test-1:123456789012:function:f"}},
		{"GET", "/2015-03-31/functions//configuration", "", nil},
		{"GET", "/2015-03-31/functions/f/bogus", "", nil},
		{"PATCH", "/2015-03-31/functions/f", "", nil},
		{"GET", "/", "", nil},
	} {
		op, params, err := rt.match(httptest.NewRequest(tc.method, tc.target, nil))
		if tc.op == "" {
			if err == nil {
				t.Errorf("%s %s: matched %s, want no operation", tc.method, tc.target, op.Name)
			} else if e := errorFrom(nil, err); e.Type != "UnknownOperationException" || e.status() != 404 {
				t.Errorf("%s %s: %s %d", tc.method, tc.target, e.Type, e.status())
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.target, err)
			continue
		}
		if op.Name != tc.op {
			t.Errorf("%s %s: %s, want %s", tc.method, tc.target, op.Name, tc.op)
		}
		if diff := cmp.Diff(tc.params, params); diff != "" {
			t.Errorf("%s %s params (-want +got):\n%s", tc.method, tc.target, diff)
		}
	}
}

func TestPrefixes(t *testing.T) {
	p := Prefixes()
	for _, want := range []string{"/2015-03-31/", "/2016-08-19/", "/2017-03-31/", "/2017-10-31/", "/2019-09-25/", "/2019-09-30/", "/2021-10-31/"} {
		found := false
		for _, x := range p {
			found = found || x == want
		}
		if !found {
			t.Errorf("Prefixes() = %v lacks %s", p, want)
		}
	}
	for _, x := range p {
		if !strings.HasPrefix(x, "/20") || !strings.HasSuffix(x, "/") || len(x) != len("/2015-03-31/") {
			t.Errorf("prefix %q is not a date folder", x)
		}
	}
}

func TestFunctionRef(t *testing.T) {
	for _, tc := range []struct {
		name, q string
		want    stratus.FunctionRef
		bad     bool
	}{
		{name: "f", want: stratus.FunctionRef{Name: "f"}},
		{name: "f", q: "live", want: stratus.FunctionRef{Name: "f", Qualifier: "live"}},
		{name: "f:3", q: "3", want: stratus.FunctionRef{Name: "f", Qualifier: "3"}},
		{name: "f:3", q: "4", bad: true},
		{name: "123456789012:function:f:$LATEST", want: stratus.FunctionRef{Name: "f", Qualifier: "$LATEST"}},
		{name: "arn:aws:lambda:us-west-2:123456789012:function:f", q: "2", want: stratus.FunctionRef{Name: "f", Qualifier: "2"}},
		{name: "arn:aws:s3:::bucket", bad: true},
		{name: "f", q: "bad qualifier", bad: true},
		{name: "", bad: true},
	} {
		got, err := functionRef(tc.name, tc.q)
		if tc.bad {
			if e := errorFrom(nil, err); err == nil || e.Type != "InvalidParameterValueException" {
				t.Errorf("functionRef(%q, %q) = %v, %v; want InvalidParameterValueException", tc.name, tc.q, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("functionRef(%q, %q) = %v, %v; want %v", tc.name, tc.q, got, err, tc.want)
		}
	}
}

// FuzzRoute: any method and target either routes to an operation whose
// path parameters are non-empty and whose FunctionName, when it parses,
// is a valid ref, or answers an UnknownOperationException; never a panic.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"POST /2015-03-31/functions/f/invocations",
		"GET /2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Af%3A1",
		"GET /2015-03-31/functions/f:live/configuration?Qualifier=live",
		"GET /2018-10-31/layers?find=LayerVersion",
		"GET /2019-09-30/functions/f/provisioned-concurrency?List=ALL",
		"DELETE /2017-03-31/tags/arn:aws:lambda:x:123456789012:function:f?tagKeys=a",
		"GET /2015-03-31/functions/%25%3A/aliases/%2F",
		"PUT //2015-03-31//functions",
	} {
		f.Add(s)
	}
	rt := newRouter(operations)
	f.Fuzz(func(t *testing.T, s string) {
		method, target, ok := strings.Cut(s, " ")
		if !ok || method == "" {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			return
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Method, r.URL = method, u
		op, params, err := rt.match(r)
		if err != nil {
			if e := errorFrom(nil, err); e.Type != "UnknownOperationException" {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		if op.Method != method {
			t.Fatalf("%q matched %s (%s)", s, op.Name, op.Method)
		}
		for k, v := range params {
			if v == "" {
				t.Fatalf("%q: empty parameter %s", s, k)
			}
		}
		if fn, ok := params["FunctionName"]; ok {
			if ref, err := functionRef(fn, r.URL.Query().Get("Qualifier")); err == nil {
				if stratus.ValidName(ref.Name) != nil || (ref.Qualifier != "" && stratus.ValidQualifier(ref.Qualifier) != nil) {
					t.Fatalf("%q: ref %+v is not valid", s, ref)
				}
			}
		}
	})
}
