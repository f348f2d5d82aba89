package agent

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Port is the agent's own HTTP listener, 0.0.0.0:Port in its pod, for the
// driver.
const Port = 7450

// RuntimePort is the agent's Runtime API relay, 127.0.0.1:RuntimePort in
// its pod.
const RuntimePort = 9001

// Environment of the agent container (set by the driver in the pod spec).
const (
	EnvServer  = "STRATUS_AGENT_SERVER"  // base URL of the Host, e.g. "http://10.0.0.5:41234"
	EnvSandbox = "STRATUS_AGENT_SANDBOX" // the sandbox ID
	EnvToken   = "STRATUS_AGENT_TOKEN"   // the sandbox's credential
)

// Settings the tests give the agent; a pod never sets them.
const (
	// envListenFD names an inherited descriptor of a listening TCP socket
	// the agent serves instead of 0.0.0.0:Port.
	envListenFD = "_STRATUS_AGENT_LISTEN_FD"
	// envRuntimeListen is the relay's address instead of
	// 127.0.0.1:RuntimePort ("127.0.0.1:0" picks a free port).
	envRuntimeListen = "_STRATUS_AGENT_RUNTIME_LISTEN"
	// envTerminationLog replaces /dev/termination-log.
	envTerminationLog = "_STRATUS_AGENT_TERMINATION_LOG"
)

// TestSettings are the names of those settings. A pod whose agent runs in
// an image other than the Stratus image sets each empty (the agent's
// default), so that the image's own ENV cannot set them.
var TestSettings = []string{envListenFD, envRuntimeListen, envTerminationLog}

// MaxMountBytes bounds the bytes of regular files in one mount.
const MaxMountBytes = 1 << 30

// maxMountEntries bounds the entries of one mount's tar.
const maxMountEntries = 1 << 20

// ErrSetup is wrapped (beside stratus.ErrUnavailable) by Client.Ready's
// error when the agent's setup failed for good: its message says why, and
// the agent exits 1 right after answering it. Polling Ready again is
// pointless.
var ErrSetup = errors.New("agent setup failed")

// Sandbox is what the Host tells the agent of one sandbox.
type Sandbox struct {
	ID string
	// Argv is the program; Argv[0] a path in the pod or a name looked up
	// in Env's PATH.
	Argv []string
	// Env is its full environment, "K=V".
	Env []string
	// Dir is its working directory.
	Dir string
	// Mounts: Source is a folder on the server's host, served as a tar;
	// Target is where the pod has the mount's volume, read-only. The
	// staging agent (Stage) unpacks mount i into its volume before the
	// pod's container starts; the agent that runs the program (Run)
	// writes no mount.
	Mounts []sandbox.Mount
	// RuntimeAPI is "host:port" of the instance's Runtime API on the
	// server; "" no relay.
	RuntimeAPI string
}

// wireSandbox is Sandbox on the wire: what the agent gets, without the
// host paths of the mounts.
type wireSandbox struct {
	ID         string      `json:"id"`
	Argv       []string    `json:"argv"`
	Env        []string    `json:"env"`
	Dir        string      `json:"dir"`
	Mounts     []wireMount `json:"mounts"`
	RuntimeAPI string      `json:"runtimeAPI,omitempty"`
}

type wireMount struct {
	Target string `json:"target"`
}

func toWire(sb Sandbox) wireSandbox {
	w := wireSandbox{ID: sb.ID, Argv: sb.Argv, Env: sb.Env, Dir: sb.Dir, RuntimeAPI: sb.RuntimeAPI}
	for _, m := range sb.Mounts {
		w.Mounts = append(w.Mounts, wireMount{Target: m.Target})
	}
	return w
}

func (w wireSandbox) sandbox() Sandbox {
	sb := Sandbox{ID: w.ID, Argv: w.Argv, Env: w.Env, Dir: w.Dir, RuntimeAPI: w.RuntimeAPI}
	for _, m := range w.Mounts {
		sb.Mounts = append(sb.Mounts, sandbox.Mount{Target: m.Target})
	}
	return sb
}

// wireExit is sandbox.Exit on the wire (also the termination log's line).
type wireExit struct {
	Code   int    `json:"code"`
	Signal string `json:"signal,omitempty"`
	OOM    bool   `json:"oom,omitempty"`
}

// wireStats is sandbox.Stats on the wire.
type wireStats struct {
	MaxRSSBytes int64 `json:"maxRSSBytes"`
	CPUNanos    int64 `json:"cpuNanos"`
}

// wireOffsets answers POST /v1/sync: bytes read from each pipe so far.
type wireOffsets struct {
	Stdout int64 `json:"stdout"`
	Stderr int64 `json:"stderr"`
}

// wireError is the body of every error answer of the Host and the agent.
type wireError struct {
	Message string `json:"message"`
}

// offsetHeader carries, in an output stream's answer, the offset (in the
// program's whole output of that stream) of the first byte of the body.
const offsetHeader = "Stratus-Output-Offset"

// agentHeader is on every answer of an agent: an answer without it came
// from something else at the pod's address (a proxy of the network, or
// another pod that has the address now), which the driver takes as "no
// agent there yet", not as the agent's refusal.
const agentHeader = "Stratus-Agent"

// writeError answers status with message (never a host path).
func writeError(w http.ResponseWriter, status int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(wireError{Message: message})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// bearer reports whether r carries "Authorization: Bearer token",
// comparing in constant time. An empty token never matches.
func bearer(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// hasBearer reports whether r carries a bearer token at all.
func hasBearer(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && got != ""
}

// answerError is an error answer of the Host or the agent.
type answerError struct {
	status int
	err    error
}

func (e *answerError) Error() string { return e.err.Error() }
func (e *answerError) Unwrap() error { return e.err }

// statusError turns an error answer of the Host or the agent into an
// error of the matching kind; what names the request.
func statusError(what string, resp *http.Response) error {
	var we wireError
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &we) != nil || we.Message == "" {
		we.Message = strings.TrimSpace(string(b))
	}
	if we.Message == "" {
		we.Message = http.StatusText(resp.StatusCode)
	}
	var kind error
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized:
		kind = stratus.ErrInvalid
	case http.StatusNotFound:
		kind = stratus.ErrNotFound
	case http.StatusConflict:
		kind = stratus.ErrConflict
	default:
		kind = stratus.ErrUnavailable
	}
	return &answerError{
		status: resp.StatusCode,
		err:    fmt.Errorf("%s: %d %s: %w", what, resp.StatusCode, we.Message, kind),
	}
}
