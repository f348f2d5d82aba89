// Command lambdafn is an unmodified aws-lambda-go function the Runtime API
// tests run against the server: it echoes what the library hands it, fails
// or panics on request, and can stream a response that breaks midway.
package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Op  string `json:"op"`
	Msg string `json:"msg"`
}

type echo struct {
	RequestID     string            `json:"requestId"`
	FunctionARN   string            `json:"functionArn"`
	DeadlineMs    int64             `json:"deadlineMs"`
	TraceID       string            `json:"traceId"`
	ClientCustom  map[string]string `json:"clientCustom"`
	CognitoID     string            `json:"cognitoIdentityId"`
	Msg           string            `json:"msg"`
	FunctionName  string            `json:"functionName"`
	MemoryLimitMB int               `json:"memoryLimitMB"`
}

// brokenReader yields some bytes, then fails.
type brokenReader struct{ r io.Reader }

func (b *brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errors.New("stream broke")
	}
	return n, err
}

func main() {
	lambda.Start(func(ctx context.Context, ev event) (any, error) {
		switch ev.Op {
		case "error":
			return nil, errors.New(ev.Msg)
		case "panic":
			panic(ev.Msg)
		case "stream":
			return io.Reader(strings.NewReader(ev.Msg)), nil
		case "broken-stream":
			return io.Reader(&brokenReader{strings.NewReader(ev.Msg)}), nil
		}
		lc, _ := lambdacontext.FromContext(ctx)
		dl, _ := ctx.Deadline()
		return echo{
			RequestID:     lc.AwsRequestID,
			FunctionARN:   lc.InvokedFunctionArn,
			DeadlineMs:    dl.UnixMilli(),
			TraceID:       os.Getenv("_X_AMZN_TRACE_ID"),
			ClientCustom:  lc.ClientContext.Custom,
			CognitoID:     lc.Identity.CognitoIdentityID,
			Msg:           ev.Msg,
			FunctionName:  lambdacontext.FunctionName,
			MemoryLimitMB: lambdacontext.MemoryLimitInMB,
		}, nil
	})
}
