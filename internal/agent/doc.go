// Package agent is `stratus agent`, the entrypoint of a function
// instance's pod on Kubernetes, and both ends the kube sandbox driver
// talks to: the Host (on the server, serving what each agent needs) and
// the Client (the driver's side of one agent).
//
// A sandbox that runs an image of its own runs the agent from that
// image's pod too: Install (`stratus agent --install DIR`, the pod's init
// container from the agent image) copies the static stratus binary into
// a volume, which the sandbox's container binds read-only and runs
// `stratus agent` from.
//
// A sandbox's mounts are unpacked by Stage (`stratus agent --stage DIR`,
// another init container from the agent image), mount i into DIR/i: a
// volume that init container alone has writable, and that the sandbox's
// container binds read-only at the mount's Target. The program runs as
// the agent's user but has no writable view of its code.
//
// # Protocol
//
// Every request carries "Authorization: Bearer TOKEN", the sandbox's
// credential that Host.Add returned and the pod holds in EnvToken;
// tokens are compared in constant time. A missing or wrong token is 401,
// and so is a token for a sandbox the Host does not have (the answer is
// the same, so that it tells nobody which sandboxes exist); an unknown
// mount of a sandbox, or one asked for after Host.Staged, is 404. Error
// answers are JSON {"message": "..."} and never name a path of the
// server's host; the Client turns them into errors of the stratus kinds
// (400, 401 ErrInvalid; 404 ErrNotFound; 409 ErrConflict; 5xx and no
// answer ErrUnavailable).
//
// Agent to Host (EnvServer):
//
//	GET /v1/agent/sandboxes/{id}             200 JSON {"id","argv","env","dir","mounts":[{"target"}],"runtimeAPI"}
//	GET /v1/agent/sandboxes/{id}/mounts/{i}  200 application/x-tar of mount i's Source: folders, regular
//	                                         files and symlinks with their permission bits, no owners;
//	                                         a failure while streaming breaks the connection
//
// The Host serves the mounts until the driver calls Host.Staged (the pod
// runs: its init containers ended well), the Sandbox until Host.Remove
// (the agent is ready). The agent retries these for up to a minute while
// there is no connection or the answer is a 5xx. Stage extracts each tar
// into DIR/i through an os.Root: absolute names, "..", entries under a
// symlink, duplicates and other types (devices, hard links) are refused,
// and the files of a mount may hold MaxMountBytes at most. Regular files
// end read-only (a-w). A failed staging writes why to the termination log
// and exits 1, which the pod's status shows. Run fetches the Sandbox
// only; when it has a RuntimeAPI, the agent then listens on
// 127.0.0.1:RuntimePort: a reverse proxy to it, streaming both ways,
// headers unchanged, without timeouts (a long poll of
// /runtime/invocation/next lasts as long as the server holds it).
//
// Driver (Client) to agent (0.0.0.0:Port):
//
//	GET  /v1/ready           204 set up, waiting for Start (or started); 503 still setting up;
//	                         500 {"message"} setup failed (Client: ErrSetup), and the agent exits 1
//	                         right after this answer (or 60 s after the failure without one)
//	POST /v1/start           204 the program was started (exec succeeded); 400 it could not be (the
//	                         message names the program or folder; Wait then reports 127); 409 started
//	                         already; 503 not set up, setup failed, or terminating
//	GET  /v1/output/{stream} 200 at once, then stdout or stderr as it comes, from the first byte no
//	                         follower took (header Stratus-Output-Offset: its offset in the whole
//	                         stream); the body ends cleanly only when the stream has ended and all of
//	                         it was sent, else the connection breaks; 409 while another follower holds it
//	POST /v1/sync            200 {"stdout":N,"stderr":M}: the offsets of the end of what the agent read
//	                         from each pipe, once the pipes hold nothing written before the request
//	                         (FIONREAD is 0 with no read under way)
//	GET  /v1/wait            200 at once, then {"code","signal","oom"} when the program has exited
//	GET  /v1/stats           200 {"maxRSSBytes","cpuNanos"} of the agent's own cgroup (the container's):
//	                         cgroup v1 memory.max_usage_in_bytes and cpuacct.usage, else v2
//	                         memory.peak (memory.current before Linux 5.19) and cpu.stat
//
// Follower.Sync asks /v1/sync and returns once its writers have the bytes
// up to those offsets; a follower that reconnects skips what it wrote
// already, using the offsets.
//
// # The program and the agent's end
//
// Start runs Argv (Argv[0] a path, or a name looked up in Env's PATH) in
// its own process group with Env, Dir, stdin /dev/null and stdout and
// stderr on pipes, and AWS_LAMBDA_RUNTIME_API set to the relay's address
// when there is one. Each pipe is read continuously into a buffer of
// 4 MiB; when a buffer is full, the pipe is not read and the program's
// writes block (nothing is dropped). SIGTERM to the agent (its ctx
// ending) is forwarded to the program's group; before a Start the agent
// exits 143 at once.
//
// When the program exits the agent kills what is left of its group,
// writes the exit as one JSON line to /dev/termination-log when that
// exists and is writable, answers every Wait, and exits with the
// program's code (128+signal when a signal killed it) once both streams
// were read to their end and a Wait was answered, or 30 s after the exit
// at most. Being PID 1 in its pod, the agent also reaps orphans.
//
// # Goroutines and locks
//
// Run owns every goroutine of the agent (the HTTP servers, one pipe
// reader per stream, the setup, the reaper) and returns after they have
// ended. A Follower owns one goroutine per stream, ended when the stream
// ends or Follow's ctx does. A stream's lock order is readMu, then mu
// (see stream); the agent's own mu is never held while taking a stream's.
package agent
