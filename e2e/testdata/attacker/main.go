// Command attacker is the hostile program of the isolation tests
// (e2e/attack_test.go). It tries, from inside a sandbox, what issue 8 says
// a sandbox must not allow, and reports how each attempt went.
//
// It runs in two modes:
//
//   - as a Lambda function: a provided.al2023 bootstrap built with
//     aws-lambda-go (AWS_LAMBDA_RUNTIME_API is set); the event is the
//     targets and the result the report;
//   - as a service: an HTTP server on $PORT; POST /attack takes the targets
//     as its body and answers the report; GET /healthz answers ok.
//
// The targets name what to go after (host paths, addresses, hashes of
// secrets to recognise); the test fills them in. The report is a JSON
// array of attacks, each {name, succeeded, detail}; an attack that
// succeeded is a hole in the sandbox. Entries with info set are
// observations (who am I, what is in /), never holes.
//
// Every attempt is bounded in time, so a report always comes back.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/stratus-run/stratus/e2e/attackwire"
)

// The wire types shared with the test that reads the report.
type (
	targets = attackwire.Targets
	attack  = attackwire.Attack
)

// Limits of the searches through files.
const (
	maxFileBytes  = 64 << 20
	maxWalkFiles  = 20000
	maxWalkBytes  = 512 << 20
	dialTimeout   = 2 * time.Second
	answerTimeout = 3 * time.Second
	attackTimeout = 20 * time.Second
	walkTimeout   = 10 * time.Second
)

func main() {
	go absorbTERM()
	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		lambda.Start(func(ctx context.Context, t targets) ([]attack, error) { return runAll(t), nil })
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /attack", func(w http.ResponseWriter, r *http.Request) {
		var t targets
		if err := json.NewDecoder(r.Body).Decode(&t); err != nil {
			http.Error(w, "bad targets: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(runAll(t))
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("attacker listening on :%s", port)
	if err := srv.ListenAndServe(); err != nil {
		log.Fatal(err)
	}
}

// SIGTERM: the container's init forwards a SIGTERM it gets to the
// program, so the signal attack on PID 1 may come back to us. Those are
// absorbed (expectTERM counts them); any other SIGTERM ends the program.
var (
	expectTERM atomic.Int32
	gotTERM    = make(chan struct{}, 1)
)

func absorbTERM() {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGTERM)
	for range c {
		if expectTERM.Add(-1) >= 0 {
			select {
			case gotTERM <- struct{}{}:
			default:
			}
			continue
		}
		os.Exit(0)
	}
}

// one at a time: the signal attack counts on it.
var mu sync.Mutex

func runAll(t targets) []attack {
	mu.Lock()
	defer mu.Unlock()
	var out []attack
	// try runs one attack, bounded by attackTimeout: one that hangs is
	// reported unfinished, and left behind.
	try := func(name string, f func() attack) {
		fmt.Fprintf(os.Stderr, "attacker: %s\n", name)
		c := make(chan attack, 1)
		go func() { c <- f() }()
		select {
		case a := <-c:
			a.Name = name
			out = append(out, a)
		case <-time.After(attackTimeout):
			out = append(out, attack{Name: name, Unfinished: true, Detail: fmt.Sprintf("did not end within %s", attackTimeout)})
		}
	}
	try("whoami", whoami)
	try("capabilities", capabilities)
	try("user-namespace", userNamespace)
	try("list-root", listRoot)
	try("read-shadow", func() attack { return readFileAttack(t.Shadow, describeShadow) })
	try("read-token", func() attack { return readFileAttack(t.Token, describeLen) })
	stolen := ""
	if b, err := os.ReadFile(t.Token); err == nil && t.Token != "" {
		stolen = strings.TrimSpace(string(b))
	}
	for _, p := range t.Database {
		try("read-database "+filepath.Base(p), func() attack { return readFileAttack(p, describeDB) })
	}
	try("read-victim-code", func() attack { return readVictimCode(t) })
	try("read-victim-env", func() attack { return readVictimEnv(t) })
	try("find-victim-secret", func() attack { return findSecret(t) })
	try("read-planted", func() attack {
		return readFileAttack(t.Planted, func(b []byte) string {
			if hashOf(b) == t.PlantedSHA256 {
				return fmt.Sprintf("%d bytes, the planted content", len(b))
			}
			return fmt.Sprintf("%d bytes, not the planted content", len(b))
		})
	})
	try("list-run", func() attack { return listRun(t) })
	try("connect-host-socket", func() attack { return connectSocket(t.Socket) })
	try("host-pid-namespace", func() attack { return pidNamespace(t) })
	pid1 := []struct {
		name string
		f    func() attack
	}{
		{"read-init-environ", readInitEnviron}, {"read-init-fds", readInitFDs}, {"open-init-status-pipe", openInitStatus},
		{"ptrace-init", ptraceInit},
		{"kill-init-SIGTERM", func() attack { return signalInit(syscall.SIGTERM) }},
		{"kill-init-SIGSTOP", func() attack { return signalInit(syscall.SIGSTOP) }},
	}
	ns, _ := os.Readlink("/proc/self/ns/pid")
	for _, a := range pid1 {
		if t.HostPIDNS != "" && ns != t.HostPIDNS {
			try(a.name, a.f)
		} else {
			out = append(out, attack{Name: a.name, Detail: "not tried: PID 1 may be the host's init"})
		}
	}
	try("call-victim-runtime-api", func() attack { return callRuntimeAPI(t.RuntimeAPI) })
	try("control-api", func() attack { return controlAPI(t, stolen) })
	return out
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

// readFileAttack succeeds if path can be opened and read.
func readFileAttack(path string, describe func([]byte) string) attack {
	var a attack
	if path == "" {
		a.Detail = "no target given"
		return a
	}
	b, err := readUpTo(path, maxFileBytes)
	if err != nil {
		a.Detail = path + ": " + errText(err)
		return a
	}
	a.Succeeded = true
	a.Detail = path + ": read " + describe(b)
	return a
}

func readUpTo(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

func describeLen(b []byte) string { return fmt.Sprintf("%d bytes", len(b)) }

// describeShadow names the accounts, not their hashes.
func describeShadow(b []byte) string {
	var users []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if u, _, ok := strings.Cut(line, ":"); ok {
			users = append(users, u)
		}
	}
	if len(users) > 5 {
		users = append(users[:5], "…")
	}
	return fmt.Sprintf("%d bytes, accounts %s", len(b), strings.Join(users, ","))
}

func describeDB(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("SQLite format 3\x00")):
		return fmt.Sprintf("%d bytes, an SQLite database", len(b))
	case len(b) >= 4 && (bytes.Equal(b[:4], []byte{0x37, 0x7f, 0x06, 0x82}) || bytes.Equal(b[:4], []byte{0x37, 0x7f, 0x06, 0x83})):
		return fmt.Sprintf("%d bytes, an SQLite WAL", len(b))
	}
	return fmt.Sprintf("%d bytes", len(b))
}

func whoami() attack {
	groups, err := os.Getgroups()
	g := fmt.Sprint(groups)
	if err != nil {
		g = err.Error()
	}
	return attack{Info: true, Detail: fmt.Sprintf("uid=%d euid=%d gid=%d egid=%d groups=%s pid=%d",
		os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid(), g, os.Getpid())}
}

func capabilities() attack {
	a := attack{Info: true}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		a.Detail = errText(err)
		return a
	}
	var kept []string
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && slices.Contains([]string{"Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"}, k) {
			kept = append(kept, k+"="+strings.Join(strings.Fields(v), "/"))
		}
	}
	a.Detail = strings.Join(kept, " ")
	return a
}

// userNamespace: the initial user namespace maps all of 0..2^32-2 onto
// itself; any other map means a user namespace.
func userNamespace() attack {
	a := attack{Info: true}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		a.Detail = errText(err)
		return a
	}
	m := strings.Join(strings.Fields(string(b)), " ")
	in := m != "0 0 4294967295"
	a.Detail = fmt.Sprintf("in a user namespace: %v (uid_map %q)", in, m)
	return a
}

func listRoot() attack {
	a := attack{Info: true}
	ents, err := os.ReadDir("/")
	if err != nil {
		a.Detail = errText(err)
		return a
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	a.Detail = "/: " + strings.Join(names, " ")
	return a
}

// readVictimCode succeeds if any of the victim's code can be read: the
// marker in its folder (given, or found under DATA/code), or its zip.
func readVictimCode(t targets) attack {
	a := attack{}
	var notes []string
	cands := []string{}
	if t.VictimCode != "" {
		cands = append(cands, filepath.Join(t.VictimCode, t.CodeMarker))
	}
	if t.DataDir != "" && t.CodeMarker != "" {
		m, _ := filepath.Glob(filepath.Join(t.DataDir, "code", "*", t.CodeMarker))
		cands = append(cands, m...)
	}
	for _, p := range dedup(cands) {
		b, err := readUpTo(p, 1<<20)
		switch {
		case err != nil:
			notes = append(notes, p+": "+errText(err))
		case hashOf(b) == t.CodeMarkerSHA256:
			a.Succeeded = true
			notes = append(notes, p+": read the victim's marker")
		default:
			notes = append(notes, p+": read, not the marker")
		}
	}
	if t.VictimZip != "" {
		b, err := readUpTo(t.VictimZip, 4)
		switch {
		case err != nil:
			notes = append(notes, t.VictimZip+": "+errText(err))
		case bytes.HasPrefix(b, []byte("PK")):
			a.Succeeded = true
			notes = append(notes, t.VictimZip+": read the victim's zip")
		default:
			notes = append(notes, t.VictimZip+": read, not a zip")
		}
	}
	if len(notes) == 0 {
		notes = append(notes, "no target given")
	}
	a.Detail = strings.Join(notes, "; ")
	return a
}

// secretIn returns the victim's secret if b holds it.
func secretIn(t targets, b []byte) (string, bool) {
	if t.SecretPrefix == "" {
		return "", false
	}
	const hexLen = 32
	for {
		i := bytes.Index(b, []byte(t.SecretPrefix))
		if i < 0 {
			return "", false
		}
		if m := b[i:]; len(m) >= len(t.SecretPrefix)+hexLen {
			m = m[:len(t.SecretPrefix)+hexLen]
			if hashOf(m) == t.SecretSHA256 {
				return string(m), true
			}
		}
		b = b[i+1:]
	}
}

// readVictimEnv looks for the victim's variable in the environment of
// every visible process but this one.
func readVictimEnv(t targets) attack {
	a := attack{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		a.Detail = "/proc: " + errText(err)
		return a
	}
	self := strconv.Itoa(os.Getpid())
	var pids, readable, found []string
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' || pid == self {
			continue
		}
		pids = append(pids, pid)
		b, err := os.ReadFile(filepath.Join("/proc", pid, "environ"))
		if err != nil {
			continue
		}
		readable = append(readable, pid)
		for kv := range strings.SplitSeq(string(b), "\x00") {
			if v, ok := strings.CutPrefix(kv, t.SecretName+"="); ok {
				if _, ok := secretIn(t, []byte(v)); ok {
					found = append(found, pid)
				}
			}
		}
	}
	a.Succeeded = len(found) > 0
	a.Detail = fmt.Sprintf("%d other pids visible %s, environ readable in %d, the secret in %v", len(pids), firstOf(pids, 10), len(readable), found)
	return a
}

// findSecret searches every readable file under the data dir (the
// database, its WAL, the sandboxes' bundles, the code) and the Search
// dirs, and the command lines of visible processes, for the victim's
// secret.
func findSecret(t targets) attack {
	a := attack{}
	var where []string
	found := func(p string) {
		if !slices.Contains(where, p) {
			where = append(where, p)
		}
	}
	roots := dedup(append([]string{t.DataDir}, t.Search...))
	// First where the secret is known to sit (the database, runc's
	// bundles), then everything else.
	first := slices.Clone(t.Database)
	for _, r := range roots {
		for _, pat := range []string{"*/bundles/*/config.json", "*/*/bundles/*/config.json", "run/*/bundles/*/config.json"} {
			m, _ := filepath.Glob(filepath.Join(r, pat))
			first = append(first, m...)
		}
	}
	for _, p := range dedup(first) {
		if _, ok, err := scanFile(t, p); err == nil && ok {
			found(p)
		}
	}
	files, total, denied := 0, int64(0), 0
	var mounts []string
	deadline := time.Now().Add(walkTimeout)
	for _, root := range roots {
		fi, err := os.Stat(root)
		if err != nil {
			denied++
			continue
		}
		// Stay on the root's file system (a mount below it, such as a
		// container's root, would lead anywhere).
		dev := fi.Sys().(*syscall.Stat_t).Dev
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				denied++
				return nil
			}
			if time.Now().After(deadline) || files >= maxWalkFiles || total >= maxWalkBytes {
				return filepath.SkipAll
			}
			if d.IsDir() {
				if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Dev != dev {
					mounts = append(mounts, p)
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			n, ok, err := scanFile(t, p)
			if err != nil {
				denied++
				return nil
			}
			files++
			total += n
			if ok {
				found(p)
			}
			return nil
		})
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		if b, err := os.ReadFile(p); err == nil {
			if _, ok := secretIn(t, b); ok {
				found(p)
			}
		}
	}
	a.Succeeded = len(where) > 0
	a.Detail = fmt.Sprintf("read %d files (%d bytes) under %v, %d not readable, mounts skipped %s; the secret in %v",
		files, total, roots, denied, firstOf(mounts, 5), where)
	return a
}

// scanFile looks for the victim's secret in the first maxFileBytes of a
// file, a chunk at a time (a sandbox's memory is small), and returns how
// many bytes it read.
func scanFile(t targets, path string) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	r := io.LimitReader(f, maxFileBytes)
	overlap := len(t.SecretPrefix) + 32
	buf := make([]byte, 0, 1<<20+overlap)
	var total int64
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		total += int64(n)
		if _, ok := secretIn(t, buf); ok {
			return total, true, nil
		}
		if err == io.EOF {
			return total, false, nil
		}
		if err != nil {
			return total, false, err
		}
		if len(buf) == cap(buf) {
			buf = buf[:copy(buf, buf[len(buf)-overlap:])]
		}
	}
}

// listRun succeeds if /run or /var/run shows any name the host's /run has.
func listRun(t targets) attack {
	a := attack{}
	host := map[string]bool{}
	for _, n := range t.HostRun {
		host[n] = true
	}
	var notes []string
	for _, dir := range []string{"/run", "/var/run"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			notes = append(notes, dir+": "+errText(err))
			continue
		}
		var seen, hostSeen []string
		for _, e := range ents {
			seen = append(seen, e.Name())
			if host[e.Name()] {
				hostSeen = append(hostSeen, e.Name())
			}
		}
		if len(hostSeen) > 0 {
			a.Succeeded = true
		}
		notes = append(notes, fmt.Sprintf("%s: %d entries, host's: %s", dir, len(seen), strings.Join(hostSeen, " ")))
	}
	a.Detail = strings.Join(notes, "; ")
	return a
}

// connectSocket succeeds if connect(2) to the host's socket works.
func connectSocket(path string) attack {
	a := attack{}
	if path == "" {
		a.Detail = "no target given"
		return a
	}
	c, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		a.Detail = path + ": " + err.Error()
		return a
	}
	defer c.Close()
	a.Succeeded = true
	_ = c.SetReadDeadline(time.Now().Add(answerTimeout))
	line, _ := bufio.NewReader(c).ReadString('\n')
	a.Detail = fmt.Sprintf("%s: connected; the host's listener said %q", path, strings.TrimSpace(line))
	return a
}

// pidNamespace succeeds if the program shares the host's PID namespace.
func pidNamespace(t targets) attack {
	a := attack{}
	ns, err := os.Readlink("/proc/self/ns/pid")
	switch {
	case err != nil:
		a.Detail = errText(err)
	case t.HostPIDNS == "":
		a.Detail = "no target given; this one is " + ns
	default:
		a.Succeeded = ns == t.HostPIDNS
		a.Detail = fmt.Sprintf("this one is %s, the host's %s", ns, t.HostPIDNS)
	}
	return a
}

func readInitEnviron() attack {
	return readFileAttack("/proc/1/environ", func(b []byte) string {
		return fmt.Sprintf("%d bytes, %d variables", len(b), bytes.Count(b, []byte{0}))
	})
}

// readInitFDs succeeds if PID 1's descriptors can be listed and resolved.
func readInitFDs() attack {
	a := attack{}
	ents, err := os.ReadDir("/proc/1/fd")
	if err != nil {
		a.Detail = "/proc/1/fd: " + errText(err)
		return a
	}
	var links []string
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join("/proc/1/fd", e.Name()))
		if err != nil {
			links = append(links, e.Name()+" ("+errText(err)+")")
			continue
		}
		a.Succeeded = true
		links = append(links, e.Name()+"→"+l)
	}
	a.Detail = "/proc/1/fd: " + strings.Join(links, " ")
	return a
}

// openInitStatus succeeds if the init's status pipe (fd 3, where the init
// reports how the program ended) can be opened for writing through
// /proc. Nothing is written: that would forge the driver's record.
func openInitStatus() attack {
	a := attack{}
	f, err := os.OpenFile("/proc/1/fd/3", os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		a.Detail = "/proc/1/fd/3: " + errText(err)
		return a
	}
	f.Close()
	a.Succeeded = true
	a.Detail = "/proc/1/fd/3 opened for writing (nothing written)"
	return a
}

// ptraceInit succeeds if PTRACE_ATTACH to PID 1 works; it then waits for
// the init to stop and detaches at once, from the same thread, so that
// the init is not left in a tracing stop.
func ptraceInit() attack {
	a := attack{}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := syscall.PtraceAttach(1); err != nil {
		a.Detail = "PTRACE_ATTACH 1: " + err.Error()
		return a
	}
	a.Succeeded = true
	var ws syscall.WaitStatus
	stopped := false
	deadline := time.Now().Add(dialTimeout)
	for time.Now().Before(deadline) {
		pid, err := syscall.Wait4(1, &ws, syscall.WALL|syscall.WNOHANG, nil)
		if err != nil && err != syscall.EINTR {
			break
		}
		if pid == 1 {
			stopped = ws.Stopped()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	derr := syscall.PtraceDetach(1)
	a.Detail = fmt.Sprintf("PTRACE_ATTACH 1 worked; the init stopped: %v; detach: %v", stopped, derr)
	return a
}

// signalInit succeeds if kill(1, sig) returns no error. A SIGSTOP is
// followed by a SIGCONT; a SIGTERM the init forwards back to us is
// absorbed (absorbTERM).
func signalInit(sig syscall.Signal) attack {
	a := attack{}
	if sig == syscall.SIGTERM {
		expectTERM.Add(1)
	}
	if err := syscall.Kill(1, sig); err != nil {
		if sig == syscall.SIGTERM {
			expectTERM.Add(-1)
		}
		a.Detail = fmt.Sprintf("kill(1, %s): %v", sigName(sig), err)
		return a
	}
	a.Succeeded = true
	a.Detail = fmt.Sprintf("kill(1, %s) returned no error", sigName(sig))
	switch sig {
	case syscall.SIGSTOP:
		a.Detail += fmt.Sprintf("; kill(1, SIGCONT): %v", syscall.Kill(1, syscall.SIGCONT))
	case syscall.SIGTERM:
		select {
		case <-gotTERM:
			a.Detail += "; the init forwarded it to this program"
		case <-time.After(answerTimeout):
			a.Detail += "; nothing came back to this program"
		}
	}
	return a
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "sigterm"
	case syscall.SIGSTOP:
		return "sigstop"
	}
	return s.String()
}

// callRuntimeAPI succeeds if another instance's Runtime API hands out an
// invocation (200) or holds the request open, waiting for one.
func callRuntimeAPI(addr string) attack {
	a := attack{}
	if addr == "" {
		a.Detail = "no target given"
		return a
	}
	u := "http://" + addr + "/2018-06-01/runtime/invocation/next"
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout+answerTimeout)
	defer cancel()
	connected := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected = true }})
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: dialTimeout}).DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	switch {
	case err != nil && connected && errors.Is(err, context.DeadlineExceeded):
		a.Succeeded = true
		a.Detail = fmt.Sprintf("GET %s: connected and held open, waiting for an invocation", u)
	case err != nil:
		a.Detail = fmt.Sprintf("GET %s: %v", u, err)
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		a.Succeeded = resp.StatusCode == http.StatusOK
		a.Detail = fmt.Sprintf("GET %s: %s %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return a
}

// defaultGateway reads the IPv4 default route's gateway.
func defaultGateway() string {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		g, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil || g == 0 {
			continue
		}
		return net.IPv4(byte(g), byte(g>>8), byte(g>>16), byte(g>>24)).String()
	}
	return ""
}

// controlAPI succeeds if GET /v1/functions answers 2xx at any address,
// without a token, with guessed ones, or with the token stolen from the
// data dir.
func controlAPI(t targets, stolen string) attack {
	a := attack{}
	addrs := slices.Clone(t.ControlAPI)
	if gw := defaultGateway(); gw != "" && t.ControlPort != 0 {
		addrs = append(addrs, net.JoinHostPort(gw, strconv.Itoa(t.ControlPort)))
	}
	addrs = dedup(addrs)
	auths := []string{"", "Bearer ", "Bearer stratus", "Bearer admin", "Bearer token"}
	if stolen != "" {
		auths = append(auths, "Bearer "+stolen)
	}
	tr := &http.Transport{DialContext: (&net.Dialer{Timeout: dialTimeout}).DialContext, ResponseHeaderTimeout: answerTimeout}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: dialTimeout + answerTimeout}
	var notes []string
	for _, addr := range addrs {
		c, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			notes = append(notes, addr+": "+err.Error())
			continue
		}
		c.Close()
		var got []string
		for _, auth := range auths {
			req, _ := http.NewRequest("GET", "http://"+addr+"/v1/functions", nil)
			label := "no token"
			if auth != "" {
				req.Header.Set("Authorization", auth)
				label = strings.TrimSpace(auth)
				if stolen != "" && auth == "Bearer "+stolen {
					label = "the stolen token"
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				got = append(got, label+": "+err.Error())
				continue
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				a.Succeeded = true
				got = append(got, fmt.Sprintf("%s: %d %s", label, resp.StatusCode, strings.TrimSpace(string(b))))
			} else {
				got = append(got, fmt.Sprintf("%s: %d", label, resp.StatusCode))
			}
		}
		notes = append(notes, addr+": "+strings.Join(got, ", "))
	}
	a.Detail = strings.Join(notes, "; ")
	return a
}

// firstOf shows the first n of s.
func firstOf(s []string, n int) string {
	if len(s) > n {
		return fmt.Sprint(s[:n]) + "…"
	}
	return fmt.Sprint(s)
}

func dedup(s []string) []string {
	var out []string
	for _, v := range s {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
