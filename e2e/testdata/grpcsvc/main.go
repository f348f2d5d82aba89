// Command grpcsvc is the service of the HTTP/2 end-to-end tests: a real
// gRPC server (grpc-go, its own HTTP/2 transport, which speaks nothing but
// h2c with prior knowledge on a plain port) with the standard health
// service and grpc-go's interop TestService (unary, server-streaming,
// client-streaming and full-duplex calls), or, with -mode http, a
// net/http server that speaks only one protocol (-proto h2c or http1)
// and answers GET /proto with the protocol and host it got.
//
// It listens on $PORT (8080 by default) and prints "grpcsvc listening on
// :PORT" once it does.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func main() {
	mode := flag.String("mode", "grpc", "grpc, or http")
	proto := flag.String("proto", "h2c", "with -mode http: h2c (HTTP/2 without TLS only) or http1 (HTTP/1.1 only)")
	flag.Parse()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("grpcsvc listening on :%d\n", ln.Addr().(*net.TCPAddr).Port)
	switch *mode {
	case "grpc":
		err = serveGRPC(ln)
	case "http":
		err = serveHTTP(ln, *proto)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	log.Fatal(err)
}

func serveGRPC(ln net.Listener) error {
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("grpc.testing.TestService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	testgrpc.RegisterTestServiceServer(s, &testService{})
	return s.Serve(ln)
}

// testService answers the interop TestService's calls. Every answer's
// header metadata carries the :authority the call came with (x-authority)
// and what the call's metadata said of its token (x-authorization, which
// the gateway must have removed); its trailer carries x-trailer: done.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func meta(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.Pairs("x-authority", strings.Join(md.Get(":authority"), ","), "x-authorization", strings.Join(md.Get("authorization"), ","))
	host, _ := os.Hostname()
	out.Set("x-hostname", host)
	return out
}

func (*testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, grpc.SetHeader(ctx, meta(ctx))
}

func (*testService) UnaryCall(ctx context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if err := grpc.SetHeader(ctx, meta(ctx)); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "done")); err != nil {
		return nil, err
	}
	if st := in.GetResponseStatus(); st != nil && st.GetCode() != 0 {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	body := in.GetPayload().GetBody()
	if n := int(in.GetResponseSize()); n > 0 {
		body = make([]byte, n)
		for i := range body {
			body[i] = byte(i)
		}
	}
	host, _ := os.Hostname()
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: body}, Hostname: host}, nil
}

// StreamingOutputCall answers one message per response parameter, of its
// size, after its interval.
func (*testService) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	if err := stream.SendHeader(meta(stream.Context())); err != nil {
		return err
	}
	for _, p := range in.GetResponseParameters() {
		time.Sleep(time.Duration(p.GetIntervalUs()) * time.Microsecond)
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	stream.SetTrailer(metadata.Pairs("x-trailer", "done"))
	return nil
}

// StreamingInputCall sums the sizes of the payloads it receives.
func (*testService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	total := 0
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(in.GetPayload().GetBody())
	}
}

// FullDuplexCall answers each message as it comes, before the next: one
// message per response parameter, its body the request's payload
// followed by as many zero bytes as the parameter's size.
func (*testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	if err := stream.SendHeader(meta(stream.Context())); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			stream.SetTrailer(metadata.Pairs("x-trailer", "done"))
			return nil
		}
		if err != nil {
			return err
		}
		for _, p := range in.GetResponseParameters() {
			body := append(append([]byte{}, in.GetPayload().GetBody()...), make([]byte, p.GetSize())...)
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
				return err
			}
		}
	}
}

// serveHTTP serves GET /proto (the request's protocol and host, one a
// line) and GET /healthz on ln, speaking proto only.
func serveHTTP(ln net.Listener, proto string) error {
	var p http.Protocols
	switch proto {
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	case "http1":
		p.SetHTTP1(true)
	default:
		return fmt.Errorf("unknown protocol %q", proto)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /proto", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n%s\n", r.Proto, r.Host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", r.Proto)
	})
	srv := &http.Server{Handler: mux, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}
