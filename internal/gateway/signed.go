package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
)

// refusal is the error a signature verifier returns for a request it
// refuses (sigv4.Error): Status is 403. Any other error of the verifier
// is its own failure (500).
type refusal interface {
	error
	Status() int
}

// forbiddenBody is what a Lambda function URL with AWS_IAM auth answers a
// request it does not admit.
var forbiddenBody = []byte(`{"Message":"Forbidden"}` + "\n")

// admitSigned checks the SigV4 signature of r, a request to a function
// route deployed with auth "signed" that did not carry the token. A
// request without a SigV4 Authorization header, or one that fails the
// checks needing no body (g.precheck), is refused before its body is
// read. Then it reads the body (bounded as an event is) and leaves it in
// r.Body for the route to read again. It answers the requests it does
// not admit: 403
// {"Message":"Forbidden"} as function URLs do (the reason is not the
// caller's to see), 413 for a body over the limit, 500 when the verifier
// failed.
func (g *Gateway) admitSigned(w http.ResponseWriter, r *http.Request) bool {
	if g.verify == nil || !sigv4Signed(r.Header) {
		forbidden(w)
		return false
	}
	if g.precheck != nil && !g.admitted(w, r, g.precheck(r)) {
		return false
	}
	body, err := g.readBody(r)
	if err != nil {
		g.answer.Error(w, r, err)
		return false
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	return g.admitted(w, r, g.verify(r, body))
}

// admitted reports whether err, a verifier's answer, admits r; when it
// does not, it answers r: 403 for a refusal, 500 for the verifier's
// failure.
func (g *Gateway) admitted(w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil {
		return true
	}
	var ref refusal
	if !errors.As(err, &ref) {
		g.answer.Error(w, r, err)
		return false
	}
	forbidden(w)
	return false
}

// forbidden answers 403 as a Lambda function URL does.
func forbidden(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", "AccessDeniedException")
	w.WriteHeader(http.StatusForbidden)
	w.Write(forbiddenBody)
}
