package lambdaapi

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestCreateAndGetFunction(t *testing.T) {
	ta := newTestAPI(t)
	zip := testZip(t, "app.py", "def handler(e, c): return e")
	out := ta.createPython(t, "hello", map[string]any{
		"MemorySize": 256, "Timeout": 10, "Description": "greets",
		"Environment": map[string]any{"Variables": map[string]string{"A": "1"}},
	})
	sum := sha256.Sum256(zip)
	if out.CodeSha256 != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("CodeSha256 %q, want the base64 of the zip's SHA-256", out.CodeSha256)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$`).MatchString(out.LastModified) {
		t.Errorf("LastModified %q is not Lambda's format", out.LastModified)
	}
	want := functionConfiguration{
		FunctionName: "hello", FunctionArn: "arn:aws:lambda:eu-test-1:123456789012:function:hello",
		Runtime: "python3.12", Role: "arn:aws:iam::123456789012:role/r", Handler: "app.handler",
		CodeSize: int64(len(zip)), Description: "greets", Timeout: 10, MemorySize: 256, Version: "$LATEST",
		State: "Active", LastUpdateStatus: "Successful", PackageType: "Zip", Architectures: []string{"x86_64"},
	}
	if out.FunctionName != want.FunctionName || out.FunctionArn != want.FunctionArn || out.Runtime != want.Runtime ||
		out.Role != want.Role || out.Handler != want.Handler || out.CodeSize != want.CodeSize || out.Description != want.Description ||
		out.Timeout != want.Timeout || out.MemorySize != want.MemorySize || out.Version != want.Version || out.State != want.State ||
		out.LastUpdateStatus != want.LastUpdateStatus || out.PackageType != want.PackageType || out.Architectures[0] != "x86_64" ||
		out.Environment == nil || out.Environment.Variables["A"] != "1" || out.RevisionID == "" {
		t.Errorf("CreateFunction answered %+v", out)
	}
	head, _ := ta.fns.Head("hello")
	if head.Config.Runtime != stratus.RuntimePython3 || head.Config.LambdaRuntime != "python3.12" || head.Config.Role == "" {
		t.Errorf("kept config %+v", head.Config)
	}

	var got getFunctionResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/hello", nil), 200, &got)
	if got.Configuration.RevisionID != out.RevisionID || got.Code.RepositoryType != "S3" || got.Configuration.FunctionArn != out.FunctionArn {
		t.Errorf("GetFunction %+v", got)
	}
	var cfg functionConfiguration
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Ahello/configuration?Qualifier=%24LATEST", nil), 200, &cfg)
	if cfg.FunctionArn != out.FunctionArn+":$LATEST" || cfg.Version != "$LATEST" {
		t.Errorf("GetFunctionConfiguration $LATEST: %s %s", cfg.FunctionArn, cfg.Version)
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/hello:live/configuration?Qualifier=other", nil), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/hello:live", nil), 404, "ResourceNotFoundException")
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/nope/configuration", nil), 404, "ResourceNotFoundException")

	// A second create of the name conflicts and changes nothing.
	w := ta.do(t, "POST", "/2015-03-31/functions", map[string]any{
		"FunctionName": "hello", "Runtime": "nodejs20.x", "Handler": "index.handler", "Role": "r",
		"Code": map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(zip)},
	})
	wantError(t, w, 409, "ResourceConflictException")
	if h, _ := ta.fns.Head("hello"); h.Config.Runtime != stratus.RuntimePython3 {
		t.Error("a refused create changed the function")
	}
}

func TestCreateFunctionBadInput(t *testing.T) {
	ta := newTestAPI(t)
	zip := base64.StdEncoding.EncodeToString(testZip(t, "bootstrap", "#!/bin/sh"))
	base := func(mod map[string]any) map[string]any {
		req := map[string]any{"FunctionName": "f", "Runtime": "provided.al2023", "Handler": "x", "Role": "r", "Code": map[string]any{"ZipFile": zip}}
		for k, v := range mod {
			if v == nil {
				delete(req, k)
			} else {
				req[k] = v
			}
		}
		return req
	}
	for _, tc := range []struct {
		name   string
		req    any
		status int
		typ    string
	}{
		{"unknown runtime", base(map[string]any{"Runtime": "java21"}), 400, "InvalidParameterValueException"},
		{"no runtime", base(map[string]any{"Runtime": nil}), 400, "InvalidParameterValueException"},
		{"no role", base(map[string]any{"Role": nil}), 400, "InvalidParameterValueException"},
		{"no code", base(map[string]any{"Code": nil}), 400, "InvalidParameterValueException"},
		{"s3 code", base(map[string]any{"Code": map[string]any{"S3Bucket": "b", "S3Key": "k"}}), 400, "InvalidParameterValueException"},
		{"bad base64", base(map[string]any{"Code": map[string]any{"ZipFile": "!!"}}), 400, "InvalidRequestContentException"},
		{"qualified name", base(map[string]any{"FunctionName": "f:1"}), 400, "InvalidParameterValueException"},
		{"bad name", base(map[string]any{"FunctionName": "a b"}), 400, "InvalidParameterValueException"},
		{"layers", base(map[string]any{"Layers": []string{"arn:layer"}}), 400, "InvalidParameterValueException"},
		{"other arch", base(map[string]any{"Architectures": []string{"arm64"}}), 400, "InvalidParameterValueException"},
		{"memory", base(map[string]any{"MemorySize": 64}), 400, "InvalidParameterValueException"},
		{"package type", base(map[string]any{"PackageType": "Jar"}), 400, "InvalidParameterValueException"},
		{"image without uri", base(map[string]any{"PackageType": "Image", "Runtime": nil, "Handler": nil}), 400, "InvalidParameterValueException"},
		{"image with runtime", base(map[string]any{"PackageType": "Image", "Code": map[string]any{"ImageUri": "x:1"}}), 400, "InvalidParameterValueException"},
		{"too large", base(map[string]any{"Code": map[string]any{"ZipFile": base64.StdEncoding.EncodeToString(make([]byte, 2000))}}), 413, "RequestEntityTooLargeException"},
		{"tags without a tag store", base(map[string]any{"Tags": map[string]string{"a": "b"}}), 501, "ServiceException"},
		{"not json", "[1,2", 400, "InvalidRequestContentException"},
		{"wrong type", `{"FunctionName": 3}`, 400, "InvalidRequestContentException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, ta.do(t, "POST", "/2015-03-31/functions", tc.req), tc.status, tc.typ)
			if _, ok := ta.fns.Head("f"); ok {
				t.Fatal("a refused create made the function")
			}
		})
	}
}

func TestCreateImageFunctionAndPublish(t *testing.T) {
	ta := newTestAPI(t)
	var out functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions", map[string]any{
		"FunctionName": "img", "PackageType": "Image", "Role": "r", "Publish": true,
		"Code": map[string]any{"ImageUri": "registry.local/fn:1"}, "ImageConfig": map[string]any{"Command": []string{"app.handler"}},
	}), 201, &out)
	if out.PackageType != "Image" || out.Runtime != "" || out.Version != "1" || out.FunctionArn != "arn:aws:lambda:eu-test-1:123456789012:function:img:1" {
		t.Errorf("CreateFunction with Publish: %+v", out)
	}
	head, _ := ta.fns.Head("img")
	if head.Config.Image != "registry.local/fn:1" || head.Config.Handler != "app.handler" || head.Config.Runtime != stratus.RuntimeImage {
		t.Errorf("kept %+v", head.Config)
	}
	var got getFunctionResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/img?Qualifier=1", nil), 200, &got)
	if got.Code.RepositoryType != "ECR" || got.Code.ImageURI != "registry.local/fn:1" || got.Code.ResolvedImageURI != "registry.local/fn@"+head.CodeSHA {
		t.Errorf("GetFunction code %+v", got.Code)
	}
}

func TestListFunctionsPaging(t *testing.T) {
	ta := newTestAPI(t)
	for i := range 5 {
		ta.createPython(t, fmt.Sprintf("fn-%d", i), nil)
	}
	var names []string
	marker := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		var out listFunctionsResponse
		decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/?MaxItems=2&Marker="+marker, nil), 200, &out)
		if len(out.Functions) > 2 {
			t.Fatalf("page of %d", len(out.Functions))
		}
		for _, f := range out.Functions {
			names = append(names, f.FunctionName)
			if f.Version != "$LATEST" || f.FunctionArn != "arn:aws:lambda:eu-test-1:123456789012:function:"+f.FunctionName {
				t.Errorf("listed %s %s", f.FunctionArn, f.Version)
			}
		}
		if out.NextMarker == "" {
			break
		}
		marker = out.NextMarker
	}
	if fmt.Sprint(names) != "[fn-0 fn-1 fn-2 fn-3 fn-4]" {
		t.Errorf("listed %v", names)
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/?MaxItems=0", nil), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/?FunctionVersion=SOME", nil), 400, "InvalidParameterValueException")

	ta.do(t, "POST", "/2015-03-31/functions/fn-1/versions", nil)
	var all listFunctionsResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions?FunctionVersion=ALL&MaxItems=2&Marker=fn-1", nil), 200, &all)
	if len(all.Functions) != 2 || all.Functions[0].Version != "$LATEST" || all.Functions[1].Version != "1" || all.NextMarker != "fn-2:$LATEST" {
		t.Errorf("FunctionVersion=ALL: %+v, next %q", all.Functions, all.NextMarker)
	}
}

func TestVersionsUpdateAndDelete(t *testing.T) {
	ta := newTestAPI(t)
	first := ta.createPython(t, "f", nil)
	var v1 functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/f/versions", map[string]string{"Description": "first"}), 201, &v1)
	if v1.Version != "1" || v1.FunctionArn != first.FunctionArn+":1" || v1.Description != "first" {
		t.Errorf("PublishVersion %+v", v1)
	}
	// Nothing changed: the same version.
	var again functionConfiguration
	decodeInto(t, ta.do(t, "POST", "/2015-03-31/functions/f/versions", nil), 201, &again)
	if again.Version != "1" {
		t.Errorf("publishing again made version %s", again.Version)
	}
	wantError(t, ta.do(t, "POST", "/2015-03-31/functions/f/versions", map[string]string{"CodeSha256": "AAAA"}), 412, "PreconditionFailedException")

	// UpdateFunctionCode keeps the configuration; Publish makes version 2.
	zip := testZip(t, "app.py", "def handler(e, c): return 2")
	var up functionConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/f/code", map[string]any{"ZipFile": zip, "Publish": true}), 200, &up)
	sum := sha256.Sum256(zip)
	if up.Version != "2" || up.CodeSha256 != base64.StdEncoding.EncodeToString(sum[:]) || up.Handler != "app.handler" || up.Runtime != "python3.12" {
		t.Errorf("UpdateFunctionCode %+v", up)
	}
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/code", map[string]any{"ImageUri": "x:1"}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f:1/code", map[string]any{"ZipFile": zip}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/code", map[string]any{"ZipFile": zip, "RevisionId": "stale"}), 412, "PreconditionFailedException")

	// UpdateFunctionConfiguration changes what it names only.
	var cfg functionConfiguration
	decodeInto(t, ta.do(t, "PUT", "/2015-03-31/functions/f/configuration", map[string]any{
		"MemorySize": 512, "Environment": map[string]any{"Variables": map[string]string{"B": "2"}}, "Runtime": "python3.13",
	}), 200, &cfg)
	if cfg.MemorySize != 512 || cfg.Timeout != 3 || cfg.Environment.Variables["B"] != "2" || cfg.Runtime != "python3.13" || cfg.RevisionID == up.RevisionID {
		t.Errorf("UpdateFunctionConfiguration %+v", cfg)
	}
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/configuration", map[string]any{"Timeout": 0}), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "PUT", "/2015-03-31/functions/f/configuration", map[string]any{"Runtime": "ruby3.3"}), 400, "InvalidParameterValueException")

	// ListVersionsByFunction: $LATEST first, then 1, 2; paged.
	var page listVersionsResponse
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f/versions?MaxItems=2", nil), 200, &page)
	if len(page.Versions) != 2 || page.Versions[0].Version != "$LATEST" || page.Versions[0].FunctionArn != first.FunctionArn+":$LATEST" ||
		page.Versions[1].Version != "1" || page.NextMarker != "2" {
		t.Fatalf("first page %+v next %q", page.Versions, page.NextMarker)
	}
	page = listVersionsResponse{}
	decodeInto(t, ta.do(t, "GET", "/2015-03-31/functions/f/versions?MaxItems=2&Marker=2", nil), 200, &page)
	if len(page.Versions) != 1 || page.Versions[0].Version != "2" || page.NextMarker != "" {
		t.Errorf("second page %+v next %q", page.Versions, page.NextMarker)
	}

	// DeleteFunction with a qualifier deletes a version; not $LATEST nor an alias.
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/f?Qualifier=%24LATEST", nil), 400, "InvalidParameterValueException")
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/f?Qualifier=live", nil), 400, "InvalidParameterValueException")
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/f?Qualifier=1", nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete version 1: %d %s", w.Code, w.Body)
	}
	wantError(t, ta.do(t, "GET", "/2015-03-31/functions/f?Qualifier=1", nil), 404, "ResourceNotFoundException")
	if w := ta.do(t, "DELETE", "/2015-03-31/functions/f", nil); w.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", w.Code, w.Body)
	}
	wantError(t, ta.do(t, "DELETE", "/2015-03-31/functions/f", nil), 404, "ResourceNotFoundException")
}
