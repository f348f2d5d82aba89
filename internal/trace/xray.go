package trace

import (
	"context"
	"encoding/hex"
	"strings"

	oteltrace "go.opentelemetry.io/otel/trace"
)

// The X-Ray trace header, as AWS documents it and as Lambda hands it to a
// function (the Lambda-Runtime-Trace-Id header of the Runtime API's next
// response, the _X_AMZN_TRACE_ID variable of the function's process):
//
//	Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1
//
// Root is the version "1", the 8 hex digits of the trace's start time and 24
// hex digits of randomness; the W3C trace ID is the last two run together.
// Parent is the 16 hex digit ID of the caller's segment (the W3C parent span
// ID). Sampled is 1, 0 or ? (the decision is left to the callee). Lambda also
// writes Lineage (its recursion detection) and a load balancer may write Self
// or custom fields; those carry no W3C meaning and are ignored.
const (
	xrayRootPrefix = "1-"
	xrayRootLen    = len("1-5759e988-bd862e3fe1be46a994272793")
	xrayHeaderLen  = len("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
)

// LambdaHeader is the X-Ray trace header (Root=1-…;Parent=…;Sampled=…)
// of ctx's span, "" when ctx has none. Its fields come in the order Lambda
// writes them, in lowercase hex; Sampled is 1 or 0, from the span's sampled
// flag. The W3C tracestate has no place in it and is dropped.
func LambdaHeader(ctx context.Context) string {
	sc := oteltrace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [xrayHeaderLen]byte
	n := copy(b[:], "Root=1-")
	n += hex.Encode(b[n:], tid[:4])
	b[n] = '-'
	n++
	n += hex.Encode(b[n:], tid[4:])
	n += copy(b[n:], ";Parent=")
	n += hex.Encode(b[n:], sid[:])
	n += copy(b[n:], ";Sampled=")
	b[n] = '0'
	if sc.IsSampled() {
		b[n] = '1'
	}
	return string(b[:])
}

// FromLambdaHeader parses an X-Ray trace header into a remote span context.
// It needs Root and Parent (a span context without a parent span is not
// valid in W3C terms); Sampled=1 sets the sampled flag, Sampled=0, Sampled=?
// or no Sampled leave it clear. Fields may come in any order and be padded
// with spaces; keys are matched as AWS spells them; hex digits may be in
// either case; other fields (Lineage, Self, custom ones) are ignored. A
// malformed or repeated Root, Parent or Sampled makes the whole header
// invalid: ok is false.
func FromLambdaHeader(s string) (sc oteltrace.SpanContext, ok bool) {
	var (
		cfg                oteltrace.SpanContextConfig
		root, parent, samp bool
	)
	for s != "" {
		var part string
		part, s, _ = strings.Cut(s, ";")
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, value, found := strings.Cut(part, "=")
		if !found {
			return sc, false
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "Root":
			if root || !parseXrayRoot(value, &cfg.TraceID) {
				return sc, false
			}
			root = true
		case "Parent":
			if parent || len(value) != 2*len(cfg.SpanID) {
				return sc, false
			}
			if _, err := hex.Decode(cfg.SpanID[:], []byte(value)); err != nil {
				return sc, false
			}
			parent = true
		case "Sampled":
			if samp {
				return sc, false
			}
			switch value {
			case "1":
				cfg.TraceFlags = oteltrace.FlagsSampled
			case "0", "?":
			default:
				return sc, false
			}
			samp = true
		}
	}
	if !root || !parent {
		return sc, false
	}
	cfg.Remote = true
	sc = oteltrace.NewSpanContext(cfg)
	return sc, sc.IsValid()
}

// parseXrayRoot decodes 1-TTTTTTTT-UUUUUUUUUUUUUUUUUUUUUUUU into tid.
func parseXrayRoot(v string, tid *oteltrace.TraceID) bool {
	if len(v) != xrayRootLen || !strings.HasPrefix(v, xrayRootPrefix) || v[10] != '-' {
		return false
	}
	if _, err := hex.Decode(tid[:4], []byte(v[2:10])); err != nil {
		return false
	}
	_, err := hex.Decode(tid[4:], []byte(v[11:]))
	return err == nil
}
