package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// Lambda's environment of a function's sandbox, its ARNs and trace IDs.
//
// What Lambda documents as its runtime's environment variables, and what
// an instance here gets:
//
//   - Set, and a function's own variables may not name them (deploy
//     refuses reserved names, see stratus.FunctionConfig.Validate):
//     _HANDLER, AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_VERSION,
//     AWS_LAMBDA_FUNCTION_MEMORY_SIZE, AWS_LAMBDA_LOG_GROUP_NAME,
//     AWS_LAMBDA_LOG_STREAM_NAME, AWS_LAMBDA_RUNTIME_API, LAMBDA_TASK_ROOT,
//     LAMBDA_RUNTIME_DIR, AWS_LAMBDA_INITIALIZATION_TYPE and
//     AWS_EXECUTION_ENV.
//   - Set: AWS_REGION and AWS_DEFAULT_REGION (the server's region).
//   - Set, a function's own variables replace them (Lambda's unreserved
//     ones): PATH, LANG, TZ, LD_LIBRARY_PATH (zip functions) and NODE_PATH
//     (nodejs), with Lambda's values for this instance's paths, and
//     AWS_XRAY_CONTEXT_MISSING=LOG_ERROR, as Lambda sets it, so that an
//     X-Ray SDK logs rather than throws when it has no segment.
//   - Per invocation, by the shipped runtime clients: _X_AMZN_TRACE_ID,
//     from the invocation's Lambda-Runtime-Trace-Id (a provided runtime
//     sets it itself, as on Lambda).
//   - AWS_LAMBDA_INITIALIZATION_TYPE is "on-demand" for an instance started
//     for an invocation, or prepared ahead for the next one (create-ahead),
//     and "provisioned-concurrency" for one started to keep the function's
//     MinInstances warm, which is pre-initialised as Lambda's provisioned
//     concurrency is: the invocation it later serves is not a cold start
//     in Stratus's records either, and Powertools' cold_start agrees. Such
//     a start never takes a prepared sandbox (its variables are fixed when
//     it is prepared; see start).
//   - AWS_EXECUTION_ENV is AWS_Lambda_ and the runtime's identifier: the
//     one the function was made with through the Lambda API
//     (FunctionConfig.LambdaRuntime), else that of the host's interpreter,
//     which is what runs the function (python3 --version gives python3.N,
//     node --version nodejsN.x; see runtimeIDs). Lambda sets none for its
//     OS-only runtimes (provided, provided.al2, provided.al2023), nor for an
//     image, whose own environment may carry one (Lambda's base images do).
//
// Not set, and why:
//
//   - AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
//     AWS_ACCESS_KEY: there is no execution role to take credentials from.
//   - AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL: Lambda sets them for a
//     function with a logging configuration (JSON format, log levels);
//     Stratus functions have none, so their logs are text, as on a Lambda
//     function without one.
//   - AWS_LAMBDA_MAX_CONCURRENCY: Lambda sets it only on Managed Instances,
//     where one environment takes several invocations at once; an instance
//     here takes one at a time, and a runtime that reads it (aws-lambda-go)
//     would ask for several.
//   - _AWS_XRAY_DAEMON_ADDRESS, _AWS_XRAY_DAEMON_PORT,
//     AWS_XRAY_DAEMON_ADDRESS: there is no X-Ray daemon to send segments
//     to; the server traces invocations with OpenTelemetry (internal/trace).
//   - PYTHONPATH: Lambda's names its runtime folder, where boto3 is; the
//     runtime folder here holds only the runtime clients.
//   - GEM_PATH, AWS_LAMBDA_DOTNET_PREJIT, _LAMBDA_TELEMETRY_LOG_FD and the
//     like: runtimes and features Stratus does not have.

// baseEnv is how many entries env begins with that an image's own
// environment may override (PATH, LANG, TZ).
const baseEnv = 3

// Values of AWS_LAMBDA_INITIALIZATION_TYPE.
const (
	initOnDemand    = "on-demand"
	initProvisioned = "provisioned-concurrency"
)

// env is Lambda's environment of instance id of v running code cd (its
// task root and runtime clients' folder are paths in the sandbox), with
// its Runtime API at rapiAddr and initType its
// AWS_LAMBDA_INITIALIZATION_TYPE; the function's own variables come last
// and replace Lambda's unreserved ones. An image's environment comes
// between (see imageEnv).
func (m *Manager) env(ctx context.Context, v *stratus.Version, cd code, id, rapiAddr, initType string) []string {
	c := v.Config
	taskDir, rtDir := cd.task, cd.runtime
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin",
		"LANG=en_US.UTF-8",
		"TZ=:UTC",
		"AWS_LAMBDA_RUNTIME_API=" + rapiAddr,
		"AWS_LAMBDA_FUNCTION_NAME=" + v.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=" + v.RunsAs(),
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", c.MemoryMB),
		"AWS_LAMBDA_INITIALIZATION_TYPE=" + initType,
		"AWS_REGION=" + m.cfg.Region,
		"AWS_DEFAULT_REGION=" + m.cfg.Region,
		"LAMBDA_TASK_ROOT=" + taskDir,
		"LAMBDA_RUNTIME_DIR=" + rtDir,
		"_HANDLER=" + c.Handler,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + v.Function,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + m.cfg.Now().UTC().Format("2006/01/02") + "/[" + v.RunsAs() + "]" + id,
		"AWS_XRAY_CONTEXT_MISSING=LOG_ERROR",
	}
	rid := runtimeID(ctx, &c)
	if rid != "" {
		env = append(env, "AWS_EXECUTION_ENV=AWS_Lambda_"+rid)
	}
	if !cd.image {
		// Lambda's search paths, for the code's own libraries and modules.
		env = append(env, "LD_LIBRARY_PATH="+strings.Join([]string{
			"/lib64", "/usr/lib64", rtDir, rtDir + "/lib", taskDir, taskDir + "/lib", "/opt/lib",
		}, ":"))
	}
	if c.Runtime == stratus.RuntimeNodejs {
		major := strings.TrimSuffix(strings.TrimPrefix(rid, "nodejs"), ".x")
		env = append(env, "NODE_PATH="+strings.Join([]string{
			"/opt/nodejs/node" + major + "/node_modules", "/opt/nodejs/node_modules",
			rtDir + "/node_modules", rtDir, taskDir,
		}, ":"))
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+c.Env[k])
	}
	if cd.image {
		return imageEnv(cd.env, env)
	}
	return dedupEnv(env)
}

// runtimeID is the Lambda identifier of c's runtime (python3.12,
// nodejs20.x), "" for the OS-only runtimes and images, which Lambda gives
// no AWS_EXECUTION_ENV.
func runtimeID(ctx context.Context, c *stratus.FunctionConfig) string {
	switch {
	case c.Runtime == stratus.RuntimeImage || stratus.IsProvided(c.Runtime) || stratus.IsProvided(c.LambdaRuntime):
		return ""
	case c.LambdaRuntime != "":
		return c.LambdaRuntime
	}
	return hostRuntimes.id(ctx, c.Runtime)
}

// dedupEnv keeps the last entry of each name, in the place of its first.
func dedupEnv(env []string) []string {
	var out []string
	at := map[string]int{}
	for _, kv := range env {
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

// imageEnv is an image function's environment: Lambda's defaults, then
// the image's environment, then Lambda's variables and the function's
// own; a later entry of a name replaces an earlier one.
func imageEnv(image, lambda []string) []string {
	return dedupEnv(slices.Concat(lambda[:baseEnv], image, lambda[baseEnv:]))
}

// Runtime identifiers of the host's interpreters.

// defaultRuntimeIDs are the identifiers of a runtime family whose
// interpreter cannot be asked (not on PATH, an unreadable answer, not yet
// answered when the start is cancelled): such a function fails to start
// anyway.
var defaultRuntimeIDs = map[string]string{
	stratus.RuntimePython3: "python3.12",
	stratus.RuntimeNodejs:  "nodejs20.x",
}

// hostRuntimes asks the host's interpreters (the interpreters that run
// functions are the host's, see runtimes.Command).
var hostRuntimes = &runtimeIDs{probe: probeInterpreter}

// probeRetry is how long runtimeIDs keeps a failed probe's answer (the
// family's default) before asking the interpreter again: a host without
// node does not make every node start wait for the failure.
const probeRetry = time.Minute

// runtimeIDs finds the Lambda identifier of each runtime family's
// interpreter: probe asks the interpreter, once per family at a time
// (callers that come while it runs wait for its answer, or for their ctx,
// and none holds the lock meanwhile). An answer is kept; a failure gives
// the family's default and is kept for probeRetry by the clock now (nil:
// time.Now); a probe cut short by its caller's ctx keeps nothing.
type runtimeIDs struct {
	probe func(ctx context.Context, family string) (string, error)
	now   func() time.Time

	mu   sync.Mutex
	fams map[string]*familyID // by family
}

// familyID is what runtimeIDs knows of one family's interpreter.
type familyID struct {
	id       string        // its identifier, once asked; "" before
	failedAt time.Time     // when it last failed to answer; zero if it did not
	probing  chan struct{} // closed when the probe under way ends; nil if none
}

// id is the identifier of family's interpreter, or the family's default
// when it cannot be asked (or ctx ends first). It blocks while the
// interpreter is being asked, at most as long as probeInterpreter allows.
func (r *runtimeIDs) id(ctx context.Context, family string) string {
	def, ok := defaultRuntimeIDs[family]
	if !ok {
		def = family
	}
	r.mu.Lock()
	if r.fams == nil {
		r.fams = map[string]*familyID{}
	}
	f := r.fams[family]
	if f == nil {
		f = &familyID{}
		r.fams[family] = f
	}
	for {
		switch {
		case f.id != "":
			r.mu.Unlock()
			return f.id
		case !f.failedAt.IsZero() && r.clock().Sub(f.failedAt) < probeRetry:
			r.mu.Unlock()
			return def
		case f.probing != nil:
			// Another caller asks: wait for its answer.
			ch := f.probing
			r.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return def
			}
			r.mu.Lock()
			continue
		}
		f.probing = make(chan struct{})
		r.mu.Unlock()
		id, err := r.probe(ctx, family)
		if err == nil && id == "" {
			err = fmt.Errorf("runtime %q: no identifier: %w", family, stratus.ErrInvalid)
		}
		r.mu.Lock()
		close(f.probing)
		f.probing = nil
		switch {
		case err == nil:
			f.id = id
		case ctx.Err() == nil:
			f.failedAt = r.clock()
		}
		r.mu.Unlock()
		if err != nil {
			return def
		}
		return id
	}
}

func (r *runtimeIDs) clock() time.Time {
	if r.now == nil {
		return time.Now()
	}
	return r.now()
}

var (
	pythonVersionRE = regexp.MustCompile(`^Python (3)\.([0-9]{1,2})\.`)
	nodeVersionRE   = regexp.MustCompile(`^v([0-9]{1,3})\.[0-9]+\.[0-9]+`)
)

// probeInterpreter runs the interpreter of family with --version and
// makes its answer ("Python 3.12.3", "v20.11.1") Lambda's identifier
// (python3.12, nodejs20.x).
func probeInterpreter(ctx context.Context, family string) (string, error) {
	var name string
	switch family {
	case stratus.RuntimePython3:
		name = "python3"
	case stratus.RuntimeNodejs:
		name = "node"
	default:
		return "", fmt.Errorf("runtime %q: no interpreter: %w", family, stratus.ErrInvalid)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ask %s its version: %w", name, err)
	}
	return runtimeIDOf(family, string(out))
}

// runtimeIDOf is Lambda's identifier of family's interpreter that
// answered out to --version.
func runtimeIDOf(family, out string) (string, error) {
	out = strings.TrimSpace(out)
	switch family {
	case stratus.RuntimePython3:
		if m := pythonVersionRE.FindStringSubmatch(out); m != nil {
			return "python" + m[1] + "." + m[2], nil
		}
	case stratus.RuntimeNodejs:
		if m := nodeVersionRE.FindStringSubmatch(out); m != nil {
			return "nodejs" + m[1] + ".x", nil
		}
	}
	return "", fmt.Errorf("runtime %q: version %q: not understood: %w", family, out, stratus.ErrInvalid)
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
