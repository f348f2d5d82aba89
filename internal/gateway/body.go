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

// UploadTimeout bounds the time the body of an upload sent with the
// server's token may take to arrive: a function's code (PUT
// /v1/functions/NAME, up to --max-zip-bytes) or an image archive (POST
// /v1/images/import). An hour is a 50 MiB zip at 15 KB/s or a 1 GiB image
// at 300 KB/s. Without the token those routes get the read timeout, as
// every other request does.
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
// BoundBodies gives an upload with the token UploadTimeout from its
// handler's start instead, and turns a read past the bound into
// ErrBodyTimeout, which v1.Responder answers with 408.
//
// The bound is the connection's read deadline: a client that trickles its
// body holds its connection until the bound, and nothing else.
func BoundBodies(next http.Handler, readTimeout time.Duration, token *Token) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		d := readTimeout
		if isUpload(r) && token.Authorized(r.Header) {
			d = UploadTimeout
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		r.Body = &boundBody{ReadCloser: r.Body, limit: d}
		next.ServeHTTP(w, r)
	})
}

// isUpload reports whether r uploads code or an image.
func isUpload(r *http.Request) bool {
	switch r.Method {
	case http.MethodPut:
		name, ok := strings.CutPrefix(r.URL.Path, "/v1/functions/")
		return ok && name != "" && !strings.Contains(name, "/")
	case http.MethodPost:
		return r.URL.Path == "/v1/images/import"
	}
	return false
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
