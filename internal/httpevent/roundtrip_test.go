package httpevent

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/google/go-cmp/cmp"
)

// TestRoundTrip sends events through a handler written against
// aws-lambda-go's types, invoked the way the Go runtime invokes it, and maps
// its marshalled response back.
func TestRoundTrip(t *testing.T) {
	var seen events.APIGatewayV2HTTPRequest
	handler := lambda.NewHandler(func(_ context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		seen = req
		body := req.Body
		if req.IsBase64Encoded {
			b, err := base64.StdEncoding.DecodeString(body)
			if err != nil {
				return events.APIGatewayV2HTTPResponse{}, err
			}
			body = string(b)
		}
		resp := events.APIGatewayV2HTTPResponse{
			StatusCode: 201,
			Headers: map[string]string{
				"Content-Type": "text/plain",
				"X-Method":     req.RequestContext.HTTP.Method,
				"X-Path":       req.RawPath,
				"X-Query":      req.QueryStringParameters["q"],
			},
			MultiValueHeaders: map[string][]string{"X-Multi": {"1", "2"}},
			Cookies:           []string{"session=" + strings.Join(req.Cookies, "|")},
			Body:              strings.ToUpper(body),
		}
		if req.Headers["accept"] == "application/octet-stream" {
			resp.Body = base64.StdEncoding.EncodeToString([]byte(resp.Body))
			resp.IsBase64Encoded = true
			resp.Headers["Content-Type"] = "application/octet-stream"
		}
		return resp, nil
	})

	tests := []struct {
		name, contentType, accept, body string
		wantBase64                      bool
		wantContentType                 string
	}{
		{"text", "text/plain", "", "hello", false, "text/plain"},
		{"binary request", "application/octet-stream", "", "bin\x00", true, "text/plain"},
		{"binary both ways", "application/octet-stream", "application/octet-stream", "\x01\x02", true, "application/octet-stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("PUT", "/fn/hello/items/7?q=x%20y", nil)
			r.Header.Set("Content-Type", tt.contentType)
			if tt.accept != "" {
				r.Header.Set("Accept", tt.accept)
			}
			r.Header.Set("Cookie", "a=1; b=2")
			m := testMeta()
			m.RawPath = "/items/7"
			ev, err := Event(r, []byte(tt.body), m)
			if err != nil {
				t.Fatal(err)
			}
			result, err := handler.Invoke(context.Background(), ev)
			if err != nil {
				t.Fatalf("invoke: %v", err)
			}
			if seen.IsBase64Encoded != tt.wantBase64 {
				t.Errorf("event isBase64Encoded = %v, want %v", seen.IsBase64Encoded, tt.wantBase64)
			}
			rec := httptest.NewRecorder()
			if err := WriteResponse(rec, result, false); err != nil {
				t.Fatalf("WriteResponse(%s): %v", result, err)
			}
			if rec.Code != 201 {
				t.Errorf("status = %d, want 201", rec.Code)
			}
			want := http.Header{
				"Content-Type":   {tt.wantContentType},
				"Content-Length": {strconv.Itoa(len(tt.body))},
				"X-Method":       {"PUT"},
				"X-Path":         {"/items/7"},
				"X-Query":        {"x y"},
				"X-Multi":        {"1", "2"},
				"Set-Cookie":     {"session=a=1|b=2"},
			}
			if diff := cmp.Diff(want, rec.Header()); diff != "" {
				t.Errorf("header mismatch (-want +got):\n%s", diff)
			}
			if got, want := rec.Body.String(), strings.ToUpper(tt.body); got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
		})
	}
}
