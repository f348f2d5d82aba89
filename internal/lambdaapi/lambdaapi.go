// Package lambdaapi serves the AWS Lambda API at AWS's paths, with AWS's
// JSON shapes, status codes and error types, so that the AWS SDKs, the AWS
// CLI and tools built on them (SAM, Terraform) manage and invoke Stratus's
// functions. Functions made here and natively are the same functions.
//
// Every operation of Lambda's service model is in the operation table
// (ops_gen.go, written by go generate from botocore's model); the router
// matches a request's method and path against it. An operation Stratus
// implements has a handler (registered with handle in the file that
// serves it); any other answers UnsupportedOperationException, never a
// silent success. A path no operation has answers
// UnknownOperationException.
//
// Each request is authenticated before it is routed: the server's bearer
// token, or an AWS Signature Version 4 checked by Config.Verify over the
// body. The body is read whole once, and only after the token was
// accepted or the signature's checks that need no body passed
// (Config.Precheck), so that an unauthenticated client costs no body
// read; it is bounded by operation (bodyLimit): MaxPayload for an Invoke,
// MaxBody for the code uploads, maxSmallBody for any other. Errors are
// translated to Lambda's shape once, in writeError: the X-Amzn-ErrorType
// header and a {"Type", "Message"} body, which aws-sdk-go-v2, boto3 and
// the AWS CLI all read.
//
// The package starts no goroutines; each request runs on its server
// goroutine.
package lambdaapi

//go:generate go run ./internal/genops -out ops_gen.go

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sigv4"
)

// Functions is what the API does with functions: *functions.Service.
type Functions interface {
	Deploy(ctx context.Context, name string, cfg stratus.FunctionConfig, code io.Reader) (*stratus.Function, bool, error)
	Get(ctx context.Context, name string) (*stratus.Function, error)
	List(ctx context.Context) ([]stratus.Function, error)
	Remove(ctx context.Context, name string) error
	Head(name string) (*stratus.Version, bool)
	Configure(ctx context.Context, name string, change func(*stratus.FunctionConfig) error) (*stratus.Function, error)

	Publish(ctx context.Context, name, description string) (*stratus.Version, error)
	PublishedVersions(ctx context.Context, name string) ([]stratus.Version, error)
	PublishedVersion(ctx context.Context, name string, n int) (*stratus.Version, error)
	DeleteVersion(ctx context.Context, name string, n int) error

	PutAlias(ctx context.Context, a stratus.Alias, create bool, revisionID string) (*stratus.Alias, error)
	Alias(ctx context.Context, name, alias string) (*stratus.Alias, error)
	Aliases(ctx context.Context, name string) ([]stratus.Alias, error)
	DeleteAlias(ctx context.Context, name, alias string) error

	// HeadOf is the version ref names: the head, a published version, or
	// the version an alias points at; false if there is none.
	HeadOf(ref stratus.FunctionRef) (*stratus.Version, bool)
	// Invoke runs one invocation of name, "NAME[:QUALIFIER]".
	Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)
}

// enqueuer takes asynchronous invocations of "NAME[:QUALIFIER]".
type enqueuer interface {
	Enqueue(ctx context.Context, fn string, event []byte) (string, error)
}

// Config configures an API. Functions and Queue are required; the other
// fields' zero values mean the defaults.
type Config struct {
	Functions Functions
	// Queue takes invocations of InvocationType Event.
	Queue enqueuer
	// Logs returns the log lines of invocation requestID of function fn,
	// oldest first, once what the invocation wrote is stored (for LogType
	// Tail); nil answers Tail with no log.
	Logs func(ctx context.Context, fn, requestID string) ([]stratus.LogLine, error)
	// Region and AccountID are those of the ARNs the API writes ("local"
	// and stratus.DefaultAccountID when empty).
	Region    string
	AccountID string
	// Token is the server's bearer token, accepted instead of a
	// signature; empty, no request has it.
	Token string
	// Verify checks a request's AWS Signature Version 4 over its body; a
	// refusal is a *sigv4.Error. Nil: only the token is accepted.
	Verify func(r *http.Request, body []byte) error
	// Precheck makes the checks of Verify that need no body
	// (sigv4.Verifier.Precheck), before the body is read; a refusal is
	// a *sigv4.Error. Nil: the body of a signed request is read and
	// Verify makes every check.
	Precheck func(r *http.Request) error
	// MaxBody bounds a request body (DefaultMaxBody when 0); MaxPayload
	// an Invoke's payload (DefaultMaxPayload when 0).
	MaxBody    int64
	MaxPayload int64
	// Arch is the architecture functions run on (the machine's when
	// empty): stratus.ArchX86 or stratus.ArchArm.
	Arch string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Log gets every failure answered 5xx; nil discards it.
	Log *slog.Logger
}

// Limits of request bodies, as on Lambda.
const (
	// DefaultMaxBody is the largest request: a CreateFunction with a 50
	// MB zip, base64 in JSON.
	DefaultMaxBody int64 = 70_167_211
	// DefaultMaxPayload is the largest payload of a synchronous Invoke.
	DefaultMaxPayload int64 = 6 << 20
)

// maxSmallBody bounds the body of an operation that carries neither code
// nor a payload: a configuration, an alias, tags.
const maxSmallBody int64 = 1 << 20

// API is the http.Handler of the Lambda API.
type API struct {
	fns        Functions
	queue      enqueuer
	logs       func(ctx context.Context, fn, requestID string) ([]stratus.LogLine, error)
	region     string
	account    string
	token      []byte
	verify     func(r *http.Request, body []byte) error
	precheck   func(r *http.Request) error
	maxBody    int64
	maxPayload int64
	arch       string
	now        func() time.Time
	log        *slog.Logger
	routes     *router
}

// New returns the API. It panics if a required field of c is nil: a
// wiring bug, which would otherwise surface at the first request.
func New(c Config) *API {
	switch {
	case c.Functions == nil:
		panic("lambdaapi.New: Config.Functions is nil")
	case c.Queue == nil:
		panic("lambdaapi.New: Config.Queue is nil")
	}
	if c.Region == "" {
		c.Region = "local"
	}
	if c.AccountID == "" {
		c.AccountID = stratus.DefaultAccountID
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.Arch == "" {
		c.Arch = stratus.ArchOf(runtime.GOARCH)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return &API{
		fns: c.Functions, queue: c.Queue, logs: c.Logs, region: c.Region, account: c.AccountID,
		token: []byte(c.Token), verify: c.Verify, precheck: c.Precheck, maxBody: c.MaxBody, maxPayload: c.MaxPayload,
		arch: c.Arch, now: c.Now, log: c.Log, routes: newRouter(operations),
	}
}

// Prefixes are the first path segments of Lambda's operations, "/2015-03-31/"
// and the like: the server sends every request under them to the API.
func Prefixes() []string { return newRouter(operations).prefixes() }

// ServeHTTP implements http.Handler: authenticate, read the body, route,
// run the operation's handler, answer its error in Lambda's shape.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, id: stratus.NewRequestID()}
	w.Header().Set("X-Amzn-RequestId", c.id)
	if err := a.serve(c); err != nil {
		a.writeError(c, err)
	}
}

func (a *API) serve(c *call) error {
	// The operation is looked up first only to name its errors; a
	// request is authenticated before it learns whether its path exists.
	op, params, routeErr := a.routes.match(c.r)
	c.op = op
	// What needs no body is checked before the body is read.
	token, err := a.preauthenticate(c.r)
	if err != nil {
		return err
	}
	body, err := a.readBody(c)
	if err != nil {
		return err
	}
	c.body = body
	if !token {
		if err := a.authenticate(c.r, body); err != nil {
			return err
		}
	}
	if routeErr != nil {
		return routeErr
	}
	c.params = params
	h, ok := handlers[op.Name]
	if !ok {
		return &Error{Type: "UnsupportedOperationException", Status: http.StatusBadRequest,
			Message: op.Name + " is not supported by Stratus"}
	}
	return h(a, c)
}

// bodyLimit is the largest body of op's requests: its payload for an
// Invoke, MaxBody for the operations that carry a function's code,
// maxSmallBody for any other (and for a path no operation has).
func (a *API) bodyLimit(op *operation) int64 {
	if op == nil {
		return maxSmallBody
	}
	switch op.Name {
	case "Invoke", "InvokeWithResponseStream", "InvokeAsync":
		return a.maxPayload
	case "CreateFunction", "UpdateFunctionCode":
		return a.maxBody
	}
	return maxSmallBody
}

// readBody reads the request body whole, up to its operation's limit.
// It runs once the request is authenticated or passed the signature's
// checks that need no body. Its buffer starts at the Content-Length (plus
// a byte for the end of the body) when that is known and within the limit,
// but at most presize: a Content-Length is the client's word, not worth
// more memory before the bytes come; the buffer grows as more arrive. A
// Content-Length over the limit is answered at once.
func (a *API) readBody(c *call) ([]byte, error) {
	r := c.r
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	limit := a.bodyLimit(c.op)
	if r.ContentLength > limit {
		return nil, tooLarge(c.op, fmt.Sprintf("request is %d bytes, more than the %d byte limit", r.ContentLength, limit))
	}
	size := int64(bytes.MinRead)
	if r.ContentLength >= 0 {
		size = min(r.ContentLength, presize) + 1
	}
	buf := make([]byte, 0, size)
	lr := io.LimitedReader{R: r.Body, N: limit + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, stratus.ErrRequestTimeout) {
				return nil, fmt.Errorf("read request: %w", err)
			}
			return nil, &Error{Type: "InvalidRequestContentException", Message: "read request body: " + err.Error()}
		}
	}
	if int64(len(buf)) > limit {
		return nil, tooLarge(c.op, fmt.Sprintf("request is more than the %d byte limit", limit))
	}
	return buf, nil
}

// presize bounds the buffer readBody sizes from a Content-Length.
const presize = 64 << 10

// tooLarge is a request over a bound: RequestTooLargeException for an
// Invoke (the model's), RequestEntityTooLargeException for others (as
// Lambda answers an oversized CreateFunction).
func tooLarge(op *operation, msg string) *Error {
	if op != nil && (op.Name == "Invoke" || op.Name == "InvokeWithResponseStream") {
		return &Error{Type: "RequestTooLargeException", Message: msg}
	}
	return &Error{Type: "RequestEntityTooLargeException", Status: http.StatusRequestEntityTooLarge, Message: msg}
}

// preauthenticate makes the checks of authentication that need no body:
// token is true when r carries the server's token (and needs no other
// check); an error refuses r before its body is read. Otherwise r is
// signed, and authenticate checks its signature over the body.
func (a *API) preauthenticate(r *http.Request) (token bool, err error) {
	auth := r.Header.Get("Authorization")
	if a.bearer(auth) {
		return true, nil
	}
	switch {
	case auth == "" && r.URL.Query().Get("X-Amz-Signature") == "":
		return false, &Error{Type: "MissingAuthenticationTokenException", Status: http.StatusForbidden,
			Message: "missing authentication: sign the request with an access key (stratus keys create) or send Authorization: Bearer TOKEN"}
	case hasScheme(auth, "Bearer"):
		return false, &Error{Type: "UnrecognizedClientException", Status: http.StatusForbidden,
			Message: "the bearer token is not this server's"}
	case a.verify == nil:
		return false, &Error{Type: "UnrecognizedClientException", Status: http.StatusForbidden,
			Message: "this server takes no signed requests; send Authorization: Bearer TOKEN"}
	case a.precheck == nil:
		return false, nil
	}
	return false, signatureError(a.precheck(r))
}

// signatureError translates a verifier's error: a refusal to Lambda's
// shape, a failure of the key store to a 500.
func signatureError(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := sigv4.AsError(err); ok {
		return &Error{Type: e.Code, Status: e.Status(), Message: e.Message}
	}
	return fmt.Errorf("verify signature: %w", err)
}

// authenticate checks the signature of r, which preauthenticate let
// through without the token, over its body.
func (a *API) authenticate(r *http.Request, body []byte) error {
	return signatureError(a.verify(r, body))
}

// bearer reports whether the Authorization value v is "Bearer TOKEN"
// with the server's token, compared in constant time.
func (a *API) bearer(v string) bool {
	if len(a.token) == 0 || !hasScheme(v, "Bearer") {
		return false
	}
	v = strings.Trim(v, " \t")
	return subtle.ConstantTimeCompare([]byte(strings.Trim(v[len("Bearer"):], " \t")), a.token) == 1
}

// hasScheme reports whether the Authorization value v uses scheme.
func hasScheme(v, scheme string) bool {
	v = strings.TrimLeft(v, " \t")
	return len(v) > len(scheme) && strings.EqualFold(v[:len(scheme)], scheme) && (v[len(scheme)] == ' ' || v[len(scheme)] == '\t')
}
