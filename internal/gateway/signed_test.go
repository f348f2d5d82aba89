package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sigv4"
)

// signedFunctions has a function deployed with auth "signed" and one with
// the token, and records the events it is invoked with.
type signedFunctions struct{ events [][]byte }

func (f *signedFunctions) Head(name string) (*stratus.Version, bool) {
	switch name {
	case "iam":
		return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthSigned}}, true
	case "closed":
		return &stratus.Version{Function: name, Version: 1, Config: stratus.FunctionConfig{Auth: stratus.AuthToken}}, true
	}
	return nil, false
}

func (f *signedFunctions) Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error) {
	f.events = append(f.events, req.Event)
	return &stratus.Response{Body: []byte(`{"statusCode":200,"body":"ok"}`)}, nil
}

type oneKey struct{ err error }

func (k oneKey) Secret(_ context.Context, id string) (string, bool, error) {
	return "secret-of-the-key", id == "STRATESTKEY000000000", k.err
}

func signWith(t *testing.T, r *http.Request, body, id, secret, service string) {
	t.Helper()
	sum := sha256.Sum256([]byte(body))
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		r, hex.EncodeToString(sum[:]), service, "eu-west-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
}

// TestSignedRoute: a function route deployed with auth "signed" admits the
// token or a request signed by one of the server's keys, and answers
// anything else 403 {"Message":"Forbidden"} as a function URL with AWS_IAM
// auth does.
func TestSignedRoute(t *testing.T) {
	fns := &signedFunctions{}
	var verify func(*http.Request, []byte) error
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := New(Config{Invoker: fns, Queue: noQueue{}, Heads: fns, Token: NewToken(secret), MaxEvent: 1 << 20, Verify: verify})
		mux := http.NewServeMux()
		mux.HandleFunc("/fn/{name}", g.ServeFunctionURL)
		mux.HandleFunc("/fn/{name}/{path...}", g.ServeFunctionURL)
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()
	good := sigv4.New(sigv4.Config{Keys: oneKey{}}).Verify
	const body = `{"order": 42}`
	const id, key = "STRATESTKEY000000000", "secret-of-the-key"

	for _, tc := range []struct {
		name   string
		verify func(*http.Request, []byte) error
		fn     string
		prep   func(r *http.Request)
		code   int
	}{
		{"signed", good, "iam", func(r *http.Request) { signWith(t, r, body, id, key, "lambda") }, 200},
		{"the token", good, "iam", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }, 200},
		{"nothing", good, "iam", func(r *http.Request) {}, 403},
		{"another token", good, "iam", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 403},
		{"wrong secret", good, "iam", func(r *http.Request) { signWith(t, r, body, id, "other", "lambda") }, 403},
		{"unknown key", good, "iam", func(r *http.Request) { signWith(t, r, body, "STRAOTHERKEY00000000", key, "lambda") }, 403},
		{"service s3", good, "iam", func(r *http.Request) { signWith(t, r, body, id, key, "s3") }, 403},
		{"over another body", good, "iam", func(r *http.Request) {
			signWith(t, r, body, id, key, "lambda")
			r.Body = io.NopCloser(strings.NewReader(`{"order": 43}`))
		}, 403},
		{"over another path", good, "iam", func(r *http.Request) {
			signWith(t, r, body, id, key, "lambda")
			r.URL.Path += "y"
		}, 403},
		{"no verifier", nil, "iam", func(r *http.Request) { signWith(t, r, body, id, key, "lambda") }, 403},
		{"verifier failed", sigv4.New(sigv4.Config{Keys: oneKey{err: errors.New("store down")}}).Verify, "iam",
			func(r *http.Request) { signWith(t, r, body, id, key, "lambda") }, 500},
		{"signed, to a token function", good, "closed", func(r *http.Request) { signWith(t, r, body, id, key, "lambda") }, 401},
		{"signed, to an unknown function", good, "nope", func(r *http.Request) { signWith(t, r, body, id, key, "lambda") }, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fns.events, verify = nil, tc.verify
			r, err := http.NewRequest("POST", srv.URL+"/fn/"+tc.fn+"/orders/a%3Ab?x=1&y=two%20words", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", "application/json")
			tc.prep(r)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, got, tc.code)
			}
			switch tc.code {
			case 200:
				if len(fns.events) != 1 {
					t.Fatalf("%d invocations, want 1", len(fns.events))
				}
				var e struct {
					Body string `json:"body"`
				}
				if err := json.Unmarshal(fns.events[0], &e); err != nil || e.Body != body {
					t.Errorf("event body %q (%v), want %q", e.Body, err, body)
				}
			case 403:
				if strings.TrimSpace(string(got)) != `{"Message":"Forbidden"}` || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("403 answer %s %q", got, resp.Header.Get("Content-Type"))
				}
				fallthrough
			default:
				if len(fns.events) != 0 {
					t.Errorf("the function was invoked")
				}
			}
		})
	}
}
