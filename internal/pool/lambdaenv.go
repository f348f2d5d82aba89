package pool

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
)

// Lambda's environment of a function's sandbox, its ARNs and trace IDs.

// baseEnv is how many entries env begins with that an image's own
// environment may override (PATH, LANG, TZ).
const baseEnv = 3

// env is Lambda's environment of instance id of v, with its code in
// taskDir and the runtime clients in rtDir (paths in the sandbox), and its
// Runtime API at rapiAddr; the function's own variables come last.
func (m *Manager) env(v *stratus.Version, taskDir, rtDir, id, rapiAddr string) []string {
	c := v.Config
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin",
		"LANG=en_US.UTF-8",
		"TZ=:UTC",
		"AWS_LAMBDA_RUNTIME_API=" + rapiAddr,
		"AWS_LAMBDA_FUNCTION_NAME=" + v.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=" + v.RunsAs(),
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", c.MemoryMB),
		"AWS_REGION=" + m.cfg.Region,
		"AWS_DEFAULT_REGION=" + m.cfg.Region,
		"LAMBDA_TASK_ROOT=" + taskDir,
		"LAMBDA_RUNTIME_DIR=" + rtDir,
		"_HANDLER=" + c.Handler,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + v.Function,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + m.cfg.Now().UTC().Format("2006/01/02") + "/[" + v.RunsAs() + "]" + id,
		"AWS_EXECUTION_ENV=AWS_Lambda_" + c.Runtime,
	}
	for k, val := range c.Env {
		env = append(env, k+"="+val)
	}
	return env
}

// imageEnv is an image function's environment: Lambda's defaults, then
// the image's environment, then Lambda's variables and the function's
// own; a later entry of a name replaces an earlier one.
func imageEnv(image, lambda []string) []string {
	var out []string
	at := map[string]int{}
	for _, kv := range slices.Concat(lambda[:baseEnv], image, lambda[baseEnv:]) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := at[k]; ok {
			out[i] = kv
			continue
		}
		at[k] = len(out)
		out = append(out, kv)
	}
	return out
}

// arn is the ARN of function fn invoked with qualifier q ("" for none),
// in the server's region and account.
func (m *Manager) arn(fn, q string) string {
	return stratus.FunctionARN(m.cfg.Region, m.cfg.AccountID, fn, q)
}

// newTraceHeader is a new X-Ray trace header for an invocation that
// starts at t, not sampled: for invocations that have no trace context.
func newTraceHeader(t time.Time) string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", t.Unix(), h[:24], h[24:40])
}
