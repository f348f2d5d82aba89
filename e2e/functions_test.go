package e2e

import (
	"strings"
	"testing"
)

// TestGoFunction deploys an aws-lambda-go binary, invokes it through the
// CLI and the API, and checks Lambda's environment and context.
func TestGoFunction(t *testing.T) {
	s := startServer(t)
	out := s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", "--memory", "256", "--env", "GREETING=hi", fixture("goecho"))
	if !strings.Contains(out, "deployed echo version 1") {
		t.Fatalf("deploy printed %q", out)
	}
	got := s.mustCLI("invoke", "echo", "--data", `{"echo":{"x":1}}`)
	type answer struct {
		Echo        map[string]int    `json:"echo"`
		RequestID   string            `json:"requestId"`
		FunctionARN string            `json:"functionArn"`
		DeadlineMs  int64             `json:"deadlineMs"`
		Env         map[string]string `json:"env"`
		Cwd         string            `json:"cwd"`
	}
	a := decode[answer](t, []byte(got))
	if a.Echo["x"] != 1 {
		t.Errorf("echo = %v, want x=1", a.Echo)
	}
	if a.RequestID == "" || !strings.HasPrefix(a.FunctionARN, "arn:aws:lambda:local:") || !strings.HasSuffix(a.FunctionARN, ":function:echo") {
		t.Errorf("context: request id %q arn %q", a.RequestID, a.FunctionARN)
	}
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME": "echo", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_REGION": "local", "AWS_DEFAULT_REGION": "local",
		"TZ": ":UTC", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/echo", "GREETING": "hi",
	}
	for k, v := range want {
		if a.Env[k] != v {
			t.Errorf("env %s = %q, want %q", k, a.Env[k], v)
		}
	}
	for _, k := range []string{"AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_LOG_STREAM_NAME", "_HANDLER"} {
		if _, ok := a.Env[k]; !ok {
			t.Errorf("env %s missing", k)
		}
	}
	if _, ok := a.Env["STRATUS_TOKEN"]; ok {
		t.Errorf("the server's token leaked into the function's environment")
	}
	if a.Cwd != a.Env["LAMBDA_TASK_ROOT"] {
		t.Errorf("cwd %q, want the code folder %q", a.Cwd, a.Env["LAMBDA_TASK_ROOT"])
	}

	resp, body := s.invoke("echo", `{"fail":"boom"}`)
	if resp.StatusCode != 200 || resp.Header.Get("X-Amz-Function-Error") != "Unhandled" {
		t.Fatalf("function error: status %d header %q body %s", resp.StatusCode, resp.Header.Get("X-Amz-Function-Error"), body)
	}
	fe := decode[map[string]any](t, body)
	if fe["errorMessage"] != "boom" || fe["errorType"] != "errorString" {
		t.Errorf("error object = %v", fe)
	}
	r := s.cli("invoke", "echo", "--data", `{"fail":"boom"}`)
	if r.Code == 0 || !strings.Contains(r.Stdout, `"errorMessage":"boom"`) {
		t.Errorf("cli invoke of a failing function: exit %d stdout %q", r.Code, r.Stdout)
	}
}
