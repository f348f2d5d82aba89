package lambdaapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/stratus-run/stratus"
)

func init() {
	handle("Invoke", (*API).invoke)
}

// Invocation types and log types of Invoke.
const (
	invokeRequestResponse = "RequestResponse"
	invokeEvent           = "Event"
	invokeDryRun          = "DryRun"
	logTail               = "Tail"
	logNone               = "None"
)

// LogResultBytes is how much of an invocation's log X-Amz-Log-Result
// holds: its last 4 KB. Config.Logs need answer only the newest lines
// that hold that much.
const LogResultBytes = 4 << 10

var emptyEvent = []byte("{}")

// invoke runs a function: RequestResponse answers 200 with its result,
// Event queues it (202), DryRun only checks that it exists (204).
func (a *API) invoke(c *call) error {
	ref, err := c.function()
	if err != nil {
		return err
	}
	typ := c.r.Header.Get("X-Amz-Invocation-Type")
	if typ == "" {
		typ = invokeRequestResponse
	}
	logType := c.r.Header.Get("X-Amz-Log-Type")
	switch logType {
	case "", logNone, logTail:
	default:
		return invalidParameter("LogType %q: want %s or %s", logType, logNone, logTail)
	}
	switch typ {
	case invokeRequestResponse, invokeEvent, invokeDryRun:
	default:
		return invalidParameter("InvocationType %q: want %s, %s or %s", typ, invokeRequestResponse, invokeEvent, invokeDryRun)
	}
	payload := c.body
	if int64(len(payload)) > a.maxPayload {
		return &Error{Type: "RequestTooLargeException", Message: fmt.Sprintf("payload is %d bytes, more than the %d byte limit", len(payload), a.maxPayload)}
	}
	if len(payload) == 0 {
		payload = emptyEvent
	} else if !json.Valid(payload) {
		return &Error{Type: "InvalidRequestContentException", Message: "the payload is not valid JSON"}
	}
	ctx := c.r.Context()
	if _, err := a.resolve(ref); err != nil {
		return err
	}
	head, ok := a.fns.Head(ref.Name)
	if !ok {
		return notFound("function not found: %s", a.arn(ref.Name, ""))
	}
	switch typ {
	case invokeDryRun:
		c.w.WriteHeader(http.StatusNoContent)
		return nil
	case invokeEvent:
		if head.Config.Throttled {
			return throttled(fmt.Errorf("function %q: its reserved concurrency is 0", ref.Name))
		}
		id, err := a.queue.Enqueue(ctx, ref.String(), payload)
		if err != nil {
			return err
		}
		c.w.Header().Set("X-Amzn-RequestId", id)
		c.w.WriteHeader(http.StatusAccepted)
		return nil
	}
	req := stratus.Request{
		RequestID:     c.id,
		Event:         payload,
		ClientContext: c.r.Header.Get("X-Amz-Client-Context"),
		Trigger:       stratus.TriggerSync,
	}
	resp, err := a.fns.Invoke(ctx, ref.String(), req)
	if err != nil {
		if errors.Is(err, stratus.ErrCapacity) && head.Config.Throttled {
			return throttled(err)
		}
		return err
	}
	h := c.w.Header()
	executed := resp.Record.Qualifier
	if executed == "" {
		executed = stratus.LatestVersion
	}
	h.Set("X-Amz-Executed-Version", executed)
	if resp.ErrorType != "" {
		h.Set("X-Amz-Function-Error", "Unhandled")
	}
	if logType == logTail {
		h.Set("X-Amz-Log-Result", a.logResult(ctx, ref.Name, c.id))
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	c.w.WriteHeader(http.StatusOK)
	_, _ = c.w.Write(resp.Body)
	return nil
}

// throttled is a function with reserved concurrency 0 refusing a call.
func throttled(err error) *Error {
	return &Error{Type: "TooManyRequestsException", Message: err.Error(), Reason: "ReservedFunctionConcurrentInvocationLimitExceeded"}
}

// logResult is X-Amz-Log-Result of invocation id of function fn: the
// last 4 KB of its log lines, base64; without Config.Logs it is empty.
func (a *API) logResult(ctx context.Context, fn, id string) string {
	if a.logs == nil {
		return ""
	}
	lines, err := a.logs(ctx, fn, id)
	if err != nil {
		a.log.Warn("read logs for a log tail", "fn", fn, "req_id", id, "err", err)
		return ""
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text)
		if !strings.HasSuffix(l.Text, "\n") {
			b.WriteByte('\n')
		}
	}
	return base64.StdEncoding.EncodeToString(tail([]byte(b.String()), LogResultBytes))
}

// tail is the last n bytes of b, starting at a UTF-8 character's start.
func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[len(b)-n:]
	for i := 0; i < len(b) && i < 4; i++ {
		if b[i]&0xc0 != 0x80 {
			return b[i:]
		}
	}
	return b
}
