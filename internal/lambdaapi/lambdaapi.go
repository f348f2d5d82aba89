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
// body, which is read whole once (bounded by Config.MaxBody). Errors are
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

// API is the http.Handler of the Lambda API.
type API struct {
	fns        Functions
	queue      enqueuer
	logs       func(ctx context.Context, fn, requestID string) ([]stratus.LogLine, error)
	region     string
	account    string
	token      []byte
	verify     func(r *http.Request, body []byte) error
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
		token: []byte(c.Token), verify: c.Verify, maxBody: c.MaxBody, maxPayload: c.MaxPayload,
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
	body, err := a.readBody(c)
	if err != nil {
		return err
	}
	c.body = body
	if err := a.authenticate(c.r, body); err != nil {
		return err
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

// readBody reads the request body whole, up to MaxBody.
func (a *API) readBody(c *call) ([]byte, error) {
	r := c.r
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > a.maxBody {
		return nil, tooLarge(c.op, fmt.Sprintf("request is %d bytes, more than the %d byte limit", r.ContentLength, a.maxBody))
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, a.maxBody+1))
	if err != nil {
		if errors.Is(err, stratus.ErrRequestTimeout) {
			return nil, fmt.Errorf("read request: %w", err)
		}
		return nil, &Error{Type: "InvalidRequestContentException", Message: "read request body: " + err.Error()}
	}
	if n > a.maxBody {
		return nil, tooLarge(c.op, fmt.Sprintf("request is more than the %d byte limit", a.maxBody))
	}
	return buf.Bytes(), nil
}

// tooLarge is a request over a bound: RequestTooLargeException for an
// Invoke (the model's), RequestEntityTooLargeException for others (as
// Lambda answers an oversized CreateFunction).
func tooLarge(op *operation, msg string) *Error {
	if op != nil && (op.Name == "Invoke" || op.Name == "InvokeWithResponseStream") {
		return &Error{Type: "RequestTooLargeException", Message: msg}
	}
	return &Error{Type: "RequestEntityTooLargeException", Status: http.StatusRequestEntityTooLarge, Message: msg}
}

// authenticate accepts the server's bearer token or a signature Verify
// accepts.
func (a *API) authenticate(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	if a.bearer(auth) {
		return nil
	}
	switch {
	case auth == "" && r.URL.Query().Get("X-Amz-Signature") == "":
		return &Error{Type: "MissingAuthenticationTokenException", Status: http.StatusForbidden,
			Message: "missing authentication: sign the request with an access key (stratus keys create) or send Authorization: Bearer TOKEN"}
	case hasScheme(auth, "Bearer"):
		return &Error{Type: "UnrecognizedClientException", Status: http.StatusForbidden,
			Message: "the bearer token is not this server's"}
	case a.verify == nil:
		return &Error{Type: "UnrecognizedClientException", Status: http.StatusForbidden,
			Message: "this server takes no signed requests; send Authorization: Bearer TOKEN"}
	}
	if err := a.verify(r, body); err != nil {
		if e, ok := sigv4.AsError(err); ok {
			return &Error{Type: e.Code, Status: e.Status(), Message: e.Message}
		}
		return fmt.Errorf("verify signature: %w", err)
	}
	return nil
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
