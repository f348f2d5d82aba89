package gateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// UploadTimeout bounds the time the body of an authenticated upload may
// take to arrive: a function's code (PUT /v1/functions/NAME, up to
// --max-zip-bytes; on the Lambda API, CreateFunction, POST
// /2015-03-31/functions, and UpdateFunctionCode, PUT
// /2015-03-31/functions/NAME/code, base64 in JSON) or an image archive
// (POST /v1/images/import). An hour is a 50 MiB zip at 15 KB/s or a 1
// GiB image at 300 KB/s. An upload is authenticated, for this bound, by
// the server's token or, on the Lambda API's paths, by a SigV4 signature
// that passes the checks needing no body (its form, time, scope and key:
// sigv4.Verifier.Precheck); its signature over the body is checked once
// the body has arrived. Other requests get the read timeout.
const UploadTimeout = time.Hour

// ErrBodyTimeout is a request body that did not arrive within its bound:
// of the kinds stratus.ErrRequestTimeout (which the one status mapping,
// v1.ErrorFrom, answers with 408) and stratus.ErrInvalid (the client's
// fault, for code that tells kinds apart without that mapping).
var ErrBodyTimeout error = bodyTimeout{}

type bodyTimeout struct{}

func (bodyTimeout) Error() string { return stratus.ErrRequestTimeout.Error() }
func (bodyTimeout) Is(target error) bool {
	return target == stratus.ErrRequestTimeout || target == stratus.ErrInvalid
}

// CodeRequestTimeout is the error code of a 408 answer.
const CodeRequestTimeout = v1.CodeRequestTimeout

// BoundBodies returns next with the bounds on the time request bodies
// may take to arrive. readTimeout must be the http.Server's ReadTimeout,
// which net/http applies to a whole request, header and body, from its
// start, and lifts once the body has been read to its end (before the
// handler runs, for a request without a body), so that a long
// invocation, a streamed answer or a WebSocket is not cut by it.
// BoundBodies gives an authenticated upload (see UploadTimeout)
// UploadTimeout from its handler's start instead, and turns a read past
// the bound into ErrBodyTimeout, which v1.Responder answers with 408.
// precheck is sigv4.Verifier.Precheck; nil, only the token makes an
// upload's bound UploadTimeout.
//
// The bound is the connection's read deadline: a client that trickles its
// body holds its connection until the bound, and nothing else.
func BoundBodies(next http.Handler, readTimeout time.Duration, token *Token, precheck func(*http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		d := readTimeout
		if up, lambda := isUpload(r); up && (token.Authorized(r.Header) ||
			lambda && precheck != nil && sigv4Signed(r.Header) && precheck(r) == nil) {
			d = UploadTimeout
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		r.Body = &boundBody{ReadCloser: r.Body, limit: d}
		next.ServeHTTP(w, r)
	})
}

// isUpload reports whether r uploads code or an image, and whether it
// does so on the Lambda API.
func isUpload(r *http.Request) (upload, lambda bool) {
	p := r.URL.Path
	switch r.Method {
	case http.MethodPut:
		if name, ok := strings.CutPrefix(p, "/v1/functions/"); ok {
			return oneSegment(name), false
		}
		if rest, ok := strings.CutPrefix(p, lambdaFunctions+"/"); ok {
			name, ok := strings.CutSuffix(rest, "/code")
			return ok && oneSegment(name), true
		}
	case http.MethodPost:
		if p == lambdaFunctions {
			return true, true
		}
		return p == "/v1/images/import", false
	}
	return false, false
}

// lambdaFunctions is the Lambda API's path of functions.
const lambdaFunctions = "/2015-03-31/functions"

// oneSegment reports whether s is one non-empty path segment.
func oneSegment(s string) bool { return s != "" && !strings.Contains(s, "/") }

// sigv4Signed reports whether h carries an AWS Signature Version 4
// Authorization header.
func sigv4Signed(h http.Header) bool {
	v := strings.TrimLeft(h.Get("Authorization"), " \t")
	return strings.HasPrefix(v, "AWS4-HMAC-SHA256 ")
}

// boundBody is a request body read under a deadline: a read past it
// fails with ErrBodyTimeout.
type boundBody struct {
	io.ReadCloser
	limit time.Duration
}

func (b *boundBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("read timeout %s: %w", b.limit, ErrBodyTimeout)
	}
	return n, err
}
