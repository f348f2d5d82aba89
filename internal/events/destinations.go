package events

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/events/cloudevent"
)

// Record is what a destination receives about a finished async
// invocation: the format of Lambda's destination records.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       time.Time       `json:"timestamp"`
	RequestContext  RecordRequest   `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext RecordResponse  `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RecordRequest is a Record's requestContext.
type RecordRequest struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"` // Success, RetriesExhausted, EventAgeExceeded
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// RecordResponse is a Record's responseContext.
type RecordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

// CloudEvent types of the records a topic destination receives.
const (
	DestinationSuccessType = "stratus.function.success"
	DestinationFailureType = "stratus.function.failure"
)

// Destinations routes finished async invocations to their function's
// on-success or on-failure destination. Its Done method is a DoneFunc: a
// function destination is enqueued as an async invocation
// (stratus.TriggerAsync), in the trace of the finished one.
type Destinations struct {
	// Config returns a function's configuration, false when it is gone.
	Config func(fn string) (stratus.FunctionConfig, bool)
	// Enqueue starts an async invocation of a function destination.
	Enqueue func(ctx context.Context, fn string, event []byte) (string, error)
	// Publish stores events on a topic (Topics.Publish); nil when topics
	// are not available. A topic destination receives the Record as the
	// data of a CloudEvent: type DestinationSuccessType or
	// DestinationFailureType, source "stratus/functions/NAME", id the
	// request ID, datacontenttype application/json.
	Publish func(ctx context.Context, topic string, events []cloudevent.Event) error
	Region  string
	// AccountID is the account in the records' ARNs:
	// stratus.DefaultAccountID when empty.
	AccountID string
	// Log receives the log lines of Destinations; nil discards them.
	Log *slog.Logger
}

func (d *Destinations) log() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}

// Done implements DoneFunc. It delivers within 30 seconds, whether or not
// ctx is cancelled, and carries ctx's trace context to the destination.
func (d *Destinations) Done(ctx context.Context, fn, requestID string, event []byte, res *stratus.Response, attempts int, err error) Routing {
	cfg, ok := d.Config(fn)
	if !ok {
		return Routing{}
	}
	dest := cfg.OnSuccess
	cond := "Success"
	if err != nil {
		dest = cfg.OnFailure
		cond = "RetriesExhausted"
		if errors.Is(err, ErrEventAgeExceeded) {
			cond = "EventAgeExceeded"
		}
	}
	if dest == "" {
		return Routing{}
	}
	kind, target, perr := stratus.ParseDestination(dest)
	if perr != nil {
		d.log().Warn("bad destination", "fn", fn, "destination", dest, "err", perr)
		return Routing{Destination: dest, Failed: true}
	}
	// fn may be qualified ("NAME:ALIAS"): the ARN names what was invoked,
	// ExecutedVersion what ran.
	name, q, _ := strings.Cut(fn, ":")
	account := cmp.Or(d.AccountID, stratus.DefaultAccountID)
	rec := Record{
		Version:   "1.0",
		Timestamp: time.Now().UTC(),
		RequestContext: RecordRequest{
			RequestID: requestID, Condition: cond, ApproximateInvokeCount: attempts,
			FunctionArn: stratus.FunctionARN(d.Region, account, name, cmp.Or(q, stratus.LatestVersion)),
		},
		RequestPayload:  json.RawMessage(event),
		ResponseContext: RecordResponse{StatusCode: 200, ExecutedVersion: stratus.LatestVersion},
	}
	if res != nil && res.Record.Qualifier != "" {
		rec.ResponseContext.ExecutedVersion = res.Record.Qualifier
	}
	if res != nil {
		if json.Valid(res.Body) {
			rec.ResponsePayload = res.Body
		}
		if res.ErrorType != "" {
			rec.ResponseContext.FunctionError = "Unhandled"
		}
	} else if err != nil {
		// No attempt answered (removed function, platform failure): say why.
		b, _ := json.Marshal(map[string]string{"errorMessage": err.Error(), "errorType": "Stratus.DeliveryFailed"})
		rec.ResponsePayload = b
		rec.ResponseContext.StatusCode = 500
	}
	if !json.Valid(event) {
		b, _ := json.Marshal(string(event))
		rec.RequestPayload = b
	}
	body, merr := json.Marshal(rec)
	if merr != nil {
		d.log().Error("encode destination record", "fn", fn, "req_id", requestID, "err", merr)
		return Routing{Destination: dest, Failed: true}
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var derr error
	switch kind {
	case stratus.DestFunction:
		_, derr = d.Enqueue(ctx, target, body)
	case stratus.DestTopic:
		if d.Publish == nil {
			derr = fmt.Errorf("topics are not available: %w", stratus.ErrUnavailable)
		} else {
			typ := DestinationSuccessType
			if err != nil {
				typ = DestinationFailureType
			}
			derr = d.Publish(ctx, target, []cloudevent.Event{{
				SpecVersion: cloudevent.SpecVersion, ID: requestID, Source: "stratus/functions/" + fn,
				Type: typ, Subject: cond, Time: rec.Timestamp, DataContentType: "application/json", Data: body,
			}})
		}
	default:
		derr = fmt.Errorf("destination kind %q: %w", kind, stratus.ErrInvalid)
	}
	if derr != nil {
		d.log().Warn("deliver to destination", "fn", fn, "req_id", requestID, "destination", dest, "err", derr)
		return Routing{Destination: dest, Failed: true}
	}
	return Routing{Destination: dest}
}
