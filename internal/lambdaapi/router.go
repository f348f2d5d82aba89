package lambdaapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// operation is one operation of Lambda's model (ops_gen.go).
type operation struct {
	Name   string
	Method string
	// URI is the model's requestUri: a path template whose {Param}
	// segments are path parameters, and optionally a fixed query
	// ("?List=ALL") that tells operations on one path apart.
	URI string
	// Status is the status of a successful answer.
	Status int
}

// errorShape is one error type of Lambda's model (ops_gen.go).
type errorShape struct {
	Status int
	// Sender is the model's senderFault: the caller's fault ("Type":
	// "User") rather than the service's.
	Sender bool
	// MessageKey is the JSON name of the message member: "Message" or
	// "message", as the model spells it for the type.
	MessageKey string
}

// route is an operation's URI, parsed.
type route struct {
	op    *operation
	segs  []string    // literal segments, or "{Param}"
	query [][2]string // fixed query parameters and their values
}

// router matches requests to operations.
type router struct {
	routes []route
	// byShape indexes routes by their segment count and first segment
	// (always a literal: the date prefix), so that a request is matched
	// against the few routes of its shape only.
	byShape map[shape][]int
}

type shape struct {
	n     int
	first string
}

func newRouter(ops []operation) *router {
	rt := &router{routes: make([]route, 0, len(ops))}
	for i := range ops {
		op := &ops[i]
		path, query, _ := strings.Cut(op.URI, "?")
		ro := route{op: op, segs: strings.Split(strings.TrimPrefix(path, "/"), "/")}
		if query != "" {
			for kv := range strings.SplitSeq(query, "&") {
				k, v, _ := strings.Cut(kv, "=")
				ro.query = append(ro.query, [2]string{k, v})
			}
		}
		rt.routes = append(rt.routes, ro)
	}
	rt.byShape = make(map[shape][]int)
	for i, ro := range rt.routes {
		if isParam(ro.segs[0]) {
			panic("lambdaapi: route " + ro.op.URI + " starts with a parameter")
		}
		k := shape{len(ro.segs), ro.segs[0]}
		rt.byShape[k] = append(rt.byShape[k], i)
	}
	return rt
}

// prefixes are the routes' first segments as "/SEG/", sorted.
func (rt *router) prefixes() []string {
	var out []string
	for _, ro := range rt.routes {
		p := "/" + ro.segs[0] + "/"
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func isParam(seg string) bool { return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' }

// match returns the operation of r's method and path and its path
// parameters, URL-decoded. Of two operations on one path, the one whose
// fixed query r has wins. A path no operation has, or has for r's method,
// is an UnknownOperationException.
func (rt *router) match(r *http.Request) (*operation, map[string]string, error) {
	path := r.URL.EscapedPath()
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	segs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	var query url.Values
	var best *route
	var bestParams map[string]string
	pathKnown := false
	for _, i := range rt.byShape[shape{len(segs), segs[0]}] {
		ro := &rt.routes[i]
		params, ok := ro.matchPath(segs)
		if !ok {
			continue
		}
		pathKnown = true
		if ro.op.Method != r.Method {
			continue
		}
		if len(ro.query) > 0 {
			if query == nil {
				query = r.URL.Query()
			}
			if !ro.hasQuery(query) {
				continue
			}
		}
		if best == nil || len(ro.query) > len(best.query) {
			best, bestParams = ro, params
		}
	}
	if best == nil {
		msg := "no Lambda operation at " + r.Method + " " + r.URL.Path
		if pathKnown {
			msg = "no Lambda operation takes " + r.Method + " at " + r.URL.Path
		}
		return nil, nil, &Error{Type: "UnknownOperationException", Status: http.StatusNotFound, Message: msg}
	}
	return best.op, bestParams, nil
}

// matchPath matches the escaped segments segs against ro's template:
// the literal segments first, so that a route that does not match costs
// no decoding nor allocation.
func (ro *route) matchPath(segs []string) (map[string]string, bool) {
	if len(segs) != len(ro.segs) {
		return nil, false
	}
	for i, t := range ro.segs {
		if !isParam(t) && segs[i] != t {
			return nil, false
		}
	}
	var params map[string]string
	for i, t := range ro.segs {
		if !isParam(t) {
			continue
		}
		v, err := url.PathUnescape(segs[i])
		if err != nil || v == "" {
			return nil, false
		}
		if params == nil {
			params = make(map[string]string, 2)
		}
		params[t[1:len(t)-1]] = v
	}
	return params, true
}

func (ro *route) hasQuery(q url.Values) bool {
	for _, kv := range ro.query {
		if q.Get(kv[0]) != kv[1] {
			return false
		}
	}
	return true
}
