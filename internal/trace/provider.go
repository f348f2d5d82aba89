package trace

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"

	"github.com/stratus-run/stratus"
)

// Config says where spans go.
type Config struct {
	// Endpoint is the OTLP receiver: http://host:port[/path] or
	// https://host:port[/path] for OTLP/HTTP with protobuf bodies (path
	// /v1/traces when none is given), grpc://host:port for OTLP/gRPC in
	// plain text, grpcs://host:port for OTLP/gRPC over TLS. "" sends nothing.
	Endpoint string
	// Region is the server's region, the cloud.region of every span.
	Region string
	// Version is Stratus's version, the service.version of every span.
	Version string
	// Log receives export errors (nil: discarded). The SDK reports them to
	// OpenTelemetry's process-wide error handler, which New points at Log:
	// the last Provider made with an endpoint gets them all.
	Log *slog.Logger
}

// batchTimeout is how long a finished span waits at most before it is
// exported: short enough that a trace shows up while its request is still
// on the user's mind, long enough to batch a busy second's spans.
const batchTimeout = time.Second

// scopePrefix names the instrumentation scope of a component's tracer.
const scopePrefix = "github.com/stratus-run/stratus/internal/"

// Provider makes the tracers of Stratus's components. With an endpoint it
// records spans and exports them in batches; without one its tracers only
// give each span a fresh span ID in the caller's trace, so that the
// context handed on (traceparent, Lambda's trace header) names a span of
// Stratus as the parent, and nothing is recorded or sent.
type Provider struct {
	sdk     *sdktrace.TracerProvider // nil without an endpoint
	version string
}

// endpoint is a parsed Config.Endpoint.
type endpoint struct {
	grpc   bool
	secure bool
	host   string // host:port
	path   string // OTLP/HTTP only
}

const endpointForms = "http://host:port[/path], https://host:port[/path], grpc://host:port or grpcs://host:port"

// ParseEndpoint reports whether s is a valid Config.Endpoint; "" is (it
// turns export off). The error wraps stratus.ErrInvalid; it quotes s, says
// what is wrong with it and names the accepted forms, for the caller to
// prefix with the setting's name.
func ParseEndpoint(s string) error {
	if s == "" {
		return nil
	}
	_, err := parseEndpoint(s)
	return err
}

func parseEndpoint(s string) (endpoint, error) {
	bad := func(why string) (endpoint, error) {
		return endpoint{}, fmt.Errorf("%q: %s; want %s: %w", s, why, endpointForms, stratus.ErrInvalid)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL")
	}
	var e endpoint
	switch u.Scheme {
	case "http":
	case "https":
		e.secure = true
	case "grpc":
		e.grpc = true
	case "grpcs":
		e.grpc, e.secure = true, true
	case "":
		return bad("no scheme")
	default:
		return bad("unknown scheme " + u.Scheme)
	}
	switch {
	case u.Opaque != "" || u.Host == "":
		return bad("no host")
	case u.User != nil:
		return bad("credentials in the URL")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return bad("a query or fragment")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return bad("no host")
	}
	if port == "" {
		if e.grpc {
			return bad("no port")
		}
		port = "80"
		if e.secure {
			port = "443"
		}
	}
	e.host = net.JoinHostPort(host, port)
	if e.grpc {
		if u.Path != "" && u.Path != "/" {
			return bad("a path (OTLP/gRPC has none)")
		}
		return e, nil
	}
	e.path = u.Path
	if e.path == "" || e.path == "/" {
		e.path = "/v1/traces"
	}
	return e, nil
}

// New returns a Provider for c. It connects to nothing yet: an exporter
// dials its endpoint when it has spans to send, and failures to send are
// logged, never returned to the code that ends a span. The error wraps
// stratus.ErrInvalid when c.Endpoint is malformed.
func New(ctx context.Context, c Config) (*Provider, error) {
	p := &Provider{version: c.Version}
	if c.Endpoint == "" {
		return p, nil
	}
	e, err := parseEndpoint(c.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint: %w", err)
	}
	var exp sdktrace.SpanExporter
	if e.grpc {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(e.host)}
		if e.secure {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
		} else {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(e.host), otlptracehttp.WithURLPath(e.path)}
		if !e.secure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter for %s: %w", c.Endpoint, err)
	}
	attrs := []attribute.KeyValue{
		semconv.ServiceName("stratus"),
		semconv.TelemetrySDKName("opentelemetry"),
		semconv.TelemetrySDKLanguageGo,
		semconv.TelemetrySDKVersion(sdk.Version()),
	}
	if c.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(c.Version))
	}
	if c.Region != "" {
		attrs = append(attrs, semconv.CloudRegion(c.Region))
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("export spans", "endpoint", c.Endpoint, "err", err)
	}))
	p.sdk = sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewWithAttributes(semconv.SchemaURL, attrs...)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithIDGenerator(xrayIDs{}),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(batchTimeout)),
	)
	return p, nil
}

// Tracer returns the tracer of a component ("gateway", "pool", "events"),
// its instrumentation scope named after the component's package. A nil
// Provider gives the tracer of a Provider without an endpoint.
func (p *Provider) Tracer(component string) oteltrace.Tracer {
	if p == nil || p.sdk == nil {
		return idTracer{}
	}
	return p.sdk.Tracer(scopePrefix+component, oteltrace.WithInstrumentationVersion(p.version))
}

// Shutdown exports the spans still buffered and stops the exporter; ctx
// bounds how long that may take. Spans ended afterwards are dropped. It is
// a no-op without an endpoint, and safe to call more than once.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush spans: %w", err)
	}
	return nil
}
