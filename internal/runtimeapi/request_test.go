package runtimeapi

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestParseFast: the requests runtimes send are parsed without
// net/http; anything unusual is left to it.
func TestParseFast(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		fast       bool
		want       request
		length     int64
		chunked    bool
	}{
		{"aws-lambda-go next", "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUser-Agent: aws-lambda-go/go1.26\r\nAccept-Encoding: gzip\r\n\r\n",
			true, request{method: "GET", path: pathNext}, -1, false},
		{"aws-lambda-go response", "POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nHost: h\r\nUser-Agent: aws-lambda-go\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\nTrailer: Lambda-Runtime-Function-Error-Body,Lambda-Runtime-Function-Error-Type\r\nAccept-Encoding: gzip\r\n\r\n",
			true, request{method: "POST", path: invPrefix + "r1/response"}, -1, true},
		{"sized error", "POST /2018-06-01/runtime/invocation/r1/error HTTP/1.1\r\nHost: h\r\ncontent-length: 12\r\nlambda-runtime-function-error-type: Runtime.X\r\n\r\n",
			true, request{method: "POST", path: invPrefix + "r1/error", errType: "Runtime.X"}, 12, false},
		{"close", "GET /x HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n", true, request{method: "GET", path: "/x", close: true}, -1, false},
		{"HTTP/1.0", "GET /x HTTP/1.0\r\n\r\n", true, request{method: "GET", path: "/x", close: true}, -1, false},
		{"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, request{method: "GET", path: "/x"}, -1, false},
		{"expect", "POST /x HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", true, request{method: "POST", path: "/x", expect: true}, 5, false},
		{"query", "GET /x?a=b HTTP/1.1\r\n\r\n", true, request{method: "GET", path: "/x"}, -1, false},
		{"escaped path", "GET /2018-06-01/runtime/invocation/a%2Fb/response HTTP/1.1\r\n\r\n", false, request{}, 0, false},
		{"other method", "PUT /x HTTP/1.1\r\n\r\n", false, request{}, 0, false},
		{"HEAD", "HEAD /x HTTP/1.1\r\n\r\n", false, request{}, 0, false},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\n", false, request{}, 0, false},
		{"absolute form", "GET http://h/x HTTP/1.1\r\n\r\n", false, request{}, 0, false},
		{"folding", "GET /x HTTP/1.1\r\nA: b\r\n c\r\n\r\n", false, request{}, 0, false},
		{"two lengths", "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", false, request{}, 0, false},
		{"length and chunked", "POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", false, request{}, 0, false},
		{"other coding", "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, request{}, 0, false},
		{"signed length", "POST /x HTTP/1.1\r\nContent-Length: +1\r\n\r\n", false, request{}, 0, false},
		{"space in name", "GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n", false, request{}, 0, false},
		{"other expectation", "POST /x HTTP/1.1\r\nExpect: something\r\n\r\n", false, request{}, 0, false},
		{"control byte in path", "GET /x\x01 HTTP/1.1\r\n\r\n", false, request{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, fh, ok := parseFast([]byte(tc.head))
			if ok != tc.fast {
				t.Fatalf("parsed fast: %v, want %v", ok, tc.fast)
			}
			if !ok {
				return
			}
			if r.method != tc.want.method || r.path != tc.want.path || r.escaped != tc.want.path || r.close != tc.want.close ||
				r.expect != tc.want.expect || r.errType != tc.want.errType {
				t.Errorf("got %+v, want %+v", *r, tc.want)
			}
			if fh.contentLength != tc.length || fh.chunked != tc.chunked {
				t.Errorf("body framing: length %d chunked %v, want %d %v", fh.contentLength, fh.chunked, tc.length, tc.chunked)
			}
		})
	}
}

// FuzzParseFast: whatever parseFast accepts, net/http reads the same way.
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{
		"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /2018-06-01/runtime/invocation/r1/response HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: Lambda-Runtime-Function-Error-Type\r\n\r\n",
		"POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
		"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, head string) {
		i := strings.Index(head, "\r\n\r\n")
		if i < 0 {
			return
		}
		head = head[:i+4]
		r, fh, ok := parseFast([]byte(head))
		if !ok {
			return
		}
		hr, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			// net/http is stricter about a few things (a Host header of
			// bad syntax, a bad header value): the server answers such a
			// request instead of refusing it; it is what the runtime sent.
			return
		}
		if hr.Method != r.method || hr.URL.Path != r.path || hr.Close != r.close {
			t.Errorf("%q: fast %s %s close=%v, net/http %s %s close=%v", head, r.method, r.path, r.close, hr.Method, hr.URL.Path, hr.Close)
		}
		chunked := len(hr.TransferEncoding) > 0
		length := hr.ContentLength
		if chunked {
			length = -1
		} else if hr.Body == http.NoBody && length == 0 && fh.contentLength < 0 {
			length = -1
		}
		if chunked != fh.chunked || length != fh.contentLength {
			t.Errorf("%q: fast length %d chunked %v, net/http %d %v", head, fh.contentLength, fh.chunked, length, chunked)
		}
		if got := hr.Header.Get(headerErrorType); got != r.errType && r.errType != "" {
			t.Errorf("%q: error type %q, net/http %q", head, r.errType, got)
		}
	})
}

// TestChunkedBody: a chunked body and its trailers, and bodies cut short.
func TestChunkedBody(t *testing.T) {
	in := "5\r\nhello\r\n1\r\n!\r\n0\r\nLambda-Runtime-Function-Error-Type: E\r\nlambda-runtime-function-error-body: Yg==\r\n\r\nGET /next"
	br := bufio.NewReader(strings.NewReader(in))
	b := &chunkedBody{cr: newChunked(br), br: br}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello!" {
		t.Fatalf("body %q, %v", got, err)
	}
	if b.get(headerErrorType) != "E" || b.get("Lambda-Runtime-Function-Error-Body") != "Yg==" {
		t.Errorf("trailers %v", b.trailer)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "GET /next" {
		t.Errorf("left after the body: %q", rest)
	}
	for _, cut := range []string{"5\r\nhel", "5\r\nhello\r\n0\r\n", "5\r\nhello\r\n0\r\nA: b\r\n"} {
		br := bufio.NewReader(strings.NewReader(cut))
		if _, err := io.ReadAll(&chunkedBody{cr: newChunked(br), br: br}); err != io.ErrUnexpectedEOF {
			t.Errorf("%q: err %v, want ErrUnexpectedEOF", cut, err)
		}
	}
	sb := &sizedBody{r: strings.NewReader("abc"), n: 5}
	if _, err := io.ReadAll(sb); err != io.ErrUnexpectedEOF {
		t.Errorf("short sized body: err %v, want ErrUnexpectedEOF", err)
	}
	sb = &sizedBody{r: strings.NewReader("abcdef"), n: 5}
	if b, err := io.ReadAll(sb); err != nil || !bytes.Equal(b, []byte("abcde")) {
		t.Errorf("sized body: %q %v", b, err)
	}
}
