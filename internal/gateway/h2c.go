package gateway

import (
	"mime"
	"net/http"
	"strings"
)

// HTTP/2 at the gateway. The server has no TLS of its own (a proxy in
// front terminates it), so HTTP/2 comes without TLS: h2c by prior
// knowledge, a connection that opens with HTTP/2's preface, which is what
// gRPC clients and `curl --http2-prior-knowledge` send, and what a
// TLS-terminating proxy sends when it speaks HTTP/2 to its backends. The
// same port goes on speaking HTTP/1.1 to everyone else.
//
// The HTTP/1.1 Upgrade to h2c (RFC 7540 section 3.2, removed by RFC 9113)
// is not offered: net/http does not implement it, and the gateway ignores
// it, as RFC 9110 lets a server do, answering in HTTP/1.1; clients that
// try it (curl --http2 on an http:// URL) carry on with HTTP/1.1.
//
// The bounds of HTTP/1.1 hold for HTTP/2 as net/http applies them: the
// ReadHeaderTimeout bounds the wait for the preface, the ReadTimeout each
// stream's body (per stream, BoundBodies lengthens it for uploads, the
// service proxy sets it to the service's timeout for a gRPC stream to an
// h2c service),
// MaxHeaderBytes the header list (431), IdleTimeout a connection without
// streams, and the body limits are the handlers'. A connection counts
// once against the server's connection limit however many streams it
// carries, so streams per connection and their buffers are bounded
// (HTTP2Config). WebSockets stay on HTTP/1.1: net/http does not offer
// RFC 8441's extended CONNECT by default, so clients do not try it.

// Protocols is what the gateway's server speaks: HTTP/1.1 and HTTP/2
// without TLS, by prior knowledge.
func Protocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// Bounds of a client's HTTP/2 connection.
const (
	// maxStreams is the requests a connection may have open at once
	// (net/http's default is 250, RFC 9113 recommends no fewer than 100):
	// 32 keeps what one connection may hold, a replica's slot or a
	// function's buffered body each, near what 32 HTTP/1.1 connections
	// hold, and is more than browsers and gRPC clients keep open.
	maxStreams = 32
	// streamWindow and connWindow bound the body bytes the server buffers
	// ahead of its handlers, per stream and per connection (net/http's
	// default is 1 MiB each).
	streamWindow = 256 << 10
	connWindow   = 1 << 20
)

// HTTP2Config is the gateway's HTTP/2 configuration: at most maxStreams
// streams a connection, and flow-control windows that keep what a
// connection's client may send ahead of the handlers to connWindow.
func HTTP2Config() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          maxStreams,
		MaxReceiveBufferPerStream:     streamWindow,
		MaxReceiveBufferPerConnection: connWindow,
	}
}

// IgnoreH2CUpgrade returns next for requests from which an HTTP/1.1
// Upgrade to h2c is removed (with HTTP2-Settings, which goes with it): the
// request is answered in HTTP/1.1, and the upgrade does not reach a
// service's container, which might otherwise switch protocols through the
// proxy. Other upgrades (WebSocket) pass.
func IgnoreH2CUpgrade(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 1 {
			if up := r.Header.Values("Upgrade"); len(up) > 0 {
				stripH2CUpgrade(r.Header, up)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// stripH2CUpgrade removes the h2c protocol from h's Upgrade values up,
// and the header if nothing else is left; h2c gone, HTTP2-Settings goes
// too.
func stripH2CUpgrade(h http.Header, up []string) {
	var keep []string
	found := false
	for _, v := range up {
		for p := range strings.SplitSeq(v, ",") {
			p = strings.TrimSpace(p)
			switch {
			case strings.EqualFold(p, "h2c"):
				found = true
			case p != "":
				keep = append(keep, p)
			}
		}
	}
	if !found {
		return
	}
	h.Del("HTTP2-Settings")
	if len(keep) == 0 {
		h.Del("Upgrade")
		return
	}
	h["Upgrade"] = []string{strings.Join(keep, ", ")}
}

// streamsBody reports whether r's body is a stream of messages that its
// client interleaves with the answer's (gRPC: a bidirectional call sends
// a message and waits for the reply before the next), so that the
// service proxy must not wait for the body's first 64 KiB or its end
// before it forwards the request. Only to a service deployed --h2c
// (which gRPC needs) does such a request take its replica slot at once,
// as a WebSocket does; to any other it waits for its body as every
// request does, so a public client cannot take the slots of services
// that never speak gRPC without sending a body. Its body stays bounded
// in size, and in time by the service's request timeout rather than the
// read timeout (a client-streaming call lasts as long as the call).
func streamsBody(r *http.Request) bool {
	if r.ProtoMajor != 2 {
		return false // gRPC is HTTP/2 only
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	// application/grpc, application/grpc+proto, application/grpc+json...
	return mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+")
}
