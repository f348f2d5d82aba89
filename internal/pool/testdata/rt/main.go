// Command rt is the small runtime the pool tests run: it speaks the Lambda
// Runtime API with net/http and obeys the command in each event.
//
//	{"op":"echo"}                    answers what it knows about itself
//	{"op":"print","text":"..."}      writes a line to stdout and stderr, then answers
//	{"op":"block","gate":"PATH"}     creates PATH.in, answers once PATH exists
//	{"op":"exit","code":N}           exits without answering
//	{"op":"error","text":"..."}      answers with a function error
//
// RT_INIT in the environment changes its start: "error" posts init/error
// and exits, "exit" exits at once, "hang" never asks for an invocation.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type command struct {
	Op   string `json:"op"`
	Text string `json:"text"`
	Gate string `json:"gate"`
	Code int    `json:"code"`
}

// Echo is what {"op":"echo"} answers.
type Echo struct {
	PID      int               `json:"pid"`
	Deadline string            `json:"deadline"`
	ARN      string            `json:"arn"`
	Trace    string            `json:"trace"`
	Dir      string            `json:"dir"`
	Env      map[string]string `json:"env"`
}

var base = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"

func main() {
	switch os.Getenv("RT_INIT") {
	case "error":
		post("/init/error", []byte(`{"errorMessage":"cannot load the handler","errorType":"Runtime.HandlerNotFound"}`))
		os.Exit(1)
	case "exit":
		fmt.Fprintln(os.Stderr, "rt: exiting during init")
		os.Exit(2)
	case "hang":
		for {
			time.Sleep(time.Hour)
		}
	}
	for {
		resp, err := http.Get(base + "/invocation/next")
		if err != nil {
			fmt.Fprintln(os.Stderr, "rt: next:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
		var cmd command
		_ = json.Unmarshal(body, &cmd)
		switch cmd.Op {
		case "print":
			fmt.Println(cmd.Text)
			fmt.Fprintln(os.Stderr, cmd.Text)
		case "block":
			// Say we are at the gate, then wait for the test to open it.
			_ = os.WriteFile(cmd.Gate+".in", nil, 0o600)
			for {
				if _, err := os.Stat(cmd.Gate); err == nil {
					break
				}
				time.Sleep(time.Millisecond)
			}
		case "exit":
			os.Exit(cmd.Code)
		case "error":
			post("/invocation/"+id+"/error", []byte(`{"errorMessage":"`+cmd.Text+`","errorType":"TestError"}`))
			continue
		}
		dir, _ := os.Getwd()
		env := map[string]string{}
		for _, k := range []string{
			"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
			"AWS_REGION", "AWS_DEFAULT_REGION", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER", "TZ",
			"AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "V",
			"AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_EXECUTION_ENV", "LANG",
		} {
			env[k] = os.Getenv(k)
		}
		out, _ := json.Marshal(Echo{
			PID:      os.Getpid(),
			Deadline: resp.Header.Get("Lambda-Runtime-Deadline-Ms"),
			ARN:      resp.Header.Get("Lambda-Runtime-Invoked-Function-Arn"),
			Trace:    resp.Header.Get("Lambda-Runtime-Trace-Id"),
			Dir:      dir,
			Env:      env,
		})
		post("/invocation/"+id+"/response", out)
	}
}

func post(path string, body []byte) {
	resp, err := http.Post(base+path, "application/json", bytes.NewReader(body))
	if err != nil {
		fmt.Fprintln(os.Stderr, "rt: post:", err)
		os.Exit(1)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
