package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// startTestReceiver starts a receiver and stops it when t ends.
func startTestReceiver(t *testing.T) *receiver {
	t.Helper()
	r, err := startReceiver()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.serve() }()
	t.Cleanup(func() {
		r.stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// TestReceiverCountsExportedSpans exports spans with the OpenTelemetry
// SDK's OTLP/HTTP exporter, as the server does, plain and gzipped, and
// checks that the receiver counts them under the endpoint's target.
func TestReceiverCountsExportedSpans(t *testing.T) {
	r := startTestReceiver(t)
	for _, tc := range []struct {
		target string
		gzip   bool
	}{{"plain", false}, {"gzipped", true}} {
		t.Run(tc.target, func(t *testing.T) {
			u := strings.TrimPrefix(r.endpoint(tc.target), "http://")
			host, path, _ := strings.Cut(u, "/")
			opts := []otlptracehttp.Option{otlptracehttp.WithEndpoint(host), otlptracehttp.WithURLPath("/" + path), otlptracehttp.WithInsecure()}
			if tc.gzip {
				opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
			}
			ctx := context.Background()
			exp, err := otlptracehttp.New(ctx, opts...)
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Hour)))
			tr := tp.Tracer("test")
			for range 3 {
				ctx, parent := tr.Start(ctx, "invoke fn")
				_, child := tr.Start(ctx, "queue wait")
				child.End()
				parent.End()
			}
			if err := tp.Shutdown(ctx); err != nil { // flushes the batch
				t.Fatal(err)
			}
			got := r.count(tc.target)
			got.Bytes = 0
			want := spanCount{Exports: 1, Spans: 6, ByName: map[string]int{"invoke fn": 3, "queue wait": 3}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("count (-want +got):\n%s", diff)
			}
		})
	}
	if got := r.count("plain").Spans + r.count("gzipped").Spans; got != 12 {
		t.Errorf("spans in all = %d, want 12", got)
	}
}

// TestReceiverRejectsBadExports checks that what is not an OTLP/HTTP
// protobuf export is answered 400 and counted as rejected, not as spans.
func TestReceiverRejectsBadExports(t *testing.T) {
	r := startTestReceiver(t)
	for _, tc := range []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"json body", "application/json", "", []byte(`{"resourceSpans":[]}`)},
		{"not protobuf", "application/x-protobuf", "", []byte{0xff, 0xff, 0xff}},
		{"not gzip", "application/x-protobuf", "gzip", []byte("plain")},
		{"unknown encoding", "application/x-protobuf", "br", exportBody(t, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, r.endpoint("bad"), bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", resp.StatusCode)
			}
		})
	}
	if got := r.count("bad"); got.Bad != 4 || got.Spans != 0 || got.Exports != 0 {
		t.Errorf("count = %+v, want 4 rejected, no spans", got)
	}
}

// exportBody is an ExportTraceServiceRequest with n spans named "s", in
// protobuf.
func exportBody(t testing.TB, n int) []byte {
	t.Helper()
	ss := &tracepb.ScopeSpans{}
	for range n {
		ss.Spans = append(ss.Spans, &tracepb.Span{Name: "s", TraceId: make([]byte, 16), SpanId: make([]byte, 8)})
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{ScopeSpans: []*tracepb.ScopeSpans{ss}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestCountSpans(t *testing.T) {
	for _, tc := range []struct {
		name, contentType, encoding string
		body                        []byte
		want                        int
		wantErr                     bool
	}{
		{"empty export", "application/x-protobuf", "", nil, 0, false},
		{"three spans", "application/x-protobuf", "", exportBody(t, 3), 3, false},
		{"no content type", "", "", exportBody(t, 2), 2, false},
		{"gzip", "application/x-protobuf", "gzip", gzipped(t, exportBody(t, 5)), 5, false},
		{"json", "application/json", "", []byte(`{}`), 0, true},
		{"garbage", "application/x-protobuf", "", []byte{0x0a, 0xff}, 0, true},
		{"deflate", "application/x-protobuf", "deflate", exportBody(t, 1), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, names, err := countSpans(tc.body, tc.contentType, tc.encoding)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if n != tc.want || (err == nil && names["s"] != tc.want) {
				t.Errorf("countSpans = %d %v, want %d named s", n, names, tc.want)
			}
		})
	}
}

// FuzzCountSpans checks that no export body makes the receiver panic, and
// that the count by name adds up to the count.
func FuzzCountSpans(f *testing.F) {
	f.Add(exportBody(f, 2), false)
	f.Add(gzipped(f, exportBody(f, 3)), true)
	f.Add([]byte{}, false)
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00}, false)
	f.Add([]byte("\x1f\x8b garbage"), true)
	f.Fuzz(func(t *testing.T, body []byte, gz bool) {
		enc := ""
		if gz {
			enc = "gzip"
		}
		n, names, err := countSpans(body, "application/x-protobuf", enc)
		if err != nil {
			return
		}
		sum := 0
		for _, v := range names {
			sum += v
		}
		if sum != n {
			t.Errorf("spans by name add up to %d, count is %d", sum, n)
		}
	})
}
