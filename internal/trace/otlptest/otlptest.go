// Package otlptest is an OTLP trace receiver for tests: OTLP/HTTP (protobuf
// or JSON bodies, gzip or not) and OTLP/gRPC on two loopback ports, built
// on the official OTLP protobuf types. It keeps every span it receives, in
// arrival order, flattened into Span values that a test can compare.
package otlptest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed exports
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, flattened. IDs are lowercase hex;
// ParentSpanID is "" for a root span.
type Span struct {
	Name         string
	TraceID      string
	SpanID       string
	ParentSpanID string
	// Kind is the OpenTelemetry API's name of the span kind: "internal",
	// "server", "client", "producer", "consumer" or "unspecified".
	Kind string
	// Status is "unset", "ok" or "error".
	Status string
	// Scope is the name of the tracer's instrumentation scope.
	Scope string
	// Attrs and Resource hold the span's and its resource's attributes,
	// values written as strings: strconv's forms for bools and numbers,
	// lowercase hex for bytes, JSON for arrays and maps.
	Attrs    map[string]string
	Resource map[string]string
}

// Receiver receives OTLP trace exports until the test ends.
type Receiver struct {
	httpURL, grpcURL string

	mu      sync.Mutex
	spans   []Span
	changed chan struct{} // closed and replaced when spans arrive
}

// Start starts a receiver on two 127.0.0.1 ports and stops it when t ends.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{changed: make(chan struct{})}

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hl.Close()
		t.Fatalf("otlptest: listen: %v", err)
	}
	r.httpURL = "http://" + hl.Addr().String()
	r.grpcURL = "grpc://" + gl.Addr().String()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, grpcService{r: r})

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); hs.Serve(hl) }()
	go func() { defer wg.Done(); gs.Serve(gl) }()
	t.Cleanup(func() {
		hs.Close()
		gs.Stop()
		wg.Wait()
	})
	return r
}

// HTTPURL is the base URL of the OTLP/HTTP receiver, http://127.0.0.1:PORT;
// it takes exports at /v1/traces.
func (r *Receiver) HTTPURL() string { return r.httpURL }

// GRPCURL is the address of the OTLP/gRPC receiver, grpc://127.0.0.1:PORT.
func (r *Receiver) GRPCURL() string { return r.grpcURL }

// Spans returns a copy of the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// WaitSpan returns the first received span that match accepts, waiting up
// to timeout for it to arrive; it fails the test if none does.
func (r *Receiver) WaitSpan(t testing.TB, timeout time.Duration, match func(Span) bool) Span {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		for _, s := range r.spans {
			if match(s) {
				r.mu.Unlock()
				return s
			}
		}
		n := len(r.spans)
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("otlptest: no matching span within %v among the %d received", timeout, n)
			return Span{}
		}
	}
}

func (r *Receiver) add(req *coltracepb.ExportTraceServiceRequest) {
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, Span{
					Name:         s.GetName(),
					TraceID:      hex.EncodeToString(s.GetTraceId()),
					SpanID:       hex.EncodeToString(s.GetSpanId()),
					ParentSpanID: hex.EncodeToString(s.GetParentSpanId()),
					Kind:         oteltrace.SpanKind(s.GetKind()).String(),
					Status:       statusName(s.GetStatus().GetCode()),
					Scope:        ss.GetScope().GetName(),
					Attrs:        attrMap(s.GetAttributes()),
					Resource:     res,
				})
			}
		}
	}
	if len(got) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spans = append(r.spans, got...)
	close(r.changed)
	r.changed = make(chan struct{})
}

func statusName(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	}
	return "unset"
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = valueString(kv.GetValue())
	}
	return m
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	}
	b, _ := json.Marshal(plain(v))
	return string(b)
}

// plain turns an array or map value into Go values for JSON.
func plain(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_ArrayValue:
		a := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			a = append(a, plain(e))
		}
		return a
	case *commonpb.AnyValue_KvlistValue:
		m := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			m[kv.GetKey()] = plain(kv.GetValue())
		}
		return m
	case nil:
		return nil
	}
	return valueString(v)
}

// serveHTTP takes one OTLP/HTTP export and answers in the body's encoding.
func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = http.MaxBytesReader(w, req.Body, 64<<20)
	if strings.EqualFold(req.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, "gzip: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	msg := &coltracepb.ExportTraceServiceRequest{}
	ct, _, _ := strings.Cut(req.Header.Get("Content-Type"), ";")
	ct = strings.TrimSpace(ct)
	var out []byte
	switch ct {
	case "application/x-protobuf":
		if err := proto.Unmarshal(raw, msg); err != nil {
			http.Error(w, "protobuf: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, _ = proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	case "application/json":
		if err := unmarshalJSON(raw, msg); err != nil {
			http.Error(w, "json: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, _ = protojson.Marshal(&coltracepb.ExportTraceServiceResponse{})
	default:
		http.Error(w, "unsupported content type "+strconv.Quote(ct), http.StatusUnsupportedMediaType)
		return
	}
	r.add(msg)
	w.Header().Set("Content-Type", ct)
	w.Write(out)
}

// unmarshalJSON decodes OTLP/JSON, which differs from protobuf's JSON
// mapping in one way: trace and span IDs are hex, not base64.
func unmarshalJSON(raw []byte, msg *coltracepb.ExportTraceServiceRequest) error {
	var doc map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		return err
	}
	for _, rs := range list(doc, "resourceSpans", "resource_spans") {
		for _, ss := range list(rs, "scopeSpans", "scope_spans") {
			for _, s := range list(ss, "spans") {
				if err := hexToBase64(s, "traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"); err != nil {
					return err
				}
				for _, l := range list(s, "links") {
					if err := hexToBase64(l, "traceId", "trace_id", "spanId", "span_id"); err != nil {
						return err
					}
				}
			}
		}
	}
	fixed, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(fixed, msg)
}

func list(v any, keys ...string) []any {
	m, _ := v.(map[string]any)
	for _, k := range keys {
		if l, ok := m[k].([]any); ok {
			return l
		}
	}
	return nil
}

func hexToBase64(v any, keys ...string) error {
	m, _ := v.(map[string]any)
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			continue
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return fmt.Errorf("%s %q: not hex", k, s)
		}
		m[k] = base64.StdEncoding.EncodeToString(b)
	}
	return nil
}

type grpcService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Receiver
}

func (g grpcService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}
