// Package v1 holds the wire types of Stratus's native API (JSON under
// /v1/...), its headers (HeaderRequestID, HeaderClientRequestID, ...) and
// its error edge: the one mapping from error kinds to HTTP statuses and
// error codes (ErrorFrom), the errors that only HTTP has
// (ErrUnauthorized, and UpstreamError for a workload's failure behind a
// route), and Responder, the one writer of the servers' answers and
// error bodies, which logs each 5xx. The client, the servers and the CLI
// share them.
package v1

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"time"

	"github.com/stratus-run/stratus"
)

// Error is the body of every error answer: {"code": "...", "message": "..."}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes. They follow the names of AWS Lambda's exceptions, so that
// Lambda users recognise them.
const (
	CodeInvalid      = "InvalidParameterValueException"
	CodeNotFound     = "ResourceNotFoundException"
	CodeConflict     = "ResourceConflictException"
	CodeTooMany      = "TooManyRequestsException"
	CodeTooLarge     = "RequestTooLargeException"
	CodeTimeout      = "TimeoutException"
	CodeUnavailable  = "ServiceUnavailableException"
	CodeUnauthorized = "UnauthorizedException"
	CodeInternal     = "ServiceException"
	// CodeNoSpace is a write refused for want of space on the data
	// volume (507), named after Lambda's own storage exception.
	CodeNoSpace = "CodeStorageExceededException"
	// CodeRequestTimeout is a request body that did not arrive in time
	// (408).
	CodeRequestTimeout = "RequestTimeoutException"
	// CodeForbidden is a request refused for who or where it comes from
	// (403); CodePrecondition a change against a stale version (412).
	CodeForbidden    = "AccessDeniedException"
	CodePrecondition = "PreconditionFailedException"
)

// ErrorFrom maps err to its HTTP status and wire error. It is the one place
// where error kinds become statuses; Responder.Error writes what it
// returns. An error of no kind is a 500 whose message says nothing of
// the server's internals.
func ErrorFrom(err error) (int, Error) {
	msg := err.Error()
	var ue *UpstreamError
	switch {
	case errors.As(err, &ue):
		return http.StatusBadGateway, Error{ue.Code, ue.Message}
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized, Error{CodeUnauthorized, ErrUnauthorized.Error()}
	// First: a full disk often surfaces inside an error of another kind
	// (an archive that could not be extracted is "invalid").
	case errors.Is(err, stratus.ErrNoSpace):
		return http.StatusInsufficientStorage, Error{CodeNoSpace, msg}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage, Error{CodeNoSpace, stratus.ErrNoSpace.Error() + ": " + msg}
	// Before ErrInvalid: a late body is also the client's fault.
	case errors.Is(err, stratus.ErrRequestTimeout):
		return http.StatusRequestTimeout, Error{CodeRequestTimeout, msg}
	case errors.Is(err, stratus.ErrInvalid):
		return http.StatusBadRequest, Error{CodeInvalid, msg}
	case errors.Is(err, stratus.ErrForbidden):
		return http.StatusForbidden, Error{CodeForbidden, msg}
	case errors.Is(err, stratus.ErrPrecondition):
		return http.StatusPreconditionFailed, Error{CodePrecondition, msg}
	case errors.Is(err, stratus.ErrNotFound):
		return http.StatusNotFound, Error{CodeNotFound, msg}
	case errors.Is(err, stratus.ErrConflict):
		return http.StatusConflict, Error{CodeConflict, msg}
	case errors.Is(err, stratus.ErrCapacity):
		return http.StatusTooManyRequests, Error{CodeTooMany, msg}
	case errors.Is(err, stratus.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, Error{CodeTooLarge, msg}
	case errors.Is(err, stratus.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, Error{CodeTimeout, msg}
	case errors.Is(err, stratus.ErrUnavailable):
		return http.StatusServiceUnavailable, Error{CodeUnavailable, msg}
	default:
		return http.StatusInternalServerError, Error{CodeInternal, "internal error"}
	}
}

// Readiness answers GET /readyz: 200 with status "ready" (and nothing
// else) while every check passes, else 503 with status "not ready" (or
// "stopping") and the reason: each failing check's name and error
// ("store: ...; events: ..."); Checks then holds every check's outcome
// ("ok" or its error).
type Readiness struct {
	Status string            `json:"status"`
	Reason string            `json:"reason,omitempty"`
	Checks map[string]string `json:"checks,omitempty"`
}

// Invoke response headers. HeaderVersion says what ran: $LATEST or a
// published version's number; HeaderSnapshot the deploy it came from
// (stratus.Invocation.Version).
const (
	HeaderRequestID     = "X-Amzn-Requestid"
	HeaderFunctionError = "X-Amz-Function-Error"
	HeaderVersion       = "X-Amz-Executed-Version"
	HeaderSnapshot      = "X-Stratus-Snapshot"
	HeaderDuration      = "X-Stratus-Duration-Ms"
	HeaderInitDuration  = "X-Stratus-Init-Duration-Ms"
	HeaderColdStart     = "X-Stratus-Cold-Start"
)

// Instances counts a function's instances.
type Instances struct {
	Live int `json:"live"`
	Idle int `json:"idle"`
	Busy int `json:"busy"`
	// Items are the function's sandboxes on the answering server, live
	// and prepared, by ID; absent when it has none.
	Items []Instance `json:"items,omitempty"`
}

// Instance is one sandbox of a function on the answering server.
type Instance struct {
	// ID is the instance's ID (its sandbox's).
	ID string `json:"id"`
	// Version is what it runs: "$LATEST" or a published version's
	// number.
	Version string `json:"version"`
	// State is "starting", "idle", "busy", "prepared" (made ahead for the
	// next cold start, its program not started) or "stopping".
	State string `json:"state"`
	// Since is when its sandbox was made.
	Since time.Time `json:"since"`
	// Pod and Node are its pod and the node the pod runs on, with
	// --sandbox kube; absent otherwise (Node too while the pod is not
	// scheduled).
	Pod  string `json:"pod,omitempty"`
	Node string `json:"node,omitempty"`
}

// Function is a deployed function as the API shows it.
type Function struct {
	Name      string                 `json:"name"`
	Version   int                    `json:"version"`
	Config    stratus.FunctionConfig `json:"config"`
	CodeSHA   string                 `json:"codeSha256"`
	CodeSize  int64                  `json:"codeSize"`
	CreatedAt time.Time              `json:"createdAt"`
	UpdatedAt time.Time              `json:"updatedAt"`
	Instances Instances              `json:"instances"`
	// URL is the function's HTTP route, relative to the server.
	URL string `json:"url"`
	// Async is the function's queue of asynchronous events (absent when
	// JetStream cannot be read).
	Async *AsyncQueue `json:"async,omitempty"`
}

// AsyncQueue describes a function's waiting asynchronous events.
type AsyncQueue struct {
	Depth        int     `json:"depth"`
	OldestAgeSec float64 `json:"oldestAgeSec"`
}

// Invocation types of POST /v1/functions/NAME/invoke, in the
// X-Invocation-Type header (or Lambda's X-Amz-Invocation-Type).
const (
	HeaderInvocationType    = "X-Invocation-Type"
	HeaderAmzInvocationType = "X-Amz-Invocation-Type"
	InvocationEvent         = "Event"
	InvocationRequest       = "RequestResponse"
)

// Accepted answers an asynchronous invoke (202).
type Accepted struct {
	RequestID string `json:"requestId"`
}

// FunctionList answers GET /v1/functions.
type FunctionList struct {
	Functions []Function `json:"functions"`
}

// InvocationList answers GET /v1/functions/NAME/invocations.
type InvocationList struct {
	Invocations []InvocationRecord `json:"invocations"`
}

// LogList answers GET /v1/functions/NAME/logs (without follow; with
// follow the answer is one stratus.LogLine JSON object per line).
type LogList struct {
	Lines []stratus.LogLine `json:"lines"`
}

// Deploy form parts of PUT /v1/functions/NAME (multipart/form-data): the
// configuration as JSON (a stratus.FunctionConfig), then the code as a zip.
const (
	PartConfig = "config"
	PartCode   = "code"
)
