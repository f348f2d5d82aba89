// Command goecho is a test function built with aws-lambda-go. Its event
// says what to do: {"sleep": ms, "fail": "message", "exit": code,
// "print": "line", "spin": true, "burn": ms of CPU}; it answers with what
// it saw.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Sleep int             `json:"sleep"`
	Fail  string          `json:"fail"`
	Exit  *int            `json:"exit"`
	Print string          `json:"print"`
	Spin  bool            `json:"spin"`
	Burn  int             `json:"burn"`
	Echo  json.RawMessage `json:"echo"`
}

type answer struct {
	Echo        json.RawMessage   `json:"echo,omitempty"`
	RequestID   string            `json:"requestId"`
	FunctionARN string            `json:"functionArn"`
	DeadlineMs  int64             `json:"deadlineMs"`
	PID         int               `json:"pid"`
	PIDNS       string            `json:"pidns"` // the PID's namespace, "pid:[INODE]"
	Env         map[string]string `json:"env"`
	Cwd         string            `json:"cwd"`
}

var envNames = []string{
	"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_DEFAULT_REGION", "LAMBDA_TASK_ROOT",
	"LAMBDA_RUNTIME_DIR", "_HANDLER", "TZ", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
	"GREETING", "STRATUS_TOKEN", "_X_AMZN_TRACE_ID",
}

func handle(ctx context.Context, ev event) (*answer, error) {
	if ev.Print != "" {
		fmt.Println(ev.Print)
	}
	if ev.Sleep > 0 {
		time.Sleep(time.Duration(ev.Sleep) * time.Millisecond)
	}
	for ev.Spin {
	}
	if ev.Burn > 0 {
		burn(time.Duration(ev.Burn) * time.Millisecond)
	}
	if ev.Exit != nil {
		os.Exit(*ev.Exit)
	}
	if ev.Fail != "" {
		return nil, errors.New(ev.Fail)
	}
	lc, _ := lambdacontext.FromContext(ctx)
	dl, _ := ctx.Deadline()
	a := &answer{Echo: ev.Echo, PID: os.Getpid(), Env: map[string]string{}, DeadlineMs: dl.UnixMilli()}
	a.PIDNS, _ = os.Readlink("/proc/self/ns/pid")
	if lc != nil {
		a.RequestID = lc.AwsRequestID
		a.FunctionARN = lc.InvokedFunctionArn
	}
	for _, k := range envNames {
		if v, ok := os.LookupEnv(k); ok {
			a.Env[k] = v
		}
	}
	a.Cwd, _ = os.Getwd()
	return a, nil
}

// burn keeps one CPU busy for d of the process's own CPU time.
func burn(d time.Duration) {
	start := cpuTime()
	x := 1
	for cpuTime()-start < d {
		for i := 0; i < 100000; i++ {
			x = x*31 + i
		}
	}
	sink = x
}

var sink int

// cpuTime is the process's CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() { lambda.Start(handle) }
