package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
)

// TestAccessKeysSignFunctionRoute: an access key made with `stratus keys
// create` signs requests (aws-sdk-go-v2's SigV4 signer) to a function
// deployed with --auth signed, and the Lambda API's (aws-sdk-go-v2's
// Lambda client: ListFunctions, Invoke by ARN); a wrong secret, no
// signature and a removed key are refused 403, on the route as a function
// URL refuses them, on the Lambda API with AWS's error types; the database
// holds no secret in plain text.
func TestAccessKeysSignFunctionRoute(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{
		"echo.py": `def handler(event, context):
    return {"path": event["rawPath"], "query": event.get("rawQueryString"), "body": event.get("body")}
`,
	})
	s.mustCLI("deploy", "iam", "--runtime", "python3", "--handler", "echo.handler", "--auth", "signed", code)

	out := s.mustCLI("keys", "create", "--description", "e2e signer")
	var id, secret string
	for line := range strings.SplitSeq(out, "\n") {
		if v, ok := strings.CutPrefix(line, "AccessKeyId:"); ok {
			id = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "SecretAccessKey:"); ok {
			secret = strings.TrimSpace(v)
		}
	}
	if len(id) != 20 || len(secret) != 40 {
		t.Fatalf("keys create printed %q", out)
	}

	const body = `{"order": 42}`
	send := func(key, sec string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest("POST", s.URL+"/fn/iam/orders/a%3Ab?x=1&y=two%20words", bytes.NewReader([]byte(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			sum := sha256.Sum256([]byte(body))
			err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: key, SecretAccessKey: sec},
				req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now())
			if err != nil {
				t.Fatal(err)
			}
		}
		return s.roundTrip(req)
	}
	wantForbidden := func(what string, resp *http.Response, b []byte) {
		t.Helper()
		if resp.StatusCode != 403 || strings.TrimSpace(string(b)) != `{"Message":"Forbidden"}` {
			t.Errorf("%s: %d %s, want 403 {\"Message\":\"Forbidden\"}", what, resp.StatusCode, b)
		}
	}

	resp, b := send(id, secret)
	if resp.StatusCode != 200 {
		t.Fatalf("signed with the key: %d %s\nserver log:\n%s", resp.StatusCode, b, s.Stderr())
	}
	got := decode[map[string]any](t, b)
	if got["path"] != "/orders/a%3Ab" || got["query"] != "x=1&y=two%20words" || got["body"] != body {
		t.Errorf("the function saw %v", got)
	}
	// Another secret: its first character changed (a constant one would
	// be the secret itself once in 64 keys).
	wrong := string(secret[0]^1) + secret[1:]
	resp, b = send(id, wrong)
	wantForbidden("a wrong secret", resp, b)
	resp, b = send("", "")
	wantForbidden("no signature", resp, b)
	if resp, b := s.do("POST", "/fn/iam/orders", []byte(body), true); resp.StatusCode != 200 {
		t.Errorf("the token: %d %s", resp.StatusCode, b)
	}

	// The Lambda API, with the SDK's Lambda client.
	client := func(key, sec string) *lambda.Client {
		return lambda.New(lambda.Options{
			BaseEndpoint: aws.String(s.URL), Region: "eu-west-1", Retryer: aws.NopRetryer{},
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: key, SecretAccessKey: sec}, nil
			}),
		})
	}
	ctx := context.Background()
	wantCode := func(what string, err error, code string) {
		t.Helper()
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != code {
			t.Errorf("%s: got %v, want %s", what, err, code)
		}
	}
	list, err := client(id, secret).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatalf("ListFunctions signed with the key: %v", err)
	}
	if len(list.Functions) != 1 || list.Functions[0].FunctionArn == nil {
		t.Fatalf("ListFunctions: %+v", list.Functions)
	}
	inv, err := client(id, secret).Invoke(ctx, &lambda.InvokeInput{FunctionName: list.Functions[0].FunctionArn, Payload: []byte(`{"rawPath":"/arn"}`)})
	if err != nil || inv.FunctionError != nil || !strings.Contains(string(inv.Payload), `"/arn"`) {
		t.Errorf("Invoke by ARN signed with the key: %v %+v", err, inv)
	}
	_, err = client(id, wrong).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	wantCode("ListFunctions with a wrong secret", err, "InvalidSignatureException")

	ls := s.mustCLI("keys", "ls")
	if !strings.Contains(ls, id) || !strings.Contains(ls, "e2e signer") || strings.Contains(ls, secret) {
		t.Errorf("keys ls:\n%s", ls)
	}
	if lines := strings.Split(strings.TrimSpace(ls), "\n"); len(lines) != 2 || strings.HasSuffix(lines[1], "-") {
		t.Errorf("keys ls shows no last use:\n%s", ls)
	}

	// Neither the database nor its WAL holds the secret; the seal key is
	// the owner's only.
	for _, name := range []string{"stratus.db", "stratus.db-wal"} {
		data, err := os.ReadFile(filepath.Join(s.Data, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("%s holds the secret in plain text", name)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.Data, "access-keys.key")); err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Errorf("seal key file: %v %v", fi, err)
	}

	s.mustCLI("keys", "rm", id)
	resp, b = send(id, secret)
	wantForbidden("a removed key", resp, b)
	_, err = client(id, secret).ListFunctions(ctx, &lambda.ListFunctionsInput{})
	wantCode("ListFunctions with a removed key", err, "UnrecognizedClientException")
	if r := s.cli("keys", "rm", id); r.Code != 1 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("keys rm of a removed key: exit %d, stderr %q", r.Code, r.Stderr)
	}
}
