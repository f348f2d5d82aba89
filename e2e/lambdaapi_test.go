package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// sdkApp is a Python handler that prints a line naming its code (%s) and
// answers with its code and the version its instance runs as.
const sdkApp = `import json


def handler(event, context):
    print("hello from code %s")
    if event.get("fail"):
        raise ValueError(event["fail"])
    return {"code": "%s", "version": context.function_version, "event": event}
`

type sdkAnswer struct {
	Code    string         `json:"code"`
	Version string         `json:"version"`
	Event   map[string]any `json:"event"`
}

// lambdaClient is the AWS SDK's Lambda client of server s, signing with
// a key made by `stratus keys create` (or the given one), without retries.
func lambdaClient(t *testing.T, s *server, key *v1.AccessKey) *lambda.Client {
	t.Helper()
	if key == nil {
		k := decode[v1.AccessKey](t, []byte(s.mustCLI("keys", "create", "--description", "e2e sdk", "-o", "json")))
		key = &k
	}
	creds := aws.Credentials{AccessKeyID: key.AccessKeyID, SecretAccessKey: key.SecretAccessKey, Source: "stratus keys create"}
	return lambda.New(lambda.Options{
		Region:       "eu-west-3", // any region: the signature covers it
		BaseEndpoint: aws.String(s.URL),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		}),
		Retryer: aws.NopRetryer{},
	})
}

// wantSDKError checks that err is the SDK's typed error T, or, for
// untyped ones, an API error with code.
func wantSDKError[T error](t *testing.T, what string, err error) T {
	t.Helper()
	var typed T
	if !errors.As(err, &typed) {
		t.Fatalf("%s: got %T %v, want %T", what, err, err, typed)
	}
	return typed
}

func wantSDKCode(t *testing.T, what string, err error, code string) smithy.APIError {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("%s: got %T %v, want API error %s", what, err, err, code)
	}
	return ae
}

// TestLambdaAPIWithSDK drives the Lambda API with the AWS SDK for Go v2,
// signed with a key of the server: create from a zip, wait until active,
// invoke with a log tail, publish, update code with publish, a weighted
// alias over 200 calls, the other invocation types, errors as the SDK's
// typed errors, and delete.
func TestLambdaAPIWithSDK(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	c := lambdaClient(t, s, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := func(name string) []byte {
		return zipDir(t, writeFiles(t, map[string]string{"app.py": fmt.Sprintf(sdkApp, name, name)}))
	}

	created, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdkfn"), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Role: aws.String("arn:aws:iam::000000000000:role/lambda"), Code: &types.FunctionCode{ZipFile: code("A")},
		MemorySize: aws.Int32(256), Timeout: aws.Int32(10), Description: aws.String("made by the SDK"),
		Environment: &types.Environment{Variables: map[string]string{"GREETING": "hi"}},
		Tags:        map[string]string{"team": "e2e"},
	})
	if err != nil {
		t.Fatalf("CreateFunction: %v\n%s", err, s.Stderr())
	}
	if aws.ToString(created.FunctionArn) != "arn:aws:lambda:local:000000000000:function:sdkfn" || created.Runtime != types.RuntimePython312 ||
		aws.ToInt32(created.MemorySize) != 256 || aws.ToString(created.Version) != "$LATEST" || created.LastModified == nil {
		t.Errorf("CreateFunction answered %+v", created)
	}
	if err := lambda.NewFunctionActiveV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdkfn")}, time.Minute); err != nil {
		t.Fatalf("function_active_v2: %v", err)
	}
	got, err := c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdkfn")})
	if err != nil || got.Configuration.State != types.StateActive || got.Configuration.LastUpdateStatus != types.LastUpdateStatusSuccessful ||
		got.Tags["team"] != "e2e" || aws.ToString(got.Code.RepositoryType) != "S3" || aws.ToString(got.Configuration.CodeSha256) != aws.ToString(created.CodeSha256) {
		t.Errorf("GetFunction: %v %+v", err, got)
	}
	// The native API sees the same function.
	if out := s.mustCLI("ls"); !strings.Contains(out, "sdkfn") {
		t.Errorf("stratus ls does not list sdkfn:\n%s", out)
	}

	inv, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdkfn"), Payload: []byte(`{"n":1}`), LogType: types.LogTypeTail})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	logTail, _ := base64.StdEncoding.DecodeString(aws.ToString(inv.LogResult))
	if inv.StatusCode != 200 || inv.FunctionError != nil || aws.ToString(inv.ExecutedVersion) != "$LATEST" ||
		!strings.Contains(string(logTail), "hello from code A") || !strings.Contains(string(logTail), "START RequestId:") {
		t.Errorf("Invoke: status %d error %v version %v payload %s log %q", inv.StatusCode, aws.ToString(inv.FunctionError), aws.ToString(inv.ExecutedVersion), inv.Payload, logTail)
	}
	inv, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdkfn"), Payload: []byte(`{"fail":"boom"}`)})
	if err != nil || aws.ToString(inv.FunctionError) != "Unhandled" || !strings.Contains(string(inv.Payload), "boom") {
		t.Errorf("Invoke of a failing call: %v %+v %s", err, inv, inv.Payload)
	}

	v1out, err := c.PublishVersion(ctx, &lambda.PublishVersionInput{FunctionName: aws.String("sdkfn"), Description: aws.String("A")})
	if err != nil || aws.ToString(v1out.Version) != "1" {
		t.Fatalf("PublishVersion: %v %+v", err, v1out)
	}
	up, err := c.UpdateFunctionCode(ctx, &lambda.UpdateFunctionCodeInput{FunctionName: aws.String("sdkfn"), ZipFile: code("B"), Publish: true})
	if err != nil || aws.ToString(up.Version) != "2" || aws.ToString(up.Handler) != "app.handler" || aws.ToInt32(up.MemorySize) != 256 {
		t.Fatalf("UpdateFunctionCode with Publish: %v %+v", err, up)
	}
	if err := lambda.NewFunctionUpdatedV2Waiter(c).Wait(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("sdkfn")}, time.Minute); err != nil {
		t.Fatalf("function_updated_v2: %v", err)
	}
	vers, err := c.ListVersionsByFunction(ctx, &lambda.ListVersionsByFunctionInput{FunctionName: aws.String("sdkfn")})
	if err != nil || len(vers.Versions) != 3 || aws.ToString(vers.Versions[0].Version) != "$LATEST" ||
		aws.ToString(vers.Versions[1].Version) != "1" || aws.ToString(vers.Versions[2].Version) != "2" {
		t.Fatalf("ListVersionsByFunction: %v %+v", err, vers)
	}

	const weight = 0.3
	al, err := c.CreateAlias(ctx, &lambda.CreateAliasInput{
		FunctionName: aws.String("sdkfn"), Name: aws.String("live"), FunctionVersion: aws.String("1"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": weight}},
	})
	if err != nil || aws.ToString(al.AliasArn) != "arn:aws:lambda:local:000000000000:function:sdkfn:live" {
		t.Fatalf("CreateAlias: %v %+v", err, al)
	}
	const n = 200
	ran := map[string]int{}
	for range n {
		inv, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdkfn"), Qualifier: aws.String("live"), Payload: []byte(`{}`)})
		if err != nil || inv.FunctionError != nil {
			t.Fatalf("Invoke sdkfn:live: %v %s", err, inv.Payload)
		}
		var a sdkAnswer
		if err := json.Unmarshal(inv.Payload, &a); err != nil {
			t.Fatal(err)
		}
		executed := aws.ToString(inv.ExecutedVersion)
		if a.Version != executed || (executed == "1") != (a.Code == "A") {
			t.Fatalf("X-Amz-Executed-Version %s, the instance runs version %s with code %s", executed, a.Version, a.Code)
		}
		ran[executed]++
	}
	// Version 2's share is Binomial(200, 0.3): within 4.5 standard
	// deviations (a false failure about once in 150,000 runs).
	sd := math.Sqrt(n * weight * (1 - weight))
	if got := float64(ran["2"]); math.Abs(got-n*weight) > 4.5*sd || ran["1"]+ran["2"] != n {
		t.Errorf("the alias ran %v; want version 2 about %d times of %d", ran, int(n*weight), n)
	}
	t.Logf("weighted alias: %v", ran)

	// Event (202) and DryRun (204) of a qualified name.
	ev, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdkfn:2"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"async":true}`)})
	if err != nil || ev.StatusCode != 202 {
		t.Errorf("Event invoke: %v %+v", err, ev)
	}
	dry, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:eu-west-3:000000000000:function:sdkfn"), InvocationType: types.InvocationTypeDryRun})
	if err != nil || dry.StatusCode != 204 {
		t.Errorf("DryRun invoke: %v %+v", err, dry)
	}

	// Errors are the SDK's typed errors.
	_, err = c.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("nope")})
	wantSDKError[*types.ResourceNotFoundException](t, "GetFunction of a missing function", err)
	_, err = c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("sdkfn"), Runtime: types.RuntimePython312, Handler: aws.String("app.handler"),
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: code("C")},
	})
	wantSDKError[*types.ResourceConflictException](t, "CreateFunction of an existing name", err)
	_, err = c.CreateFunction(ctx, &lambda.CreateFunctionInput{
		FunctionName: aws.String("javafn"), Runtime: types.RuntimeJava21, Handler: aws.String("a::b"),
		Role: aws.String("r"), Code: &types.FunctionCode{ZipFile: code("C")},
	})
	if e := wantSDKError[*types.InvalidParameterValueException](t, "CreateFunction of java21", err); !strings.Contains(e.ErrorMessage(), "python3") {
		t.Errorf("the unknown runtime's message does not list the accepted ones: %q", e.ErrorMessage())
	}
	_, err = c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("sdkfn"), Name: aws.String("live"),
		RoutingConfig: &types.AliasRoutingConfiguration{AdditionalVersionWeights: map[string]float64{"2": 1.5}}})
	wantSDKError[*types.InvalidParameterValueException](t, "a weight over 1", err)
	_, err = c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("sdkfn"), Payload: []byte(`"` + strings.Repeat("x", 6<<20) + `"`)})
	wantSDKError[*types.RequestTooLargeException](t, "a 6 MB payload", err)
	_, err = c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdkfn"), Qualifier: aws.String("2")})
	wantSDKError[*types.ResourceConflictException](t, "deleting a version an alias routes to", err)
	_, err = c.ListLayers(ctx, &lambda.ListLayersInput{})
	if ae := wantSDKCode(t, "ListLayers", err, "UnsupportedOperationException"); ae.ErrorMessage() != "ListLayers is not supported by Stratus" {
		t.Errorf("ListLayers message %q", ae.ErrorMessage())
	}
	bad := lambdaClient(t, s, &v1.AccessKey{AccessKeyID: "AKIDNOTAKEY000000000", SecretAccessKey: "wrong"})
	_, err = bad.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	wantSDKCode(t, "an unknown key", err, "UnrecognizedClientException")

	// Rolling back is moving the alias; then delete it all.
	if _, err := c.UpdateAlias(ctx, &lambda.UpdateAliasInput{FunctionName: aws.String("sdkfn"), Name: aws.String("live"),
		FunctionVersion: aws.String("1"), RoutingConfig: &types.AliasRoutingConfiguration{}}); err != nil {
		t.Fatalf("UpdateAlias: %v", err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdkfn"), Qualifier: aws.String("2")}); err != nil {
		t.Fatalf("DeleteFunction of version 2: %v", err)
	}
	if _, err := c.DeleteAlias(ctx, &lambda.DeleteAliasInput{FunctionName: aws.String("sdkfn"), Name: aws.String("live")}); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	if _, err := c.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String("sdkfn")}); err != nil {
		t.Fatalf("DeleteFunction: %v", err)
	}
	_, err = c.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String("sdkfn")})
	wantSDKError[*types.ResourceNotFoundException](t, "GetFunctionConfiguration after DeleteFunction", err)
	list, err := c.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil || len(list.Functions) != 0 {
		t.Errorf("ListFunctions after delete: %v %+v", err, list)
	}
}
