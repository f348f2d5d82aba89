package runtimeapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
)

// request is what the server reads of a runtime's request.
type request struct {
	method string
	// path is the request's path, decoded; escaped is as sent.
	path, escaped string
	// close: the client asks to close the connection after the answer.
	close bool
	// expect: the client waits for 100 Continue before it sends its body.
	expect bool
	// errType is the Lambda-Runtime-Function-Error-Type header.
	errType string
	// body is never nil: http.NoBody when there is none.
	body io.Reader
	// trailer returns a trailer of the body once it is read to its end.
	trailer func(key string) string
}

// readRequest reads the connection's next request. The requests runtimes
// send (a request line, a few headers, a body with Content-Length or
// chunked with trailers) are parsed here, from the read buffer, without
// allocating a header map; anything else (a header that is not whole in
// the buffer, line folding, a percent-encoded path, other methods,
// transfer codings or versions) goes to net/http's ReadRequest, which
// parses it as the standard library's server would.
func (c *conn) readRequest() (*request, error) {
	br := c.br
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	for {
		buf, _ := br.Peek(br.Buffered())
		if i := bytes.Index(buf, crlfcrlf); i >= 0 {
			if r, fh, ok := parseFast(buf[:i+4]); ok {
				_, _ = br.Discard(i + 4)
				c.setBody(r, fh)
				return r, nil
			}
			break
		}
		if br.Buffered() >= br.Size() {
			break
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			break // ReadRequest meets the same error
		}
	}
	hr, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	return &request{
		method:  hr.Method,
		path:    hr.URL.Path,
		escaped: hr.URL.EscapedPath(),
		close:   hr.Close,
		expect:  hr.ProtoAtLeast(1, 1) && strings.EqualFold(hr.Header.Get("Expect"), "100-continue"),
		errType: hr.Header.Get(headerErrorType),
		body:    hr.Body,
		trailer: func(k string) string { return hr.Trailer.Get(k) },
	}, nil
}

const headerErrorType = "Lambda-Runtime-Function-Error-Type"

var crlfcrlf = []byte("\r\n\r\n")

// fastHeader is how a request parsed by parseFast frames its body.
type fastHeader struct {
	contentLength int64 // -1: none
	chunked       bool
}

// parseFast parses a simple request header h (ending in an empty line);
// false when ReadRequest should parse it instead.
func parseFast(h []byte) (*request, fastHeader, bool) {
	fh := fastHeader{contentLength: -1}
	// Lines end in CRLF, and a CR or LF is nowhere else (net/http also
	// takes a bare LF as a line's end).
	if n := bytes.Count(h, crlf); n != bytes.Count(h, lf) || n != bytes.Count(h, cr) {
		return nil, fh, false
	}
	line, rest, _ := bytes.Cut(h, crlf)
	method, line, ok1 := bytes.Cut(line, sp)
	target, proto, ok2 := bytes.Cut(line, sp)
	if !ok1 || !ok2 {
		return nil, fh, false
	}
	var r request
	switch string(method) {
	case http.MethodGet:
		r.method = http.MethodGet
	case http.MethodPost:
		r.method = http.MethodPost
	default:
		return nil, fh, false
	}
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		r.close = true
	default:
		return nil, fh, false
	}
	if len(target) == 0 || target[0] != '/' {
		return nil, fh, false
	}
	for _, b := range target {
		if b <= ' ' || b >= 0x7f || b == '%' || b == '#' {
			return nil, fh, false
		}
	}
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	r.path = string(target)
	r.escaped = r.path

	var sawTE bool
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, crlf)
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fh, false // obsolete line folding
		}
		name, value, ok := bytes.Cut(line, colon)
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return nil, fh, false
		}
		value = bytes.Trim(value, " \t")
		switch {
		case equalFold(name, "Content-Length"):
			if fh.contentLength >= 0 {
				return nil, fh, false
			}
			n, ok := parseLength(value)
			if !ok {
				return nil, fh, false
			}
			fh.contentLength = n
		case equalFold(name, "Transfer-Encoding"):
			if sawTE || !equalFold(value, "chunked") {
				return nil, fh, false
			}
			sawTE, fh.chunked = true, true
		case equalFold(name, "Connection"):
			for _, tok := range bytes.Split(value, comma) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case equalFold(tok, "close"):
					r.close = true
				case equalFold(tok, "keep-alive") && string(proto) == "HTTP/1.0":
					r.close = false
				}
			}
		case equalFold(name, "Expect"):
			if !equalFold(value, "100-continue") || string(proto) != "HTTP/1.1" {
				return nil, fh, false
			}
			r.expect = true
		case equalFold(name, headerErrorType):
			if r.errType == "" {
				r.errType = string(value)
			}
		}
	}
	if fh.chunked && (fh.contentLength >= 0 || string(proto) != "HTTP/1.1") {
		return nil, fh, false
	}
	return &r, fh, true
}

// setBody gives a request parsed by parseFast its body, read from c.br.
func (c *conn) setBody(r *request, fh fastHeader) {
	r.trailer = func(string) string { return "" }
	switch {
	case fh.chunked:
		b := &chunkedBody{cr: newChunked(c.br), br: c.br}
		r.body = b
		r.trailer = b.get
	case fh.contentLength > 0:
		r.body = &sizedBody{r: c.br, n: fh.contentLength}
	default:
		r.body = http.NoBody
	}
}

var (
	crlf  = []byte("\r\n")
	cr    = []byte("\r")
	lf    = []byte("\n")
	sp    = []byte(" ")
	colon = []byte(":")
	comma = []byte(",")
)

// equalFold reports whether b is s, ignoring ASCII letter case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: digits only.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// sizedBody is a body of n bytes; one that ends early is an
// io.ErrUnexpectedEOF, as net/http's.
type sizedBody struct {
	r io.Reader
	n int64
}

func (b *sizedBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func newChunked(br *bufio.Reader) io.Reader { return httputil.NewChunkedReader(br) }

// maxTrailerBytes bounds the trailers of a chunked body.
const maxTrailerBytes = 64 << 10

// chunkedBody is a chunked body; at its end it reads the trailers.
type chunkedBody struct {
	cr      io.Reader
	br      *bufio.Reader
	trailer http.Header
	err     error
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.cr.Read(p)
	if err == io.EOF {
		err = b.readTrailer()
		if err == nil {
			err = io.EOF
		}
	} else if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
	return n, err
}

// readTrailer reads the trailer section after the last chunk, up to its
// empty line.
func (b *chunkedBody) readTrailer() error {
	left := maxTrailerBytes
	for {
		line, err := b.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF || err == bufio.ErrBufferFull {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if left -= len(line); left < 0 {
			return errors.New("chunked body: trailers too large")
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			return nil
		}
		name, value, ok := bytes.Cut(line, colon)
		if !ok || len(name) == 0 {
			return errors.New("chunked body: malformed trailer")
		}
		if b.trailer == nil {
			b.trailer = make(http.Header)
		}
		b.trailer.Add(textproto.CanonicalMIMEHeaderKey(string(name)), string(bytes.Trim(value, " \t")))
	}
}

func (b *chunkedBody) get(key string) string { return b.trailer.Get(key) }
