package httpevent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stratus-run/stratus"
)

func TestWriteResponse(t *testing.T) {
	jsonHeader := func(n string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Content-Length": {n}}
	}
	tests := []struct {
		name       string
		result     string
		wantStatus int
		wantHeader http.Header
		wantBody   string
	}{
		{
			name:       "object without statusCode is the body",
			result:     `{"hello": "world"}`,
			wantStatus: 200,
			wantHeader: jsonHeader("18"),
			wantBody:   `{"hello": "world"}`,
		},
		{
			name:       "null",
			result:     `null`,
			wantStatus: 200,
			wantHeader: jsonHeader("4"),
			wantBody:   `null`,
		},
		{
			name:       "string stays JSON",
			result:     `"hi"`,
			wantStatus: 200,
			wantHeader: jsonHeader("4"),
			wantBody:   `"hi"`,
		},
		{
			name:       "array",
			result:     `[{"statusCode":404}]`,
			wantStatus: 200,
			wantHeader: jsonHeader("20"),
			wantBody:   `[{"statusCode":404}]`,
		},
		{
			name:       "number",
			result:     `42`,
			wantStatus: 200,
			wantHeader: jsonHeader("2"),
			wantBody:   `42`,
		},
		{
			name:       "not JSON",
			result:     `{hello`,
			wantStatus: 200,
			wantHeader: jsonHeader("6"),
			wantBody:   `{hello`,
		},
		{
			name:       "empty",
			result:     ``,
			wantStatus: 200,
			wantHeader: jsonHeader("0"),
		},
		{
			name:       "statusCode is case-sensitive",
			result:     `{"StatusCode":404,"Body":"x"}`,
			wantStatus: 200,
			wantHeader: jsonHeader("29"),
			wantBody:   `{"StatusCode":404,"Body":"x"}`,
		},
		{
			name:       "nested statusCode does not count",
			result:     `{"data":{"statusCode":404}}`,
			wantStatus: 200,
			wantHeader: jsonHeader("27"),
			wantBody:   `{"data":{"statusCode":404}}`,
		},
		{
			name:       "response object, default content type",
			result:     ` {"statusCode": 201, "body": "{\"id\":1}"}`,
			wantStatus: 201,
			wantHeader: jsonHeader("8"),
			wantBody:   `{"id":1}`,
		},
		{
			name:       "response object without body",
			result:     `{"statusCode":404}`,
			wantStatus: 404,
			wantHeader: http.Header{"Content-Length": {"0"}},
		},
		{
			name:       "escaped key",
			result:     `{"status\u0043ode":500,"body":null,"headers":null,"multiValueHeaders":null,"cookies":null,"isBase64Encoded":null}`,
			wantStatus: 500,
			wantHeader: http.Header{"Content-Length": {"0"}},
		},
		{
			name:       "headers",
			result:     `{"statusCode":200,"headers":{"content-type":"text/html","X-Num":3,"x-float":1.5,"X-Bool":true,"X-Null":null,"x-empty":""},"body":"<p>é\n</p>"}`,
			wantStatus: 200,
			wantHeader: http.Header{
				"Content-Type":   {"text/html"},
				"Content-Length": {"10"},
				"X-Num":          {"3"},
				"X-Float":        {"1.5"},
				"X-Bool":         {"true"},
				"X-Empty":        {""},
			},
			wantBody: "<p>é\n</p>",
		},
		{
			name: "multiValueHeaders win over headers",
			result: `{"statusCode":200,"headers":{"X-A":"h","x-b":"h"},
				"multiValueHeaders":{"x-a":["m1","m2"],"X-C":["c"],"X-D":null,"X-E":[]}}`,
			wantStatus: 200,
			wantHeader: http.Header{
				"X-A":            {"m1", "m2"},
				"X-B":            {"h"},
				"X-C":            {"c"},
				"Content-Length": {"0"},
			},
		},
		{
			name:       "cookies",
			result:     `{"statusCode":200,"cookies":["a=1; Path=/","b=2; HttpOnly",null],"headers":{"Set-Cookie":"c=3"}}`,
			wantStatus: 200,
			wantHeader: http.Header{
				"Set-Cookie":     {"c=3", "a=1; Path=/", "b=2; HttpOnly"},
				"Content-Length": {"0"},
			},
		},
		{
			name:       "base64 body",
			result:     `{"statusCode":200,"headers":{"Content-Type":"image/png"},"body":"iVBORw0K","isBase64Encoded":true}`,
			wantStatus: 200,
			wantHeader: http.Header{"Content-Type": {"image/png"}, "Content-Length": {"6"}},
			wantBody:   "\x89PNG\r\n",
		},
		{
			name:       "base64 body with escaped slash",
			result:     `{"statusCode":200,"body":"\/\/8=","isBase64Encoded":true}`,
			wantStatus: 200,
			wantHeader: jsonHeader("2"),
			wantBody:   "\xff\xff",
		},
		{
			name:       "isBase64Encoded false",
			result:     `{"statusCode":200,"body":"aGk=","isBase64Encoded":false}`,
			wantStatus: 200,
			wantHeader: jsonHeader("4"),
			wantBody:   "aGk=",
		},
		{
			name:       "204 sends no body",
			result:     `{"statusCode":204,"body":"ignored"}`,
			wantStatus: 204,
			wantHeader: http.Header{},
		},
		{
			name:       "hop-by-hop and content-length dropped",
			result:     `{"statusCode":200,"headers":{"Connection":"close","Transfer-Encoding":"chunked","content-length":"999","Keep-Alive":"x","Upgrade":"h2c"},"multiValueHeaders":{"Trailer":["x"]},"body":"ok"}`,
			wantStatus: 200,
			wantHeader: jsonHeader("2"),
			wantBody:   "ok",
		},
		{
			name:       "unknown members ignored, duplicate member last wins",
			result:     `{"statusCode":500,"extra":{"a":[1,"}"]},"statusCode":202}`,
			wantStatus: 202,
			wantHeader: http.Header{"Content-Length": {"0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := WriteResponse(rec, []byte(tt.result), false); err != nil {
				t.Fatalf("WriteResponse: %v", err)
			}
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.wantHeader, rec.Header()); diff != "" {
				t.Errorf("header mismatch (-want +got):\n%s", diff)
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Errorf("body = %q, want %q", got, tt.wantBody)
			}
		})
	}
}

func TestWriteResponseMalformed(t *testing.T) {
	for _, result := range []string{
		`{"statusCode":"200"}`,
		`{"statusCode":200.0}`,
		`{"statusCode":2e2}`,
		`{"statusCode":-200}`,
		`{"statusCode":99}`,
		`{"statusCode":100}`,
		`{"statusCode":199}`,
		`{"statusCode":600}`,
		`{"statusCode":1000}`,
		`{"statusCode":null}`,
		`{"statusCode":true}`,
		`{"statusCode":{}}`,
		`{"statusCode":200,"headers":"x"}`,
		`{"statusCode":200,"headers":[]}`,
		`{"statusCode":200,"headers":{"X-A":{"b":1}}}`,
		`{"statusCode":200,"headers":{"X-A":["a"]}}`,
		`{"statusCode":200,"headers":{"bad name":"x"}}`,
		`{"statusCode":200,"headers":{"":"x"}}`,
		`{"statusCode":200,"headers":{"X-Ünicode":"x"}}`,
		`{"statusCode":200,"headers":{"X-A":"a\r\nX-Injected: 1"}}`,
		`{"statusCode":200,"headers":{"X-A":"a\u0000"}}`,
		`{"statusCode":200,"multiValueHeaders":{"X-A":"a"}}`,
		`{"statusCode":200,"multiValueHeaders":{"X-A":[{"a":1}]}}`,
		`{"statusCode":200,"multiValueHeaders":{"X-A":[["a"]]}}`,
		`{"statusCode":200,"multiValueHeaders":[]}`,
		`{"statusCode":200,"cookies":"a=1"}`,
		`{"statusCode":200,"cookies":[1]}`,
		`{"statusCode":200,"cookies":["a=1\n"]}`,
		`{"statusCode":200,"body":123}`,
		`{"statusCode":200,"body":{"a":1}}`,
		`{"statusCode":200,"body":true}`,
		`{"statusCode":200,"body":"x","isBase64Encoded":"true"}`,
		`{"statusCode":200,"body":"x","isBase64Encoded":1}`,
		`{"statusCode":200,"body":"not base64!","isBase64Encoded":true}`,
		`{"statusCode":200,"body":"aGk","isBase64Encoded":true}`,
	} {
		t.Run(result, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Code = 0
			err := WriteResponse(rec, []byte(result), false)
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if rec.Code != 0 || len(rec.Header()) != 0 || rec.Body.Len() != 0 {
				t.Errorf("wrote to w: status %d, header %v, body %q", rec.Code, rec.Header(), rec.Body)
			}
		})
	}
}

func TestWriteResponseKeepsCallerHeaders(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("X-Request-Id", "req-1")
	rec.Header().Set("X-Overridden", "caller")
	if err := WriteResponse(rec, []byte(`{"statusCode":200,"headers":{"x-overridden":"function"}}`), false); err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"X-Request-Id":   {"req-1"},
		"X-Overridden":   {"function"},
		"Content-Length": {"0"},
	}
	if diff := cmp.Diff(want, rec.Header()); diff != "" {
		t.Errorf("header mismatch (-want +got):\n%s", diff)
	}
}

// TestWriteResponseHEAD checks through a real server that a HEAD request
// gets the headers of the response, Content-Length included, and no body.
func TestWriteResponseHEAD(t *testing.T) {
	tests := []struct {
		name   string
		method string
		result string
		want   int64
	}{
		{"body's length", "HEAD", `{"statusCode":200,"headers":{"content-type":"text/plain"},"body":"hello"}`, 5},
		// A web framework answering HEAD sends the GET's length and no body.
		{"function's length kept", "HEAD", `{"statusCode":200,"headers":{"content-length":"65"},"body":""}`, 65},
		{"multi-value length kept", "HEAD", `{"statusCode":200,"multiValueHeaders":{"Content-Length":["7","65"]}}`, 65},
		{"not a length", "HEAD", `{"statusCode":200,"headers":{"content-length":"65, 65"}}`, 0},
		{"negative", "HEAD", `{"statusCode":200,"headers":{"content-length":"-1"}}`, 0},
		{"body wins", "HEAD", `{"statusCode":200,"headers":{"content-length":"65"},"body":"hi"}`, 2},
		// A GET gets the length of the body it gets.
		{"GET", "GET", `{"statusCode":200,"headers":{"content-length":"65"},"body":""}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := WriteResponse(w, []byte(tt.result), r.Method == http.MethodHead); err != nil {
					t.Error(err)
				}
			}))
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || resp.ContentLength != tt.want || (tt.method == "HEAD" && len(body) != 0) {
				t.Errorf("%s: status %d, length %d, body %q; want length %d", tt.method, resp.StatusCode, resp.ContentLength, body, tt.want)
			}
		})
	}
}

func BenchmarkWriteResponse(b *testing.B) {
	results := map[string][]byte{
		"object": []byte(`{"statusCode":200,"headers":{"Content-Type":"application/json","Cache-Control":"no-store"},"cookies":["a=1"],"body":"{\"id\":1,\"name\":\"widget\"}"}`),
		"plain":  []byte(`{"id":1,"name":"widget","tags":["a","b"]}`),
	}
	for name, result := range results {
		b.Run(name, func(b *testing.B) {
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				if err := WriteResponse(w, result, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestWriteResponseManyHeaders guards against work quadratic in the number
// of headers a function returns.
func TestWriteResponseManyHeaders(t *testing.T) {
	const n = 50_000
	var b strings.Builder
	b.WriteString(`{"statusCode":200,"headers":{`)
	for i := range n {
		fmt.Fprintf(&b, `"X-H%d":"v",`, i)
	}
	b.WriteString(`"X-Last":"v"},"multiValueHeaders":{`)
	for i := range n {
		fmt.Fprintf(&b, `"X-M%d":["a","b"],`, i)
	}
	b.WriteString(`"X-H0":["m"]}}`)
	rec := httptest.NewRecorder()
	if err := WriteResponse(rec, []byte(b.String()), false); err != nil {
		t.Fatal(err)
	}
	h := rec.Header()
	if len(h) != 2*n+2 || h.Get("X-H0") != "m" || len(h["X-M7"]) != 2 {
		t.Errorf("%d headers, X-H0 %q, X-M7 %q", len(h), h["X-H0"], h["X-M7"])
	}
}
