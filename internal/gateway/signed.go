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
// route deployed with auth "signed" that did not carry the token. It
// reads the body (bounded as an event is) and leaves it in r.Body for the
// route to read again. It answers the requests it does not admit: 403
// {"Message":"Forbidden"} as function URLs do (the reason is not the
// caller's to see), 413 for a body over the limit, 500 when the verifier
// failed.
func (g *Gateway) admitSigned(w http.ResponseWriter, r *http.Request) bool {
	if g.verify == nil {
		forbidden(w)
		return false
	}
	body, err := g.readBody(r)
	if err != nil {
		g.answer.Error(w, r, err)
		return false
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	if err := g.verify(r, body); err != nil {
		var ref refusal
		if !errors.As(err, &ref) {
			g.answer.Error(w, r, err)
			return false
		}
		forbidden(w)
		return false
	}
	return true
}

// forbidden answers 403 as a Lambda function URL does.
func forbidden(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", "AccessDeniedException")
	w.WriteHeader(http.StatusForbidden)
	w.Write(forbiddenBody)
}
