package sigv4

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"
)

const (
	testKeyID  = "STRAEXAMPLE000000001"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testARN    = "arn:aws:lambda:us-east-1:000000000000:function:hello"
)

// mapKeys is a KeyStore over a map.
type mapKeys struct {
	mu      sync.Mutex
	secrets map[string]string
	used    map[string]time.Time
	err     error
}

func (m *mapKeys) Secret(_ context.Context, id string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return "", false, m.err
	}
	s, ok := m.secrets[id]
	return s, ok, nil
}

func (m *mapKeys) Used(_ context.Context, id string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[string]time.Time{}
	}
	m.used[id] = at
}

func newKeys() *mapKeys { return &mapKeys{secrets: map[string]string{testKeyID: testSecret}} }

// server is an httptest server whose handler verifies each request's
// signature and answers 200 {} or 403 with the error as the Lambda API
// does.
func server(t *testing.T, v *Verifier) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if err := v.Verify(r, body); err != nil {
			e, ok := AsError(err)
			if !ok {
				http.Error(w, err.Error(), 500)
				return
			}
			w.Header().Set("X-Amzn-ErrorType", e.Code)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.Status())
			json.NewEncoder(w).Encode(map[string]string{"message": e.Message})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func staticCreds(id, secret string) aws.CredentialsProviderFunc {
	return func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, Source: "test"}, nil
	}
}

// TestLambdaClient calls a server that verifies signatures with the real
// Lambda client of aws-sdk-go-v2: a function named by its ARN (whose path
// the client sends percent-encoded and the signer encodes again), with a
// qualifier in the query and a body.
func TestLambdaClient(t *testing.T) {
	keys := newKeys()
	srv := server(t, New(Config{Keys: keys}))
	client := func(id, secret string) *lambda.Client {
		return lambda.New(lambda.Options{
			BaseEndpoint: aws.String(srv.URL),
			Region:       "eu-central-1",
			Credentials:  staticCreds(id, secret),
			Retryer:      aws.NopRetryer{},
		})
	}
	ctx := context.Background()
	for _, name := range []string{"hello", testARN, testARN + ":live", "hello:7"} {
		_, err := client(testKeyID, testSecret).Invoke(ctx, &lambda.InvokeInput{
			FunctionName: aws.String(name),
			Qualifier:    aws.String("$LATEST"),
			Payload:      []byte(`{"a": "b c", "unicode": "ü"}`),
		})
		if err != nil {
			t.Errorf("Invoke %s: %v", name, err)
		}
	}
	if keys.used[testKeyID].IsZero() {
		t.Errorf("the key's use was not recorded")
	}
	_, err := client(testKeyID, testSecret).ListFunctions(ctx, &lambda.ListFunctionsInput{
		Marker: aws.String("a/b c+d=e&f"), MaxItems: aws.Int32(5),
	})
	if err != nil {
		t.Errorf("ListFunctions with a query: %v", err)
	}

	for _, tc := range []struct {
		name, id, secret, code string
	}{
		{"wrong secret", testKeyID, "x" + testSecret[1:], CodeInvalidSignature},
		{"unknown key", "STRAUNKNOWN000000000", testSecret, CodeUnrecognizedClient},
	} {
		_, err := client(tc.id, tc.secret).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(testARN), Payload: []byte(`{}`)})
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
		}
	}
}

// signed returns a request to url signed by the SDK's signer at signedAt
// for service and region, with body.
func signed(t *testing.T, method, url, body, service, region string, signedAt time.Time, id, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "  RequestResponse  ")
	sum := sha256.Sum256([]byte(body))
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), service, region, signedAt); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestSignerRefusals signs requests with the SDK's v4 signer, changes them
// after signing, and checks that each is refused with AWS's code.
func TestSignerRefusals(t *testing.T) {
	now := time.Date(2026, 12, 6, 23, 55, 0, 0, time.UTC)
	keys := newKeys()
	srv := server(t, New(Config{Keys: keys, Now: func() time.Time { return now }}))
	path := "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello/invocations"
	url := srv.URL + path + "?Qualifier=%24LATEST&z=1&a=x%20y"
	body := `{"key":"value"}`

	send := func(req *http.Request) (int, string, string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), string(b)
	}
	ok := func() *http.Request {
		return signed(t, "POST", url, body, "lambda", "us-east-1", now, testKeyID, testSecret)
	}
	if code, typ, msg := send(ok()); code != 200 {
		t.Fatalf("a correctly signed request: %d %s %s", code, typ, msg)
	}

	cases := []struct {
		name    string
		req     func() *http.Request
		code    string
		message string
	}{
		{"changed body", func() *http.Request {
			r := ok()
			r.Body = io.NopCloser(strings.NewReader(`{"key":"valuf"}`))
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"longer body", func() *http.Request {
			r := ok()
			b := body + " "
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(b)), int64(len(b))
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"changed path", func() *http.Request {
			r := ok()
			r.URL.Path = strings.Replace(r.URL.Path, "hello", "hellp", 1)
			r.URL.RawPath = strings.Replace(r.URL.RawPath, "hello", "hellp", 1)
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"path encoded once less", func() *http.Request {
			r := ok()
			r.URL.RawPath = ""
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"changed query", func() *http.Request {
			r := ok()
			r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "z=1", "z=2", 1)
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"added query", func() *http.Request {
			r := ok()
			r.URL.RawQuery += "&b=1"
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"changed signed header", func() *http.Request {
			r := ok()
			r.Header.Set("X-Amz-Invocation-Type", "Event")
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"changed method", func() *http.Request {
			r := ok()
			r.Method = "PUT"
			return r
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"wrong secret", func() *http.Request {
			return signed(t, "POST", url, body, "lambda", "us-east-1", now, testKeyID, "0"+testSecret[1:])
		}, CodeInvalidSignature, MessageSignatureMismatch},
		{"unknown key", func() *http.Request {
			return signed(t, "POST", url, body, "lambda", "us-east-1", now, "STRANOSUCHKEY0000000", testSecret)
		}, CodeUnrecognizedClient, "The security token included in the request is invalid."},
		{"16 minutes old", func() *http.Request {
			return signed(t, "POST", url, body, "lambda", "us-east-1", now.Add(-16*time.Minute), testKeyID, testSecret)
		}, CodeInvalidSignature, "Signature expired: 20261206T233900Z is now earlier than 20261206T234000Z (20261206T235500Z - 15 min.)"},
		{"16 minutes ahead", func() *http.Request {
			return signed(t, "POST", url, body, "lambda", "us-east-1", now.Add(16*time.Minute), testKeyID, testSecret)
		}, CodeInvalidSignature, "Signature not yet current: 20261207T001100Z is still later than 20261207T001000Z (20261206T235500Z + 15 min.)"},
		{"service s3", func() *http.Request {
			return signed(t, "POST", url, body, "s3", "us-east-1", now, testKeyID, testSecret)
		}, CodeInvalidSignature, "Credential should be scoped to correct service: 'lambda'."},
		{"session token", func() *http.Request {
			r := ok()
			r.Header.Set("X-Amz-Security-Token", "FwoGZXIvYXdzE")
			return r
		}, CodeUnrecognizedClient, ""},
		{"unsigned payload", func() *http.Request {
			r, _ := http.NewRequest("POST", url, strings.NewReader(body))
			creds := aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			v4.NewSigner().SignHTTP(context.Background(), creds, r, "UNSIGNED-PAYLOAD", "lambda", "us-east-1", now)
			return r
		}, CodeInvalidSignature, ""},
		{"no authorization", func() *http.Request {
			r := ok()
			r.Header.Del("Authorization")
			return r
		}, CodeMissingToken, "Missing Authentication Token"},
		{"no date", func() *http.Request {
			r := ok()
			r.Header.Del("X-Amz-Date")
			return r
		}, CodeIncompleteSignature, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."},
		{"date of another day than the scope", func() *http.Request {
			r := ok()
			r.Header.Set("X-Amz-Date", "20261207T000100Z")
			return r
		}, CodeInvalidSignature, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20261206' != '20261207', from '20261207T000100Z'."},
		{"truncated signature", func() *http.Request {
			r := ok()
			r.Header.Set("Authorization", r.Header.Get("Authorization")[:len(r.Header.Get("Authorization"))-1])
			return r
		}, CodeIncompleteSignature, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, typ, msg := send(tc.req())
			if code != 403 || typ != tc.code {
				t.Fatalf("got %d %s %s, want 403 %s", code, typ, msg, tc.code)
			}
			if tc.message != "" && !strings.Contains(msg, jsonString(tc.message)) {
				t.Errorf("message %s, want %q", msg, tc.message)
			}
		})
	}

	// Regions are all admitted: the signature covers the region.
	for _, region := range []string{"us-east-1", "eu-west-3", "local"} {
		if code, typ, msg := send(signed(t, "GET", srv.URL+"/2015-03-31/functions/", "", "lambda", region, now, testKeyID, testSecret)); code != 200 {
			t.Errorf("region %s: %d %s %s", region, code, typ, msg)
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return strings.Trim(string(b), `"`)
}

// captureLogger keeps what the SDK's signer logs.
type captureLogger struct{ bytes.Buffer }

func (l *captureLogger) Logf(_ logging.Classification, format string, v ...any) {
	fmt.Fprintf(&l.Buffer, format, v...)
}

// TestCanonicalRequestMatchesSDK compares the canonical request built from
// the request as the server receives it with the one the SDK's signer
// logs, byte for byte: the double-encoded path in particular.
func TestCanonicalRequestMatchesSDK(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a, err := parseAuthorization(r.Header.Get("Authorization"))
		if err != nil {
			t.Error(err)
			return
		}
		sum := sha256.Sum256(body)
		got = canonicalRequest(r, a.headers(), hex.EncodeToString(sum[:]))
	}))
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/2015-03-31/functions/"+strings.ReplaceAll(testARN, ":", "%3A")+"/invocations?Qualifier=%24LATEST&b=%2F&a=x%20y&a=w", strings.NewReader("{}"))
	req.Header.Add("X-Amz-Meta", "one  two ")
	req.Header.Add("X-Amz-Meta", "three")
	var log captureLogger
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.LogSigning, o.Logger = true, &log })
	sum := sha256.Sum256([]byte("{}"))
	err := signer.SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	_, want, _ := strings.Cut(log.String(), "---[ CANONICAL STRING  ]-----------------------------\n")
	want, _, _ = strings.Cut(want, "\n---[ STRING TO SIGN ]")
	if got != want {
		t.Errorf("canonical request:\n%s\nthe SDK's:\n%s", got, want)
	}
	if !strings.Contains(got, "/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1") {
		t.Errorf("path not encoded twice:\n%s", got)
	}
}

// TestForgetAndCache checks that the signing keys are cached, that a
// changed secret is not served from the cache, and that Forget drops a
// key's entries.
func TestForgetAndCache(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	keys := newKeys()
	v := New(Config{Keys: keys, Now: func() time.Time { return now }, CacheSize: 4})
	check := func(secret string) error {
		r := signed(t, "GET", "http://127.0.0.1:1/x", "", "lambda", "us-east-1", now, testKeyID, secret)
		r.RequestURI = "/x"
		return v.Verify(r, nil)
	}
	if err := check(testSecret); err != nil {
		t.Fatal(err)
	}
	if v.cache.len() != 1 {
		t.Fatalf("cache holds %d keys, want 1", v.cache.len())
	}
	keys.mu.Lock()
	keys.secrets[testKeyID] = "new-secret"
	keys.mu.Unlock()
	if err := check(testSecret); err == nil {
		t.Fatal("the old secret still works after the key's secret changed")
	}
	if err := check("new-secret"); err != nil {
		t.Fatal(err)
	}
	v.Forget(testKeyID)
	if v.cache.len() != 0 {
		t.Fatalf("cache holds %d keys after Forget", v.cache.len())
	}
	keys.mu.Lock()
	delete(keys.secrets, testKeyID)
	keys.mu.Unlock()
	if e, _ := AsError(check("new-secret")); e == nil || e.Code != CodeUnrecognizedClient {
		t.Fatalf("a removed key: got %v", e)
	}
	// The bound holds.
	for i := range 10 {
		keys.mu.Lock()
		keys.secrets[fmt.Sprint("K", i)] = "s"
		keys.mu.Unlock()
		r := signed(t, "GET", "http://127.0.0.1:1/x", "", "lambda", "us-east-1", now, fmt.Sprint("K", i), "s")
		if err := v.Verify(r, nil); err != nil {
			t.Fatal(err)
		}
		if v.cache.len() > 4 {
			t.Fatalf("cache holds %d keys, more than 4", v.cache.len())
		}
	}
	// A store failure is not a refusal.
	keys.mu.Lock()
	keys.err = errors.New("disk on fire")
	keys.mu.Unlock()
	err := check("s")
	if _, ok := AsError(err); ok || err == nil {
		t.Fatalf("a store failure: got %v, want a plain error", err)
	}
}

// BenchmarkVerify measures the verification of a signed Invoke request of
// 1 KiB once its signing key is cached.
func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	v := New(Config{Keys: newKeys(), Now: func() time.Time { return now }})
	body := strings.Repeat("x", 1024)
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/2015-03-31/functions/"+strings.ReplaceAll(testARN, ":", "%3A")+"/invocations?Qualifier=live", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Invocation-Type", "RequestResponse")
	sum := sha256.Sum256([]byte(body))
	v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now)
	req.RequestURI = req.URL.RequestURI()
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(req, []byte(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrecheckVerify measures what the Lambda API does for a signed
// Invoke as the SDKs send it (no query, a 2-byte body): Precheck before
// reading the body, then Verify.
func BenchmarkPrecheckVerify(b *testing.B) {
	now := time.Now()
	v := New(Config{Keys: newKeys(), Now: func() time.Time { return now }})
	body := []byte("{}")
	req, _ := http.NewRequest("POST", "http://127.0.0.1:8080/2015-03-31/functions/lognoop/invocations", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testKeyID, SecretAccessKey: testSecret}, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", now)
	req.RequestURI = req.URL.RequestURI()
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Precheck(req); err != nil {
			b.Fatal(err)
		}
		if err := v.Verify(req, body); err != nil {
			b.Fatal(err)
		}
	}
}
