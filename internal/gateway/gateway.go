// Package gateway turns HTTP requests into invocations: the direct invoke
// endpoint (POST /v1/functions/NAME/invoke, the body is the event) and the
// function route (ANY /fn/NAME[/PATH], the request becomes an API Gateway
// HTTP API v2.0 event and the result maps back as Lambda function URLs do),
// where NAME may be qualified (NAME:1, NAME:ALIAS; X-Amz-Executed-Version
// says what ran), and proxies the service routes (ServiceProxy). On the
// function and service routes, whatever the workload's auth mode, the
// server's token is removed from every request before it reaches the
// workload (Token).
//
// Bodies are bounded in time (BoundBodies: 408 past the server's read
// timeout) and in size (413). A request holds no instance nor replica slot
// while its client sends its body: a function's event is read whole before
// the invocation takes an instance, and a service's request takes a slot
// only once its body is complete or its first 64 KiB have come.
//
// Every error answer goes through v1.Responder, which maps its kind to a
// status with v1.ErrorFrom and logs it with its request ID when it is a
// 5xx. A function's error on its route and a workload that did not answer
// are v1.UpstreamError: 502. On a function's routes (/fn/NAME and its
// host route NAME.<domain>) a caller without the server's token gets a
// function URL's generic body ("Internal Server Error"), the detail
// staying in the log and the invocation's record.
//
// Forwarding headers follow one rule (httpevent.Resolve): a trusted
// proxy's (Config.TrustedProxies) are kept and appended to, anyone
// else's replaced by what the server saw; the prefix a path route cuts
// off is X-Forwarded-Prefix. A server of a cluster that relays a request
// says who its client was (WithPeer).
//
// Trace is the server's outermost middleware: each request but the
// health and metrics ones runs in a server span, child of the client's
// trace context, named after its route kind; invocations run in it
// (their Request.Trigger says which route made them: TriggerSync for the
// invoke endpoint, TriggerHTTP for the function route) and the service
// proxy passes it on to the replica as its traceparent. The service
// proxy reports each answered request's status and latency
// (ProxyConfig.Observe).
//
// The gateway starts no goroutines; each request runs on its server
// goroutine, waiting in the pool while the function is at its cap
// (bounded in time and in number, then 429).
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/httpevent"
)

type invoker interface {
	Invoke(ctx context.Context, name string, req stratus.Request) (*stratus.Response, error)
}

type enqueuer interface {
	Enqueue(ctx context.Context, fn string, event []byte) (string, error)
}

type heads interface {
	Head(name string) (*stratus.Version, bool)
}

// resolver finds the version a qualified name runs; *functions.Service
// is one.
type resolver interface {
	Resolve(ref stratus.FunctionRef) (*stratus.Version, error)
}

// Gateway serves invocations over HTTP.
type Gateway struct {
	inv      invoker
	queue    enqueuer
	heads    heads
	versions resolver // nil: qualified names are not found
	token    *Token
	verify   func(r *http.Request, body []byte) error // nil: no signature is admitted
	precheck func(r *http.Request) error              // nil: the body is read before Verify
	maxEvent int64
	account  string
	answer   v1.Responder // writes every answer and error
	policy   []string     // Config.PathPolicy's header value; nil: none
	domain   string       // host routes' domain, lower case; "": none
	trusted  proxies      // whose forwarding headers are believed
}

// DefaultMaxEvent bounds an event when Config.MaxEvent is 0: 6 MiB, the
// payload limit of a synchronous Lambda invocation.
const DefaultMaxEvent int64 = 6 << 20

// Config configures a Gateway. Invoker, Queue and Heads are required;
// the other fields' zero values mean the defaults.
type Config struct {
	// Invoker runs invocations; Queue takes asynchronous ones; Heads
	// names the deployed functions. Required.
	Invoker invoker
	Queue   enqueuer
	Heads   heads
	// Versions resolves qualified names ("NAME:1", "NAME:ALIAS"); nil:
	// only "NAME" and "NAME:$LATEST" are found.
	Versions resolver
	// Token authenticates requests on the function route and is removed
	// from them before they become events. Nil: no request has the token.
	Token *Token
	// Verify checks a request's AWS Signature Version 4 over its body
	// (sigv4.Verifier.Verify): a function route deployed with auth
	// "signed" admits the token or a request it admits. A refusal is an
	// error with a Status() int method. Nil: such routes take the token
	// only.
	Verify func(r *http.Request, body []byte) error
	// Precheck makes the checks of Verify that need no body
	// (sigv4.Verifier.Precheck) before the body is read. Nil: a request
	// with a SigV4 Authorization header has its body read for Verify.
	Precheck func(r *http.Request) error
	// MaxEvent bounds an event's size (DefaultMaxEvent if 0).
	MaxEvent int64
	// AccountID is the account in the function route's events
	// (httpevent.DefaultAccountID if empty).
	AccountID string
	// Log gets the failures answered 5xx; nil discards them.
	Log *slog.Logger
	// PathPolicy, if set, is a Content-Security-Policy that every answer
	// of the function route /fn/NAME carries besides the function's own
	// (console.SandboxPolicy, while the console shares the route's
	// origin); the function's Set-Cookie and Clear-Site-Data headers (its
	// cookies included) are then dropped, since they would act on the
	// console's origin. Empty: none, and the function's headers pass.
	PathPolicy string
	// Domain is the domain of host routes: NAME.<Domain> reaches function
	// NAME at the root of its URL (HostFunction). Empty: no host routes.
	Domain string
	// TrustedProxies are the peers whose forwarding headers are believed
	// and appended to (httpevent.Resolve); nil: nobody's.
	TrustedProxies []netip.Prefix
}

// New returns a Gateway. It panics if a required field of cfg is nil: a
// wiring bug, which would otherwise surface at the first request.
func New(cfg Config) *Gateway {
	switch {
	case cfg.Invoker == nil:
		panic("gateway.New: Config.Invoker is nil")
	case cfg.Queue == nil:
		panic("gateway.New: Config.Queue is nil")
	case cfg.Heads == nil:
		panic("gateway.New: Config.Heads is nil")
	}
	cfg = cfg.withDefaults()
	return &Gateway{
		inv: cfg.Invoker, queue: cfg.Queue, heads: cfg.Heads, versions: cfg.Versions, token: cfg.Token, verify: cfg.Verify, precheck: cfg.Precheck, maxEvent: cfg.MaxEvent, account: cfg.AccountID,
		answer: v1.Responder{Log: cfg.Log}, policy: policyValue(cfg.PathPolicy),
		domain: strings.ToLower(strings.Trim(cfg.Domain, ".")), trusted: proxies(cfg.TrustedProxies),
	}
}

// withDefaults fills in the defaults of c's zero values.
func (c Config) withDefaults() Config {
	if c.Token == nil {
		c.Token = NewToken("")
	}
	if c.MaxEvent <= 0 {
		c.MaxEvent = DefaultMaxEvent
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Header values the answers share; net/http only reads them.
var (
	coldTrue  = []string{"true"}
	coldFalse = []string{"false"}
	unhandled = []string{"Unhandled"}
)

// readBody reads at most g.maxEvent bytes of the request body. The
// buffer grows as the bytes arrive: a Content-Length sizes it only up to
// presize, so that a client's word costs little memory before its bytes
// come.
func (g *Gateway) readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > g.maxEvent {
		return nil, fmt.Errorf("request body is %d bytes, more than the invocation payload limit of %d bytes: %w", r.ContentLength, g.maxEvent, stratus.ErrTooLarge)
	}
	size := int64(512)
	if n := r.ContentLength; n > 0 {
		// One allocation for a small event (the async accept path reads
		// an event per request); the +1 finds the end without growing.
		size = min(n, presize) + 1
	}
	b, err := readAll(io.LimitReader(r.Body, g.maxEvent+1), make([]byte, 0, size))
	if errors.Is(err, ErrBodyTimeout) {
		return nil, fmt.Errorf("read event: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read event: %v: %w", err, stratus.ErrInvalid)
	}
	if int64(len(b)) > g.maxEvent {
		return nil, fmt.Errorf("request body is more than the invocation payload limit of %d bytes: %w", g.maxEvent, stratus.ErrTooLarge)
	}
	return b, nil
}

// presize bounds the buffer a request body's Content-Length reserves
// before its bytes arrive.
const presize = 64 << 10

// readAll appends what r has to b until EOF, growing b as io.ReadAll
// does.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

var emptyEvent = []byte("{}")

// lookup reads the function a route names: "NAME" or "NAME:QUALIFIER"
// (the path segment, which the mux has URL-decoded). It returns the
// function's head and the name its invocations go under: NAME for
// $LATEST, else NAME:QUALIFIER. ok is false for a name that is not valid
// or a function that does not exist; whether the qualifier exists is
// checkQualifier's to say.
func (g *Gateway) lookup(name string) (head *stratus.Version, key string, ok bool) {
	ref, err := stratus.ParseFunctionRef(name)
	if err != nil {
		return nil, name, false
	}
	head, ok = g.heads.Head(ref.Name)
	if ref.Latest() {
		return head, ref.Name, ok
	}
	return head, ref.String(), ok
}

// checkQualifier fails with stratus.ErrNotFound unless key, from lookup,
// names $LATEST or a published version or alias that exists.
func (g *Gateway) checkQualifier(key string) error {
	ref, err := stratus.ParseFunctionRef(key)
	if err != nil || ref.Latest() {
		return err
	}
	if g.versions == nil {
		return fmt.Errorf("function %q: %w", key, stratus.ErrNotFound)
	}
	_, err = g.versions.Resolve(ref)
	return err
}

// ServeInvoke handles POST /v1/functions/{name}/invoke; {name} may hold a
// qualifier (NAME:1, NAME:ALIAS). The caller has checked the token. Of
// the request's headers only X-Amz-Client-Context and
// X-Stratus-Cognito-Identity reach the function, so the token does not.
func (g *Gateway) ServeInvoke(w http.ResponseWriter, r *http.Request) {
	_, name, ok := g.lookup(r.PathValue("name"))
	if !ok {
		g.answer.Error(w, r, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	if err := g.checkQualifier(name); err != nil {
		g.answer.Error(w, r, err)
		return
	}
	body, err := g.readBody(r)
	if err != nil {
		g.answer.Error(w, r, err)
		return
	}
	if len(body) == 0 {
		body = emptyEvent
	} else if !json.Valid(body) {
		g.answer.Error(w, r, fmt.Errorf("event is not valid JSON: %w", stratus.ErrInvalid))
		return
	}
	switch typ := invocationType(r.Header); typ {
	case v1.InvocationRequest:
	case v1.InvocationEvent:
		id, err := g.queue.Enqueue(r.Context(), name, body)
		if err != nil {
			g.answer.Error(w, r, err)
			return
		}
		w.Header()[v1.HeaderRequestID] = []string{id}
		g.answer.JSON(w, r, http.StatusAccepted, v1.Accepted{RequestID: id})
		return
	default:
		g.answer.Error(w, r, fmt.Errorf("invocation type %q: want %s or %s: %w", typ, v1.InvocationRequest, v1.InvocationEvent, stratus.ErrInvalid))
		return
	}
	req := stratus.Request{
		RequestID:       stratus.NewRequestID(),
		Event:           body,
		ClientContext:   r.Header.Get("X-Amz-Client-Context"),
		CognitoIdentity: r.Header.Get("X-Stratus-Cognito-Identity"),
		Trigger:         stratus.TriggerSync,
	}
	resp, err := g.inv.Invoke(r.Context(), name, req)
	if err != nil {
		w.Header()[v1.HeaderRequestID] = []string{req.RequestID}
		g.answer.Error(w, r, err)
		return
	}
	h := w.Header()
	setInvokeHeaders(h, resp)
	if resp.ErrorType != "" {
		h[v1.HeaderFunctionError] = unhandled
	}
	g.answer.RawJSON(w, http.StatusOK, resp.Body)
}

// invocationType is the request's invocation type, RequestResponse when
// it names none.
func invocationType(h http.Header) string {
	t := h.Get(v1.HeaderInvocationType)
	if t == "" {
		t = h.Get(v1.HeaderAmzInvocationType)
	}
	if t == "" {
		return v1.InvocationRequest
	}
	return t
}

func setInvokeHeaders(h http.Header, resp *stratus.Response) {
	rec := &resp.Record
	h[v1.HeaderRequestID] = []string{rec.RequestID}
	h[v1.HeaderVersion] = []string{executedVersion(rec)}
	h[v1.HeaderSnapshot] = []string{strconv.Itoa(rec.Version)}
	h[v1.HeaderDuration] = []string{strconv.FormatFloat(rec.DurationMs, 'f', 3, 64)}
	if rec.Cold {
		h[v1.HeaderColdStart] = coldTrue
		h[v1.HeaderInitDuration] = []string{strconv.FormatFloat(rec.InitDurationMs, 'f', 3, 64)}
	} else {
		h[v1.HeaderColdStart] = coldFalse
	}
}

// fnName is the function's name in key, a name from lookup.
func fnName(key string) string {
	name, _, _ := strings.Cut(key, ":")
	return name
}

// executedVersion is what X-Amz-Executed-Version says ran: $LATEST or
// the published version's number.
func executedVersion(rec *stratus.Invocation) string {
	if rec.Qualifier == "" {
		return stratus.LatestVersion
	}
	return rec.Qualifier
}

// ServeFunctionURL handles ANY /fn/{name}[/{path...}]; {name} may hold a
// qualifier (NAME:1, NAME:ALIAS, also URL-encoded). The route's auth is
// the function's ($LATEST's), whatever the qualifier. The function sees
// the path after /fn/NAME, and X-Forwarded-Prefix /fn/NAME (as the
// client escaped it).
func (g *Gateway) ServeFunctionURL(w http.ResponseWriter, r *http.Request) {
	if g.policy != nil {
		w.Header()[policyKey] = g.policy
	}
	// The path after the name's segment, as the client escaped it, and
	// the prefix cut off.
	raw := "/" + r.PathValue("path")
	prefix, rest, found := cutRoute(r, "/fn/", r.PathValue("name"))
	if found {
		raw = rest
	}
	g.serveFunction(w, r, r.PathValue("name"), raw, prefix)
}

// HostFunction returns the function a request's Host names: NAME when it
// is NAME.<domain> (see HostLabel) and NAME is a function. Host names are
// case-insensitive and HostLabel lower-cases them, so a function whose
// name has capitals has no host route. Host routes take no qualifier:
// NAME's $LATEST answers.
func (g *Gateway) HostFunction(r *http.Request) (string, bool) {
	name, ok := HostLabel(r.Host, g.domain)
	if !ok || strings.Contains(name, ":") {
		return "", false
	}
	if _, err := stratus.ParseFunctionRef(name); err != nil {
		return "", false
	}
	if _, ok := g.heads.Head(name); ok {
		return name, true
	}
	return "", false
}

// HostLabel returns the label of host (a Host header, port allowed, a
// trailing dot too) in front of "."+domain, in lower case; ok is false
// when host is not one label under domain (a label holds no "." nor
// "@"). Every host route (functions', services', the cluster's
// forwarder's) reads a Host with it.
func HostLabel(host, domain string) (string, bool) {
	domain = strings.Trim(domain, ".")
	if domain == "" {
		return "", false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	if len(host) <= len(domain)+1 || host[len(host)-len(domain)-1] != '.' || !strings.EqualFold(host[len(host)-len(domain):], domain) {
		return "", false
	}
	label := host[:len(host)-len(domain)-1]
	if strings.ContainsAny(label, ".@") {
		return "", false
	}
	return strings.ToLower(label), true
}

// cutRoute returns what a route mounted at root ("/fn/", "/svc/") cuts
// off r's path, root and the name's segment as the client escaped them
// (X-Forwarded-Prefix), and the escaped path after it ("/" at least);
// found is false, and prefix root+name, when r's escaped path does not
// start with root.
func cutRoute(r *http.Request, root, name string) (prefix, rest string, found bool) {
	p, ok := strings.CutPrefix(r.URL.EscapedPath(), root)
	if !ok {
		return root + name, "/", false
	}
	seg, after, _ := strings.Cut(p, "/")
	return root + seg, "/" + after, true
}

// ServeHost serves a request whose Host names function name (see
// HostFunction) as that function's URL at the root: the function sees
// the path as sent, with the same auth as /fn/NAME and no
// X-Forwarded-Prefix of the gateway's.
func (g *Gateway) ServeHost(w http.ResponseWriter, r *http.Request, name string) {
	functionHostSpan(r, name)
	g.serveFunction(w, r, name, r.URL.EscapedPath(), "")
}

// serveFunction invokes the function that ref ("NAME" or
// "NAME:QUALIFIER") names with r as a function URL event whose raw path
// is raw; prefix is the path the route cut off ("": none).
func (g *Gateway) serveFunction(w http.ResponseWriter, r *http.Request, ref, raw, prefix string) {
	head, name, ok := g.lookup(ref)
	// The detail of a function's failure is for those who hold the
	// server's token; everybody else gets what a function URL answers.
	withToken := g.token.Authorized(r.Header)
	// The server's token is not the function's to see, whatever its auth.
	admitted := g.token.admit(r, ok && head.Config.Auth == stratus.AuthNone)
	if !admitted && ok && head.Config.Auth == stratus.AuthSigned {
		// admitSigned answers the requests it refuses.
		if !g.admitSigned(w, r) {
			return
		}
		admitted = true
	}
	if !admitted {
		g.answer.Error(w, r, v1.ErrUnauthorized)
		return
	}
	if !ok {
		g.answer.Error(w, r, fmt.Errorf("function %q: %w", name, stratus.ErrNotFound))
		return
	}
	if err := g.checkQualifier(name); err != nil {
		g.answer.Error(w, r, err)
		return
	}
	body, err := g.readBody(r)
	if err != nil {
		g.answer.Error(w, r, err)
		return
	}
	reqID := stratus.NewRequestID()
	fwd := httpevent.Resolve(r, PeerOf(r), prefix, g.trusted.trusts)
	event, err := httpevent.Event(r, body, httpevent.Meta{RawPath: raw, RequestID: reqID, APIID: fnName(name), AccountID: g.account, Forward: &fwd})
	if err != nil {
		g.answer.Error(w, r, err)
		return
	}
	if int64(len(event)) > g.maxEvent {
		w.Header()[v1.HeaderRequestID] = []string{reqID}
		g.answer.Error(w, r, fmt.Errorf("invocation payload (the function URL event: the request's headers and its %d-byte body, base64-encoded unless it is text) is %d bytes, more than the limit of %d bytes: %w",
			len(body), len(event), g.maxEvent, stratus.ErrTooLarge))
		return
	}
	resp, err := g.inv.Invoke(r.Context(), name, stratus.Request{RequestID: reqID, Event: event, Trigger: stratus.TriggerHTTP})
	if err != nil {
		w.Header()[v1.HeaderRequestID] = []string{reqID}
		g.answer.Error(w, r, err)
		return
	}
	setInvokeHeaders(w.Header(), resp)
	if resp.ErrorType != "" {
		// As function URLs do: a function error is a 502 to the caller.
		w.Header()[v1.HeaderFunctionError] = unhandled
		var obj struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(resp.Body, &obj)
		g.upstreamError(w, r, withToken, fmt.Errorf("function %q: %w", name, &v1.UpstreamError{Code: resp.ErrorType, Message: obj.ErrorMessage}))
		return
	}
	if err := g.writeFunctionAnswer(w, resp.Body, r.Method == http.MethodHead); err != nil {
		g.upstreamError(w, r, withToken, fmt.Errorf("function %q returned a malformed response: %w", name,
			&v1.UpstreamError{Code: "Function.MalformedResponse", Message: err.Error()}))
	}
}

// upstreamError answers err, a function's failure on its URL: with its
// code and message to a caller that holds the server's token (detail),
// else as a Lambda function URL does, 502 with a body that says nothing
// of it. Either way it is logged with the request's ID, and a function's
// error is in its invocation's record and logs.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, detail bool, err error) {
	if detail {
		g.answer.Error(w, r, err)
		return
	}
	status, _ := g.answer.Status(w, r, err)
	h := w.Header()
	h["Content-Type"] = plainText
	h["Content-Length"] = []string{strconv.Itoa(len(genericError))}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, genericError)
}

// genericError is the body of a function URL's answer to a function's
// failure, as Lambda's.
const genericError = "Internal Server Error"

var plainText = []string{"text/plain; charset=utf-8"}
