package lambdaapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/stratus-run/stratus"
)

// Error is an answer in Lambda's error shape: Type is the error type
// (X-Amzn-ErrorType), Status its HTTP status (0: the model's for Type,
// else 400) and Message what the body says.
type Error struct {
	Type    string
	Status  int
	Message string
	// Reason is a TooManyRequestsException's (Lambda's ThrottleReason).
	Reason string
	// RetryAfter, if set, is a TooManyRequestsException's Retry-After, in
	// seconds.
	RetryAfter int
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

// status is e's HTTP status.
func (e *Error) status() int {
	if e.Status != 0 {
		return e.Status
	}
	if s, ok := errorShapes[e.Type]; ok {
		return s.Status
	}
	return http.StatusBadRequest
}

// Errors by type, for handlers.

// invalidParameter is an InvalidParameterValueException.
func invalidParameter(format string, args ...any) *Error {
	return &Error{Type: "InvalidParameterValueException", Message: fmt.Sprintf(format, args...)}
}

// notFound is a ResourceNotFoundException.
func notFound(format string, args ...any) *Error {
	return &Error{Type: "ResourceNotFoundException", Message: fmt.Sprintf(format, args...)}
}

// conflict is a ResourceConflictException.
func conflict(format string, args ...any) *Error {
	return &Error{Type: "ResourceConflictException", Message: fmt.Sprintf(format, args...)}
}

// errorFrom turns err into the Error answered for operation op (nil
// before routing): an *Error as it is, a kind as its Lambda type.
func errorFrom(op *operation, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	msg := err.Error()
	switch {
	case errors.Is(err, stratus.ErrNotFound):
		return &Error{Type: "ResourceNotFoundException", Message: msg}
	case errors.Is(err, stratus.ErrRequestTimeout):
		return &Error{Type: "RequestTimeoutException", Status: http.StatusRequestTimeout, Message: msg}
	case errors.Is(err, stratus.ErrTooLarge):
		return tooLarge(op, msg)
	case errors.Is(err, stratus.ErrInvalid):
		return &Error{Type: "InvalidParameterValueException", Message: msg}
	case errors.Is(err, stratus.ErrConflict):
		return &Error{Type: "ResourceConflictException", Message: msg}
	case errors.Is(err, stratus.ErrCapacity):
		return &Error{Type: "TooManyRequestsException", Message: msg, Reason: "ConcurrentInvocationLimitExceeded"}
	case errors.Is(err, stratus.ErrNoSpace):
		return &Error{Type: "CodeStorageExceededException", Status: http.StatusInsufficientStorage, Message: msg}
	case errors.Is(err, stratus.ErrUnavailable), errors.Is(err, stratus.ErrTimeout):
		return &Error{Type: "ServiceException", Status: http.StatusServiceUnavailable, Message: msg}
	}
	return &Error{Type: "ServiceException", Status: http.StatusInternalServerError, Message: "internal error"}
}

// writeError answers err in Lambda's shape: the X-Amzn-ErrorType header
// and a {"Type", "Message"} body (the message's key spelled as the model
// spells it for the type). A 5xx is logged with the request ID.
func (a *API) writeError(c *call, err error) {
	e := errorFrom(c.op, err)
	status := e.status()
	if status >= 500 {
		op := ""
		if c.op != nil {
			op = c.op.Name
		}
		a.log.Error("lambda api request failed", "op", op, "req_id", c.id, "status", status, "err", err)
	}
	fault := "User"
	if s, ok := errorShapes[e.Type]; (ok && !s.Sender) || (!ok && status >= 500) {
		fault = "Service"
	}
	key := "Message"
	if s, ok := errorShapes[e.Type]; ok {
		key = s.MessageKey
	}
	body := map[string]string{"Type": fault, key: e.Message}
	if e.Reason != "" {
		body["Reason"] = e.Reason
	}
	h := c.w.Header()
	h.Set("X-Amzn-ErrorType", e.Type)
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	b, _ := json.Marshal(body)
	c.w.WriteHeader(status)
	_, _ = c.w.Write(b)
}
