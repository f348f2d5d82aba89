package httpevent

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stratus-run/stratus"
)

func FuzzEvent(f *testing.F) {
	type seed struct {
		method, host, path, query, headers, contentType string
		body                                            []byte
		tls                                             bool
	}
	for _, s := range []seed{
		{"GET", "example.com", "/", "", "", "", nil, false},
		{"POST", "fn.example:8080", "/a/b", "x=1&x=2&y", "Accept: */*\nCookie: a=1; b=2\nCookie: c=3", "application/json", []byte(`{"a":1}`), false},
		{"PUT", "[::1]:9000", "/caf\xe9", "%zz=%&==&&", "Connection: x-a\nX-A: 1\nx-a: 2", "text/plain; charset=latin1", []byte("caf\xe9"), true},
		{"HEAD", "", "", "a=%F0%9F%98%80", "X-Forwarded-For: 1.2.3.4\nHost: evil", "image/png", []byte{0, 1, 2, 0xff}, false},
		{"DELETE", "127.0.0.1", "/\x00 \x7f", "q=<script>&r=\u2028", "User-Agent: \xff\nX-Ünï: ✓", "application/vnd.x+json", []byte("\u2028<>&"), false},
	} {
		f.Add(s.method, s.host, s.path, s.query, s.headers, s.contentType, s.body, s.tls)
	}
	f.Fuzz(func(t *testing.T, method, host, path, query, headers, contentType string, body []byte, useTLS bool) {
		r := &http.Request{
			Method:     method,
			URL:        &url.URL{Path: path, RawQuery: query},
			Proto:      "HTTP/1.1",
			Header:     http.Header{},
			Host:       host,
			RemoteAddr: "192.0.2.1:1234",
		}
		if useTLS {
			r.TLS = &tls.ConnectionState{}
		}
		for line := range strings.SplitSeq(headers, "\n") {
			k, v, _ := strings.Cut(line, ":")
			// Both canonical keys, as net/http's server makes, and raw ones.
			r.Header.Add(k, strings.TrimSpace(v))
			r.Header[k] = append(r.Header[k], v)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		m := testMeta()
		m.RawPath = path
		b, err := Event(r, body, m)
		if err != nil {
			t.Fatalf("Event: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("event is not valid JSON: %s", b)
		}
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("unmarshal event: %v\n%s", err, b)
		}
		if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RequestContext.HTTP.Method != method && utf8.ValidString(method) {
			t.Errorf("version %q, routeKey %q, method %q", ev.Version, ev.RouteKey, ev.RequestContext.HTTP.Method)
		}
		if want := escapePath(path); ev.RawPath != want || !strings.HasPrefix(want, "/") || !utf8.ValidString(want) {
			t.Errorf("rawPath = %q, want %q (valid UTF-8, leading slash)", ev.RawPath, want)
		}
		got := []byte(ev.Body)
		if ev.IsBase64Encoded {
			if got, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
				t.Fatalf("decode base64 body: %v", err)
			}
		}
		if !bytes.Equal(got, body) {
			t.Errorf("body = %q, want %q", got, body)
		}
		if len(body) == 0 && ev.IsBase64Encoded {
			t.Error("empty body has isBase64Encoded true")
		}
		for k := range ev.Headers {
			if k != strings.ToLower(k) || k == "cookie" || k == "connection" {
				t.Errorf("header %q in event", k)
			}
		}
	})
}

func FuzzWriteResponse(f *testing.F) {
	for _, s := range []string{
		``,
		`null`,
		`"text"`,
		`[1,{"statusCode":200}]`,
		`{"a":{"b":[1,2,{"c":"}"}]}}`,
		`{"statusCode":200}`,
		`{"statusCode":"200"}`,
		`{"statusCode":404,"body":"not found","headers":{"Content-Type":"text/plain"}}`,
		`{"statusCode":200,"headers":{"X-N":1,"X-B":false,"X-Z":null},"multiValueHeaders":{"X-M":["a",2,null]},"cookies":["a=1",null]}`,
		`{"statusCode":200,"body":"aGVsbG8=","isBase64Encoded":true}`,
		`{"statusCode":200,"body":"\/\/8=","isBase64Encoded":true}`,
		`{"statusCode":204,"body":"x"}`,
		`{"statusCode":199}`,
		`{"status\u0043ode":201,"b\u006fdy":"\u00e9\ud83d\ude00"}`,
		` {"statusCode" : 302 , "headers" : { "Location" : "/x" } } `,
		`{"statusCode":200,"headers":{"X-A":"a\r\nb"}}`,
		`{"statusCode":200,"headers":{"Transfer-Encoding":"chunked","Content-Length":"99"},"body":"x"}`,
		`{"statusCode":200,"body":"\xff\xfe"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, result []byte) {
		w := &checkWriter{h: http.Header{}}
		err := WriteResponse(w, result, false)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if w.status != 0 || len(w.h) != 0 || w.body.Len() != 0 {
				t.Errorf("error %v after writing: status %d, header %v, body %q", err, w.status, w.h, w.body.Bytes())
			}
			return
		}
		if w.status < 200 || w.status > 599 || w.calls != 1 {
			t.Fatalf("status %d written %d times", w.status, w.calls)
		}
		for k, vs := range w.h {
			if !validName([]byte(k)) || dropped(k) && k != "Content-Length" {
				t.Errorf("header name %q", k)
			}
			for _, v := range vs {
				if !validValue([]byte(v)) {
					t.Errorf("header %s value %q", k, v)
				}
			}
		}
		if cl := w.h.Get("Content-Length"); cl != "" {
			if n, err := strconv.Atoi(cl); err != nil || n != w.body.Len() {
				t.Errorf("Content-Length %q, body %d bytes", cl, w.body.Len())
			}
		} else if w.status != 204 && w.status != 304 {
			t.Error("no Content-Length")
		}
	})
}

// checkWriter records what a handler does to it.
type checkWriter struct {
	h      http.Header
	status int
	calls  int
	body   bytes.Buffer
}

func (w *checkWriter) Header() http.Header { return w.h }

func (w *checkWriter) WriteHeader(code int) {
	w.status = code
	w.calls++
}

func (w *checkWriter) Write(b []byte) (int, error) {
	if w.calls == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(b)
}
