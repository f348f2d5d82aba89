package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus/e2e/attackwire"
	"github.com/stratus-run/stratus/internal/eventually"
)

// attackerBuild builds testdata/attacker, static, once per test binary:
// fixtures/attacker/bootstrap.
var attackerBuild = sync.OnceValues(func() (string, error) {
	return buildStatic("attacker", filepath.Join(fixtures, "attacker", "bootstrap"))
})

// The attacker's targets and the lines of its report.
type (
	attackTargets = attackwire.Targets
	attackResult  = attackwire.Attack
)

const (
	secretName   = "ATTACK_VICTIM_SECRET"
	secretPrefix = "stratus-attack-secret-"
	codeMarker   = "victim-marker.txt"
)

// attacksTried are the attacks every report must hold, besides one
// read-database line per database file.
var attacksTried = []string{
	"read-shadow", "read-token", "read-victim-code", "read-victim-env", "find-victim-secret", "read-planted",
	"list-run", "connect-host-socket", "host-pid-namespace", "read-init-environ", "read-init-fds",
	"open-init-status-pipe", "ptrace-init", "kill-init-SIGTERM", "kill-init-SIGSTOP",
	"call-victim-runtime-api", "control-api",
}

// TestAttack is issue 8's suite of attacks on the driver that claims
// isolation (runc): a function deployed from a zip and a service deployed
// from an image, both the attacker program, try to read the host's
// secrets, the server's data, another function's code and environment;
// to list the host's /run, connect to a root-only unix socket of the
// host, ptrace and signal their init, take another instance's Runtime
// API and reach the control API on the sandboxes' bridge. Every attempt
// must fail. Then, from the host: no instance or replica process runs as
// uid 0, and the data dir and its secrets are the server's alone.
//
// The data dir is outside /tmp (under /var/tmp), where a sandbox's own
// /tmp would not hide it, as a real one (./.stratus, /var/lib/…) is not.
func TestAttack(t *testing.T) {
	needRunc(t)
	attacker, err := attackerBuild()
	if err != nil {
		t.Fatal(err)
	}

	// The host's secrets: a 0600 file, a root-only unix socket in /run.
	planted, plantedSum := plantFile(t)
	sock := hostSocket(t)
	hostRun := dirNames(t, "/run")
	hostPIDNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}

	// The server: on every address, with its own token file, in a data
	// dir it makes itself.
	parent := varTempDir(t)
	data := filepath.Join(parent, "data")
	s := &server{t: t, Data: data, ownToken: true,
		args: append([]string{"--listen", "0.0.0.0:0", "--idle-timeout", "10m"}, fastServices...)}
	s.start()
	t.Cleanup(s.Stop)
	_, portStr, err := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatalf("server URL %q: %v", s.URL, err)
	}
	port, _ := strconv.Atoi(portStr)
	s.URL = "http://127.0.0.1:" + portStr

	// The victim: goecho with a marker in its code and a secret in its
	// environment, with one instance up.
	goecho, err := os.ReadFile(filepath.Join(fixture("goecho"), "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	secret, marker := secretPrefix+attackNonce(t, 16), "the victim's code "+attackNonce(t, 16)
	s.mustCLI("deploy", "victim", "--runtime", "provided.al2023", "--env", secretName+"="+secret,
		writeZipFile(t, zipOf(t, zipItem{name: "bootstrap", body: string(goecho), mode: 0o755}, zipItem{name: codeMarker, body: marker, store: true})))
	resp, body := s.invoke("victim", `{}`)
	wantOK(t, resp, body)

	// The attacker, as a function from a zip and as a service from an image.
	bin, err := os.ReadFile(attacker)
	if err != nil {
		t.Fatal(err)
	}
	s.mustCLI("deploy", "attacker", "--runtime", "provided.al2023", "--timeout", "300", "--memory", "256",
		writeZipFile(t, zipOf(t, zipItem{name: "bootstrap", body: string(bin), mode: 0o755})))
	s.mustCLI("image", "import", attackerImageTar(t, bin))
	s.mustCLI("service", "deploy", "attacksvc", "--image", "attacker:v1", "--min", "1", "--env", "ATTACK_ROLE=service")
	eventually.True(t, 30*time.Second, "the attacker service to be ready", func() bool {
		c, _ := s.get("/svc/attacksvc/healthz")
		return c == http.StatusOK
	})

	// Where the victim's Runtime API is, read on the host from its
	// program's environment; its host part is the bridge's address.
	var rapi string
	eventually.True(t, 30*time.Second, "the victim's running instance", func() bool {
		for _, p := range instanceProcesses(data) {
			// The program, not its container's init (a prepared
			// instance has only that) nor runc.
			if strings.Contains(p.desc, "/dev/.stratus-init") || filepath.Base(p.argv0) == "runc" {
				continue
			}
			env := procEnviron(p.pid)
			if env["AWS_LAMBDA_FUNCTION_NAME"] == "victim" && env["AWS_LAMBDA_RUNTIME_API"] != "" {
				rapi = env["AWS_LAMBDA_RUNTIME_API"]
				return true
			}
		}
		return false
	})
	bridge, _, err := net.SplitHostPort(rapi)
	if err != nil {
		t.Fatalf("the victim's AWS_LAMBDA_RUNTIME_API %q: %v", rapi, err)
	}
	// The control API does answer at the bridge's address, with the token:
	// so an attack that fails there fails for want of the token.
	if c, b := getWithToken(t, "http://"+net.JoinHostPort(bridge, portStr)+"/v1/functions", s.Token); c != http.StatusOK {
		t.Errorf("from the host, GET /v1/functions at the bridge's address with the token: %d %s", c, b)
	}

	victimCode := codeFolderWith(t, data, codeMarker)
	targets := attackTargets{
		Shadow:   "/etc/shadow",
		Token:    filepath.Join(data, "token"),
		Database: existingPaths(filepath.Join(data, "stratus.db"), filepath.Join(data, "stratus.db-wal"), filepath.Join(data, "stratus.db-shm")),
		DataDir:  data, VictimCode: victimCode, VictimZip: victimCode + ".zip",
		CodeMarker: codeMarker, CodeMarkerSHA256: hexSHA256(marker),
		SecretName: secretName, SecretPrefix: secretPrefix, SecretSHA256: hexSHA256(secret),
		Planted: planted, PlantedSHA256: plantedSum,
		HostRun: hostRun, Socket: sock.path, RuntimeAPI: rapi,
		ControlAPI: hostAddrs(t, bridge, portStr), ControlPort: port, HostPIDNS: hostPIDNS,
		// The runc driver's state (its bundles hold each sandbox's
		// environment) may live there rather than in the data dir.
		Search: existingPaths("/run/stratus"),
	}
	event, err := json.Marshal(targets)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("targets: %s", event)

	resp, body = s.invoke("attacker", string(event))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		t.Fatalf("invoke attacker: %d %s\nits logs:\n%s\nserver log:\n%s", resp.StatusCode, body, s.cli("logs", "attacker").Stdout, s.Stderr())
	}
	fnReport := decode[[]attackResult](t, body)
	resp, body = s.do("POST", "/svc/attacksvc/attack", event, true)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /svc/attacksvc/attack: %d %s\nits logs:\n%s\nserver log:\n%s", resp.StatusCode, body, s.cli("service", "logs", "attacksvc").Stdout, s.Stderr())
	}
	svcReport := decode[[]attackResult](t, body)

	// What the host's socket saw of whoever connected.
	t.Logf("connections to the host's socket: %v", sock.seen())

	want := append([]string{}, attacksTried...)
	for _, p := range targets.Database {
		want = append(want, "read-database "+filepath.Base(p))
	}
	for _, r := range []struct {
		name   string
		report []attackResult
	}{{"function", fnReport}, {"service", svcReport}} {
		t.Run(r.name, func(t *testing.T) {
			checkReport(t, r.report, want)
		})
	}
	t.Run("no instance runs as root", func(t *testing.T) {
		checkInstanceUIDs(t, data)
	})
	t.Run("data dir modes", func(t *testing.T) {
		checkDataModes(t, data)
	})
}

// checkReport fails the test for every attack that succeeded or did not
// end, and every attack in want missing from the report; it logs the
// whole report.
func checkReport(t *testing.T, report []attackResult, want []string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%-30s %-9s %s\n", "ATTACK", "RESULT", "DETAIL")
	got := map[string]bool{}
	var holes, unfinished []string
	for _, a := range report {
		got[a.Name] = true
		res := "failed"
		switch {
		case a.Info:
			res = "info"
		case a.Unfinished:
			res = "UNFINISHED"
			unfinished = append(unfinished, a.Name)
		case a.Succeeded:
			res = "SUCCEEDED"
			holes = append(holes, a.Name)
		}
		fmt.Fprintf(&b, "%-30s %-9s %s\n", a.Name, res, a.Detail)
	}
	t.Logf("report:\n%s", b.String())
	for _, n := range want {
		if !got[n] {
			t.Errorf("the report lacks attack %q", n)
		}
	}
	if len(unfinished) > 0 {
		t.Errorf("%d attacks did not end in time, so their outcome is unknown: %s", len(unfinished), strings.Join(unfinished, ", "))
	}
	if len(holes) > 0 {
		t.Errorf("%d attacks succeeded: %s", len(holes), strings.Join(holes, ", "))
	}
}

// checkInstanceUIDs reads, from the host, the uids of every process of
// the server's sandboxes (the runc tool itself aside): none may be 0,
// real, effective, saved or filesystem. The victim's and the attacker's
// function instances and the service's replica must be among them.
func checkInstanceUIDs(t *testing.T, data string) {
	t.Helper()
	found := map[string]bool{}
	n := 0
	for _, p := range instanceProcesses(data) {
		if filepath.Base(p.argv0) == "runc" {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", p.pid, "status"))
		if err != nil {
			continue // it ended meanwhile
		}
		if state := procStatusField(st, "State"); len(state) > 0 && state[0] == "Z" {
			// A zombie runs nothing: it ended, and only its parent's
			// wait is left (runc's own setup stages of a sandbox being
			// made leave such children for a moment).
			t.Logf("instance %s: %s: ended (zombie)", p.instance, p.desc)
			continue
		}
		env := procEnviron(p.pid)
		switch {
		case env["ATTACK_ROLE"] == "service":
			found["the attacker service's replica"] = true
		case env["AWS_LAMBDA_FUNCTION_NAME"] != "":
			found["function "+env["AWS_LAMBDA_FUNCTION_NAME"]] = true
		}
		n++
		uid, gid := procStatusField(st, "Uid"), procStatusField(st, "Gid")
		t.Logf("instance %s: %s: Uid %v Gid %v", p.instance, p.desc, uid, gid)
		if len(uid) != 4 {
			t.Errorf("%s: no Uid line in its status", p.desc)
			continue
		}
		var root []string
		for i, what := range []string{"real", "effective", "saved", "filesystem"} {
			if uid[i] == "0" {
				root = append(root, what)
			}
		}
		if len(root) > 0 {
			t.Errorf("instance %s: %s runs as uid 0 on the host (%s; Uid %v)", p.instance, p.desc, strings.Join(root, ", "), uid)
		}
	}
	for _, w := range []string{"function victim", "function attacker", "the attacker service's replica"} {
		if !found[w] {
			t.Errorf("no process of %s found among the %d sandbox processes", w, n)
		}
	}
}

// checkDataModes: the data dir is the server's alone (no group or other
// bits), its token and database files are 0600.
func checkDataModes(t *testing.T, data string) {
	t.Helper()
	fi, err := os.Stat(data)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		t.Errorf("data dir %s has mode %#o; others (and the group) must have no access", data, m)
	}
	for _, name := range []string{"token", "stratus.db", "stratus.db-wal", "stratus.db-shm"} {
		fi, err := os.Stat(filepath.Join(data, name))
		if os.IsNotExist(err) && name != "token" && name != "stratus.db" {
			continue
		}
		if err != nil {
			t.Error(err)
			continue
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", name, m)
		}
	}
}

// procStatusField is the whitespace-separated values of a /proc/PID/status line.
func procStatusField(status []byte, key string) []string {
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// procEnviron is a process's environment, empty if it cannot be read.
func procEnviron(pid string) map[string]string {
	env := map[string]string{}
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "environ"))
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// attackerImageTar is an image of the attacker at /app/attacker, run as
// the image's default user (none set: root in the image), tagged
// attacker:v1.
func attackerImageTar(t *testing.T, bin []byte) string {
	t.Helper()
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/attacker", Mode: 0o755, Body: bin},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ggcr.Config{Entrypoint: []string{"/app/attacker"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}, Env: []string{"PATH=/app:/bin"}}
	return writeImageTar(t, imageOf(t, cfg, layer), "attacker:v1")
}

// varTempDir makes a temporary dir under /var/tmp (else the usual temp
// dir), mode 0755 like /var/lib, removed at the end of the test.
func varTempDir(t *testing.T) string {
	t.Helper()
	base := "/var/tmp"
	if _, err := os.Stat(base); err != nil {
		base = ""
	}
	dir, err := os.MkdirTemp(base, "stratus-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// plantFile writes a random secret to a new 0600 file in /root (else
// /var/tmp) and returns its path and its content's hash.
func plantFile(t *testing.T) (path, sum string) {
	t.Helper()
	dir := "/root"
	if _, err := os.Stat(dir); err != nil {
		dir = "/var/tmp"
	}
	f, err := os.CreateTemp(dir, ".stratus-attack-planted-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	content := "planted by TestAttack " + attackNonce(t, 16)
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Chmod(0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name(), hexSHA256(content)
}

// attackSocket is a unix socket of the host in a root-only dir of /run;
// it greets whoever connects with what it sees of them.
type attackSocket struct {
	path string
	mu   sync.Mutex
	who  []string
}

func (s *attackSocket) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.who...)
}

func hostSocket(t *testing.T) *attackSocket {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "stratus-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := &attackSocket{path: filepath.Join(dir, "sock")}
	ln, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			who := "unknown"
			if raw, err := c.(*net.UnixConn).SyscallConn(); err == nil {
				_ = raw.Control(func(fd uintptr) {
					if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
						who = fmt.Sprintf("pid %d uid %d gid %d", cred.Pid, cred.Uid, cred.Gid)
					}
				})
			}
			s.mu.Lock()
			s.who = append(s.who, who)
			s.mu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "hello from the host's root-only socket; you are %s\n", who)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return s
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// codeFolderWith finds the code folder under data/code that holds name.
func codeFolderWith(t *testing.T, data, name string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(data, "code", "*", name))
	if len(m) != 1 {
		t.Fatalf("want one code folder under %s/code holding %s, found %v", data, name, m)
	}
	return filepath.Dir(m[0])
}

// hostAddrs is bridge:port then host:port for every other IPv4 address
// of the host but the loopback ones: where a sandbox may reach a server
// listening on 0.0.0.0. Other servers' sandbox bridges ("strat…") are
// left out: a sandbox reaches no other bridge, and trying each costs a
// dial timeout.
func hostAddrs(t *testing.T, bridge, port string) []string {
	t.Helper()
	out := []string{net.JoinHostPort(bridge, port)}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifc := range ifs {
		if strings.HasPrefix(ifc.Name, "strat") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil || ipn.IP.IsLoopback() || ipn.IP.String() == bridge {
				continue
			}
			out = append(out, net.JoinHostPort(ipn.IP.String(), port))
		}
	}
	return out
}

// getWithToken sends GET url with the bearer token.
func getWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Status
}

// existingPaths keeps the paths that exist.
func existingPaths(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func attackNonce(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func hexSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
