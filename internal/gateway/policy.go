package gateway

import (
	"net/http"
	"sync"

	"github.com/stratus-run/stratus/internal/httpevent"
)

// policyKey is the header name under which the path routes add their
// PathPolicy. It is not in canonical form on purpose: the answer's own
// headers (a function's, a replica's) are set under the canonical name,
// where they add a policy of their own and can never replace or remove
// this one; net/http writes the name as it is, and header names are
// case-insensitive.
const policyKey = "content-security-policy"

// policyValue is the header value of a PathPolicy; nil for none.
func policyValue(policy string) []string {
	if policy == "" {
		return nil
	}
	return []string{policy}
}

// dropOriginState removes from the answer of a path route with a
// PathPolicy the headers that would change the browser's state of the
// origin it shares with the console: Set-Cookie (a workload could
// replace the operator's session cookie, or fill the origin's cookie jar
// until every request to it is too large for the server) and
// Clear-Site-Data (which would sign the operator out). The workloads'
// headers are in canonical form by then: httpevent writes them so, and
// the service proxy's transport reads them so.
func dropOriginState(h http.Header) {
	delete(h, "Set-Cookie")
	delete(h, "Clear-Site-Data")
}

// policyWriters lends the function route the statusWriters it writes a
// function's answer through, which would otherwise cost an allocation
// per request.
var policyWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// writeFunctionAnswer writes a function's result to w as function URLs
// do (httpevent.WriteResponse); with a PathPolicy, without the headers
// that dropOriginState drops.
func (g *Gateway) writeFunctionAnswer(w http.ResponseWriter, result []byte, head bool) error {
	if g.policy == nil {
		return httpevent.WriteResponse(w, result, head)
	}
	sw := policyWriters.Get().(*statusWriter)
	*sw = statusWriter{ResponseWriter: w, policy: g.policy}
	err := httpevent.WriteResponse(sw, result, head)
	*sw = statusWriter{}
	policyWriters.Put(sw)
	return err
}
