package lambdaapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/stratus-run/stratus"
)

// handler serves one operation. It writes the answer itself (reply,
// noContent) and returns nil, or returns an error and writes nothing:
// ServeHTTP answers it in Lambda's shape.
type handler func(a *API, c *call) error

// handlers are the operations Stratus implements, by name.
var handlers = map[string]handler{}

// handle registers h as the handler of operation op (from an init
// function of the file that serves it). It panics on a name the model
// does not have or a second handler.
func handle(op string, h handler) {
	if !knownOperation(op) {
		panic("lambdaapi: no operation " + op + " in the model")
	}
	if _, dup := handlers[op]; dup {
		panic("lambdaapi: two handlers of " + op)
	}
	handlers[op] = h
}

func knownOperation(name string) bool {
	for i := range operations {
		if operations[i].Name == name {
			return true
		}
	}
	return false
}

// call is one request to an operation.
type call struct {
	w      http.ResponseWriter
	r      *http.Request
	op     *operation        // nil until routed
	params map[string]string // path parameters, URL-decoded
	body   []byte            // the whole body, read once
	id     string            // X-Amzn-RequestId
}

// param is path parameter name ("FunctionName", "Name", "Resource").
func (c *call) param(name string) string { return c.params[name] }

// query is query parameter name ("Qualifier", "Marker").
func (c *call) query(name string) string { return c.r.URL.Query().Get(name) }

// decode reads the JSON body into v; an empty body leaves v as it is.
// Malformed JSON is an InvalidRequestContentException; a field of the
// wrong type too.
func (c *call) decode(v any) error {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return &Error{Type: "InvalidRequestContentException", Message: "could not read the request body as JSON: " + err.Error()}
	}
	return nil
}

// reply answers v as JSON with the operation's success status.
func (c *call) reply(v any) error { return c.replyStatus(c.op.Status, v) }

// replyStatus answers v as JSON with status.
func (c *call) replyStatus(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	c.w.WriteHeader(status)
	_, _ = c.w.Write(b)
	return nil
}

// noContent answers the operation's success status with no body.
func (c *call) noContent() error {
	c.w.WriteHeader(c.op.Status)
	return nil
}

// function is the function the FunctionName path parameter names (a
// name, a partial or full ARN, with or without a qualifier) with the
// Qualifier query parameter, if any: a qualifier in both that disagree
// is an InvalidParameterValueException.
func (c *call) function() (stratus.FunctionRef, error) {
	return functionRef(c.param("FunctionName"), c.query("Qualifier"))
}

// functionRef parses name and joins qualifier q to it.
func functionRef(name, q string) (stratus.FunctionRef, error) {
	ref, err := stratus.ParseFunctionRef(name)
	if err != nil {
		return stratus.FunctionRef{}, invalidParameter("%s", err.Error())
	}
	if q != "" {
		if err := stratus.ValidQualifier(q); err != nil {
			return stratus.FunctionRef{}, invalidParameter("qualifier: %s", err.Error())
		}
		if ref.Qualifier != "" && ref.Qualifier != q {
			return stratus.FunctionRef{}, invalidParameter("the function name's qualifier %q and the Qualifier %q differ", ref.Qualifier, q)
		}
		ref.Qualifier = q
	}
	return ref, nil
}

// arn is the ARN of function name, qualified with q when q is not empty.
func (a *API) arn(name, q string) string { return stratus.FunctionARN(a.region, a.account, name, q) }
