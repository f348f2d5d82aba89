package pool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/rootfs"
	"github.com/stratus-run/stratus/internal/runtimeapi"
	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/runtimes"
)

// Building an instance: its ID, its Runtime API and the spec of its
// sandbox. A version deployed from a zip and one deployed from an image
// differ only in where their code is and how it runs (code).

// Where a function's code and the runtime clients are in a sandbox of a
// driver with Capabilities.Mounts, as on Lambda.
const (
	TaskRoot    = "/var/task"
	RuntimeRoot = "/var/runtime"
)

// ImageRun is how a function from an image runs: its root filesystem
// (a host folder, when asked for), its command (the image's entrypoint
// and command, or the entrypoint and the function's handler),
// environment and working directory.
type ImageRun struct {
	RootFS string
	Argv   []string
	Env    []string
	Dir    string
}

// code is where a version's code is in its sandbox and how it runs there.
type code struct {
	argv []string
	// root is the sandbox's root folder; "" for the driver's own.
	root string
	// imageRef is the image the sandbox runs in, by reference, for a
	// driver with Capabilities.ImageRef (then root is "").
	imageRef string
	// task is the task root (the working directory, LAMBDA_TASK_ROOT);
	// runtime the runtime clients' folder (LAMBDA_RUNTIME_DIR).
	task, runtime string
	mounts        []sandbox.Mount
	// image: env is the image's environment, which comes between
	// Lambda's defaults and Lambda's variables (see imageEnv).
	image bool
	env   []string
	// startAhead: a prepared sandbox starts the program ahead
	// (sandbox.Spec.StartAhead).
	startAhead bool
}

// codeOf is how version v runs in a sandbox of the Manager's driver.
func (m *Manager) codeOf(ctx context.Context, v *stratus.Version) (code, error) {
	if v.Config.Image != "" {
		return m.imageCode(ctx, v)
	}
	return m.zipCode(v)
}

// zipCode: the code extracted from a zip at /var/task and the runtime
// clients at /var/runtime, bound read-only where the driver has mounts
// (and in the minimal root of its runtime where it has roots), else at
// their host paths.
func (m *Manager) zipCode(v *stratus.Version) (code, error) {
	caps := m.cfg.Driver.Capabilities()
	dir := m.cfg.CodeDir(v.CodeSHA)
	c := code{task: dir, runtime: m.cfg.RuntimeDir, startAhead: runtimes.StartsAhead(v.Config.Runtime)}
	if caps.Mounts {
		c.task, c.runtime = TaskRoot, RuntimeRoot
		c.mounts = append(c.mounts, sandbox.Mount{Source: dir, Target: TaskRoot})
		if m.cfg.RuntimeDir != "" {
			c.mounts = append(c.mounts, sandbox.Mount{Source: m.cfg.RuntimeDir, Target: RuntimeRoot})
		}
	}
	var err error
	if caps.RootFS && caps.Mounts && m.cfg.Root != nil {
		c.root, c.argv, err = m.cfg.Root(v, c.task, c.runtime)
	} else {
		c.argv, err = m.cfg.Command(v, c.task, c.runtime)
	}
	return c, err
}

// imageCode: the image is the sandbox's root, its working directory (else
// /var/task) the task root, and its environment comes before Lambda's. A
// driver with Capabilities.ImageRef gets the image by the reference the
// version was deployed with, which its nodes pull; one with
// Capabilities.RootFS the image's root filesystem, a host folder. Either
// way the image store must have the image: its config says how it runs.
func (m *Manager) imageCode(ctx context.Context, v *stratus.Version) (code, error) {
	caps := m.cfg.Driver.Capabilities()
	if m.cfg.Image == nil || !caps.RootFS && !caps.ImageRef {
		return code{}, fmt.Errorf("function %s runs an image, which the %s sandbox driver cannot run: %w", v.Function, m.cfg.Driver.Name(), stratus.ErrUnavailable)
	}
	img, err := m.cfg.Image(ctx, v, !caps.ImageRef)
	if err != nil {
		return code{}, err
	}
	task := img.Dir
	if task == "" {
		task = TaskRoot
	}
	c := code{argv: img.Argv, task: task, image: true, env: img.Env}
	if caps.ImageRef {
		c.imageRef = v.Config.Image
	} else {
		c.root = img.RootFS
	}
	return c, nil
}

// notHere is why v may not run on this server, nil when it may: its
// instances run on this machine (a driver without
// Capabilities.Regions) and v's allowed regions leave out the server's.
func (m *Manager) notHere(v *stratus.Version) error {
	if m.cfg.Driver.Capabilities().Regions || stratus.AllowedIn(v.Config.Regions, m.cfg.Region) {
		return nil
	}
	return fmt.Errorf("function %s may run in regions %s; this server is in region %s and runs instances on its own machine: %w",
		v.Function, strings.Join(v.Config.Regions, ", "), m.cfg.Region, stratus.ErrUnavailable)
}

// newInstance makes instance id of v in p: its Runtime API (listening)
// and the spec of its sandbox, which nothing runs yet, initialised as
// initType (AWS_LAMBDA_INITIALIZATION_TYPE). Its state is stateStarting.
func (m *Manager) newInstance(ctx context.Context, p *fnPool, v *stratus.Version, id, initType string) (*Instance, error) {
	if err := m.notHere(v); err != nil {
		return nil, err
	}
	caps := m.cfg.Driver.Capabilities()
	c, err := m.codeOf(ctx, v)
	if err != nil {
		return nil, err
	}
	// The sandbox reaches its Runtime API at the host's address on its
	// network, or on the loopback it shares with the host.
	rapi, err := runtimeapi.New(runtimeapi.Config{HostIP: caps.HostIP})
	if err != nil {
		return nil, err
	}
	in := &Instance{
		ID: id, Version: v, pool: p, rapi: rapi,
		state: stateStarting, exited: make(chan struct{}),
	}
	in.reqID.Store(&noRequest)
	in.stdout = m.outputWriter(in, "stdout")
	in.stderr = m.outputWriter(in, "stderr")
	env := m.env(ctx, v, c, id, rapi.Addr(), initType)
	in.spec = sandbox.Spec{
		ID:         id,
		Argv:       c.argv,
		Env:        env,
		Dir:        c.task,
		RootFS:     c.root,
		Image:      c.imageRef,
		Regions:    v.Config.Regions,
		Mounts:     c.mounts,
		User:       sandboxUser(caps),
		MemoryMB:   v.Config.MemoryMB,
		InitCPU:    initCPU,
		CPUWeight:  !m.cfg.CPUQuota,
		StartAhead: c.startAhead,
		Stdout:     in.stdout,
		Stderr:     in.stderr,
	}
	return in, nil
}

// noRequest is the request ID of output before an instance's first
// invocation.
var noRequest = ""

// initCPU is the CPU quota, in cores, of a function's sandbox until its
// runtime first asks for an invocation: as in Lambda's init phase, which
// runs with a full core whatever the memory size, the runtime's start-up
// and the function's module-level code are not held to the small share of
// a small memory size. Invocations get the share (see sandbox.Spec.CPU).
const initCPU = 1.0

// sandboxUser is who a function runs as where the driver sets users:
// Lambda's sbx_user1051 (uid 993, gid 990), whose entries the minimal
// roots have.
func sandboxUser(caps sandbox.Capabilities) *sandbox.User {
	if !caps.Users {
		return nil
	}
	return &sandbox.User{UID: uint32(rootfs.Sandbox.UID), GID: uint32(rootfs.Sandbox.GID)}
}

// outputWriter turns one stream of in's output into log lines. Both
// streams share in's meter, which drops lines beyond Config.Output's bounds
// before they are copied.
func (m *Manager) outputWriter(in *Instance, stream string) *sandbox.LineWriter {
	fn := in.Version.Function
	if in.out == nil && m.cfg.Output != nil {
		in.out = m.cfg.Output.Meter(fn, true, func(req, text string) { m.platform(in, req, text) })
	}
	return &sandbox.LineWriter{
		Allow: func(n int) bool { return in.out.Allow(*in.reqID.Load(), n) },
		Emit: func(line string) {
			if m.cfg.Sink == nil {
				return
			}
			m.cfg.Sink.Log(stratus.LogLine{
				Function: fn, Time: m.cfg.Now(), RequestID: *in.reqID.Load(),
				Instance: in.ID, Stream: stream, Text: line,
			})
		},
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
