package sigv4

// This file is the contract other packages build on (the Lambda API handler in
// internal/lambdaapi, the gateway's signed function routes): they take a
//
//	Verify func(r *http.Request, body []byte) error
//
// in their Config, which internal/server fills with (*Verifier).Verify, and on a
// non-nil error they answer 403 with the *Error's Code and Message (errors.As).
// They may also take a
//
//	Precheck func(r *http.Request) error
//
// filled with (*Verifier).Precheck, which they call before reading the body:
// it refuses, with the same errors, a request that Verify would refuse
// whatever its body.

import (
	"errors"
	"net/http"
)

// Error is a refused signature: Code is the AWS error type
// (UnrecognizedClientException, InvalidSignatureException,
// IncompleteSignatureException, MissingAuthenticationTokenException) and Message is
// the text AWS answers with. Every refusal is HTTP 403 (Status).
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "sigv4: " + e.Code + ": " + e.Message }

// Status is the HTTP status of every refusal: 403.
func (e *Error) Status() int { return http.StatusForbidden }

// AsError returns the *Error inside err, or nil when err is nil. An error that is not
// an *Error (a key store failure) is returned as nil with ok false: callers answer it
// as an internal error.
func AsError(err error) (e *Error, ok bool) {
	return errors.AsType[*Error](err)
}

// Signed reports whether r carries a SigV4 signature at all (an Authorization
// header starting with "AWS4-HMAC-SHA256"), so a handler that also accepts a bearer
// token can tell which one to check.
func Signed(r *http.Request) bool {
	return len(r.Header.Get("Authorization")) >= len(algorithm) &&
		r.Header.Get("Authorization")[:len(algorithm)] == algorithm
}

const algorithm = "AWS4-HMAC-SHA256"

// AWS's error types of a refused signature.
const (
	CodeMissingToken        = "MissingAuthenticationTokenException"
	CodeIncompleteSignature = "IncompleteSignatureException"
	CodeInvalidSignature    = "InvalidSignatureException"
	CodeUnrecognizedClient  = "UnrecognizedClientException"
)

// MessageSignatureMismatch is the message of a signature that does not
// match the request (another body, path, query, header or secret).
const MessageSignatureMismatch = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."

func incomplete(msg string) *Error { return &Error{Code: CodeIncompleteSignature, Message: msg} }
func invalid(msg string) *Error    { return &Error{Code: CodeInvalidSignature, Message: msg} }
