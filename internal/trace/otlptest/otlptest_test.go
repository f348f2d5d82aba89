package otlptest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/stratus-run/stratus/internal/trace/otlptest"
)

// An OTLP/JSON body as the specification writes it: hex IDs, integer enums.
const jsonBody = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl"}}]},
"scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
"parentSpanId":"eee19b7ec3c1b173","name":"json span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
"attributes":[{"key":"n","value":{"intValue":"3"}},{"key":"f","value":{"doubleValue":1.5}},{"key":"b","value":{"boolValue":true}},
{"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{"intValue":"1"}]}}}],
"links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175"}],"status":{"code":2}}]}]}]}`

func TestHTTPJSON(t *testing.T) {
	r := otlptest.Start(t)
	resp, err := http.Post(r.HTTPURL()+"/v1/traces", "application/json", strings.NewReader(jsonBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want := []otlptest.Span{{
		Name:         "json span",
		TraceID:      "5b8efff798038103d269b633813fc60c",
		SpanID:       "eee19b7ec3c1b174",
		ParentSpanID: "eee19b7ec3c1b173",
		Kind:         "server",
		Status:       "error",
		Scope:        "manual",
		Attrs:        map[string]string{"n": "3", "f": "1.5", "b": "true", "a": `["x","1"]`},
		Resource:     map[string]string{"service.name": "curl"},
	}}
	if diff := cmp.Diff(want, r.Spans()); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
}

func request(name string) *coltracepb.ExportTraceServiceRequest {
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "test"}}}}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: bytes.Repeat([]byte{0xab}, 16),
			SpanId:  bytes.Repeat([]byte{0xcd}, 8),
			Name:    name,
			Kind:    tracepb.Span_SPAN_KIND_CLIENT,
			Attributes: []*commonpb.KeyValue{
				{Key: "bytes", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{1, 2}}}},
			},
		}}}},
	}}}
}

func TestHTTPProtobufGzip(t *testing.T) {
	r := otlptest.Start(t)
	raw, err := proto.Marshal(request("gzipped"))
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	zw.Write(raw)
	zw.Close()
	req, _ := http.NewRequest("POST", r.HTTPURL()+"/v1/traces", &body)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s := r.WaitSpan(t, time.Second, func(s otlptest.Span) bool { return s.Name == "gzipped" })
	if s.Kind != "client" || s.ParentSpanID != "" || s.Attrs["bytes"] != "0102" || s.Status != "unset" {
		t.Errorf("span %+v", s)
	}

	resp, err = http.Post(r.HTTPURL()+"/v1/traces", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: status %d, want 415", resp.StatusCode)
	}
}

func TestGRPC(t *testing.T) {
	r := otlptest.Start(t)
	conn, err := grpc.NewClient(strings.TrimPrefix(r.GRPCURL(), "grpc://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), request("over grpc")); err != nil {
		t.Fatal(err)
	}
	if got := r.Spans(); len(got) != 1 || got[0].Name != "over grpc" || got[0].TraceID != strings.Repeat("ab", 16) {
		t.Errorf("spans %+v", got)
	}
}
