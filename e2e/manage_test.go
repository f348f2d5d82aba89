package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// functionJSON is a function as `stratus get -o json` and the API show it.
type functionJSON struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	Config  struct {
		Runtime        string            `json:"runtime"`
		Handler        string            `json:"handler"`
		MemoryMB       int               `json:"memoryMB"`
		TimeoutSec     int               `json:"timeoutSec"`
		Env            map[string]string `json:"env"`
		MaxConcurrency int               `json:"maxConcurrency"`
		MinInstances   int               `json:"minInstances"`
		IdleTimeout    string            `json:"idleTimeout"`
		Auth           string            `json:"auth"`
	} `json:"config"`
	CodeSHA   string    `json:"codeSha256"`
	CodeSize  int64     `json:"codeSize"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Instances struct {
		Live int `json:"live"`
		Idle int `json:"idle"`
		Busy int `json:"busy"`
	} `json:"instances"`
	URL string `json:"url"`
}

// TestManageFunctions lists, shows and removes functions with the CLI, as
// tables and as JSON.
func TestManageFunctions(t *testing.T) {
	s := startServer(t)
	if out := s.mustCLI("ls"); strings.TrimSpace(out) != strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]) || !strings.HasPrefix(out, "NAME") {
		t.Errorf("ls of an empty server printed %q, want the header only", out)
	}
	if l := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json"))); len(l) != 0 {
		t.Errorf("ls -o json of an empty server = %v, want []", l)
	}

	s.mustCLI("deploy", "alpha", "--runtime", "provided.al2023", fixture("goecho"))
	out := s.mustCLI("deploy", "beta", "--runtime", "provided", "--memory", "512", "--timeout", "10", "--env", "A=1", "--env", "B=two",
		"--max-concurrency", "7", "--idle-timeout", "90s", "--auth", "none", fixture("gonoop"), "-o", "json")
	dep := decode[functionJSON](t, []byte(out))
	if dep.Name != "beta" || dep.Version != 1 || dep.URL != "/fn/beta" || dep.CodeSize == 0 || len(dep.CodeSHA) != 64 {
		t.Errorf("deploy -o json = %+v", dep)
	}
	resp, body := s.invoke("alpha", `{}`)
	wantOK(t, resp, body)

	// ls: a table for people.
	out = s.mustCLI("ls")
	rows := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(rows) != 3 || !regexp.MustCompile(`^NAME\s+VERSION\s+RUNTIME\s+MEMORY\s+TIMEOUT\s+INSTANCES\s+AUTH\s+UPDATED$`).MatchString(rows[0]) {
		t.Fatalf("ls:\n%s", out)
	}
	sort.Strings(rows[1:])
	for i, re := range []string{
		`^alpha\s+1\s+provided\.al2023\s+128 MB\s+3 s\s+1\s+token\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`,
		`^beta\s+1\s+provided\s+512 MB\s+10 s\s+0\s+none\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`,
	} {
		if !regexp.MustCompile(re).MatchString(rows[i+1]) {
			t.Errorf("ls row %q does not match %s", rows[i+1], re)
		}
	}
	// ls -o json: for scripts.
	fns := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json")))
	sort.Slice(fns, func(i, j int) bool { return fns[i].Name < fns[j].Name })
	if len(fns) != 2 || fns[0].Name != "alpha" || fns[1].Name != "beta" {
		t.Fatalf("ls -o json = %+v", fns)
	}
	if fns[0].Instances.Live != 1 || fns[0].Instances.Idle != 1 || fns[0].Config.Auth != "token" || fns[0].Config.MemoryMB != 128 || fns[0].Config.TimeoutSec != 3 {
		t.Errorf("ls -o json alpha = %+v", fns[0])
	}

	// get: the whole configuration.
	out = s.mustCLI("get", "beta")
	for _, re := range []string{
		`(?m)^Name:\s+beta$`, `(?m)^Version:\s+1$`, `(?m)^Runtime:\s+provided$`, `(?m)^Memory:\s+512 MB$`,
		`(?m)^Timeout:\s+10 s$`, `(?m)^Max concurrency:\s+7$`, `(?m)^Min instances:\s+0$`, `(?m)^Idle timeout:\s+1m30s$`,
		`(?m)^Auth:\s+none$`, `(?m)^URL:\s+/fn/beta$`, `(?m)^Code:\s+sha256 [0-9a-f]{64}, \d+ bytes$`,
		`(?m)^Instances:\s+0 live \(0 busy, 0 idle\)$`, `(?m)^Env A:\s+1$`, `(?m)^Env B:\s+two$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("get beta does not match %s:\n%s", re, out)
		}
	}
	got := decode[functionJSON](t, []byte(s.mustCLI("get", "beta", "-o", "json")))
	c := got.Config
	if got.Name != "beta" || c.Runtime != "provided" || c.MemoryMB != 512 || c.TimeoutSec != 10 || c.MaxConcurrency != 7 ||
		c.IdleTimeout != "1m30s" || c.Auth != "none" || c.Env["A"] != "1" || c.Env["B"] != "two" || got.CodeSHA != dep.CodeSHA ||
		got.CreatedAt.IsZero() || got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("get beta -o json = %+v", got)
	}
	resp, body = s.do("GET", "/v1/functions/beta", nil, true)
	if api := decode[functionJSON](t, body); resp.StatusCode != 200 || api.Name != "beta" || api.CodeSHA != got.CodeSHA {
		t.Errorf("GET /v1/functions/beta: %d %s", resp.StatusCode, body)
	}

	r := s.cli("get", "nope")
	if r.Code != 1 || !strings.Contains(r.Stderr, `function "nope"`) || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("get of an unknown function: exit %d stderr %q", r.Code, r.Stderr)
	}
	resp, body = s.do("GET", "/v1/functions/nope", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "nope")

	// rm: the function, its instances and its route are gone.
	if out := s.mustCLI("rm", "alpha"); strings.TrimSpace(out) != "removed alpha" {
		t.Errorf("rm printed %q", out)
	}
	eventually.True(t, 10*time.Second, "alpha's instance and prepared sandbox to stop", func() bool {
		return len(functionProcessesUnder(s.Data, "alpha")) == 0
	})
	fns = decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json")))
	if len(fns) != 1 || fns[0].Name != "beta" {
		t.Errorf("ls after rm alpha = %+v", fns)
	}
	resp, body = s.invoke("alpha", `{}`)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "alpha")
	resp, body = s.do("GET", "/fn/alpha", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "alpha")
	r = s.cli("invoke", "alpha")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not found") || r.Stdout != "" {
		t.Errorf("invoke of a removed function: exit %d stdout %q stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = s.cli("rm", "alpha")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not found") {
		t.Errorf("rm of a removed function: exit %d stderr %q", r.Code, r.Stderr)
	}
	resp, body = s.do("DELETE", "/v1/functions/alpha", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "alpha")
	out = s.mustCLI("rm", "beta", "-o", "json")
	if m := decode[map[string]string](t, []byte(out)); m["removed"] != "beta" {
		t.Errorf("rm -o json printed %s", out)
	}
	if l := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json"))); len(l) != 0 {
		t.Errorf("ls after removing everything = %+v", l)
	}
	// A removed name can be deployed again, from version 1.
	if out := s.mustCLI("deploy", "alpha", "--runtime", "provided", fixture("gonoop")); !strings.Contains(out, "deployed alpha version 1") {
		t.Errorf("deploy after rm printed %q", out)
	}
	if out := s.mustCLI("invoke", "alpha"); strings.TrimSpace(out) != `{"ok":true}` {
		t.Errorf("invoke of the redeployed function printed %q", out)
	}

	// Usage errors exit 2.
	for _, args := range [][]string{{"get"}, {"ls", "extra"}, {"ls", "-o", "yaml"}, {"frobnicate"}, {"deploy", "x"}} {
		if r := s.cli(args...); r.Code != 2 || r.Stderr == "" {
			t.Errorf("stratus %s: exit %d stderr %q, want 2 and a message", strings.Join(args, " "), r.Code, r.Stderr)
		}
	}
}

// TestCLIServerSelection checks --server and STRATUS_SERVER.
func TestCLIServerSelection(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "here", "--runtime", "provided", fixture("gonoop"))
	dead := "http://127.0.0.1:1"

	// STRATUS_SERVER alone (what s.cli sets).
	if out := s.mustCLI("ls"); !strings.Contains(out, "here") {
		t.Errorf("ls with STRATUS_SERVER: %q", out)
	}
	// --server wins over STRATUS_SERVER.
	r := s.cliEnv([]string{"STRATUS_SERVER=" + dead}, "--server", s.URL, "ls")
	if r.Code != 0 || !strings.Contains(r.Stdout, "here") {
		t.Errorf("ls --server with a dead STRATUS_SERVER: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// host:port without a scheme.
	r = s.cliEnv([]string{"STRATUS_SERVER="}, "invoke", "here", "--server", strings.TrimPrefix(s.URL, "http://"))
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"ok":true}` {
		t.Errorf("invoke --server host:port: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// The flag pointing to a dead server fails, naming it.
	r = s.cli("ls", "--server", dead)
	if r.Code != 1 || !strings.Contains(r.Stderr, "127.0.0.1:1") {
		t.Errorf("ls --server <dead>: exit %d stderr %q", r.Code, r.Stderr)
	}
	r = s.cliEnv([]string{"STRATUS_SERVER=" + dead}, "ls")
	if r.Code != 1 || !strings.Contains(r.Stderr, "127.0.0.1:1") {
		t.Errorf("ls with STRATUS_SERVER=<dead>: exit %d stderr %q", r.Code, r.Stderr)
	}
	// --token wins over STRATUS_TOKEN.
	r = s.cli("ls", "--token", "wrong-token")
	if r.Code != 1 || !strings.Contains(r.Stderr, "UnauthorizedException") {
		t.Errorf("ls --token wrong: exit %d stderr %q", r.Code, r.Stderr)
	}
	r = s.cliEnv([]string{"STRATUS_TOKEN=wrong"}, "ls", "--token", s.Token)
	if r.Code != 0 {
		t.Errorf("ls --token right with STRATUS_TOKEN wrong: exit %d stderr %q", r.Code, r.Stderr)
	}
}

// startServerOwnToken starts a server without --token (and with
// STRATUS_TOKEN empty), so that it generates its token in data or reads the
// one it generated before. s.Token is read from the token file.
func startServerOwnToken(t *testing.T, data string) *server {
	t.Helper()
	s := &server{t: t, Data: data, ownToken: true}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

// runCLIIn runs the CLI in folder dir with env added to the environment.
func runCLIIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run stratus %v: %v", args, err)
	}
	return result{stdout.String(), stderr.String(), code}
}

// TestTokenInDataDir starts a server without a token: it generates one,
// keeps it in the data dir with mode 0600, and the CLI finds it there.
func TestTokenInDataDir(t *testing.T) {
	work := t.TempDir()
	data := filepath.Join(work, ".stratus") // the CLI's default data dir, seen from work
	s := startServerOwnToken(t, data)
	fi, err := os.Stat(filepath.Join(data, "token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if !regexp.MustCompile(`^[0-9a-f]{32,}$`).MatchString(s.Token) {
		t.Errorf("generated token %q is not a long random hex string", s.Token)
	}
	if strings.Contains(s.Stderr(), s.Token) {
		t.Errorf("the server logged its token")
	}

	noToken := []string{"STRATUS_TOKEN=", "STRATUS_DATA="}
	// --data names the data dir.
	r := s.cliEnv(noToken, "deploy", "fn", "--runtime", "provided", "--data", data, fixture("gonoop"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "deployed fn version 1") {
		t.Fatalf("deploy with the token from --data: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// STRATUS_DATA names it.
	r = s.cliEnv([]string{"STRATUS_TOKEN=", "STRATUS_DATA=" + data}, "invoke", "fn")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"ok":true}` {
		t.Errorf("invoke with the token from STRATUS_DATA: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// The default data dir, ./.stratus.
	r = runCLIIn(t, work, append(noToken, "STRATUS_SERVER="+s.URL), "ls")
	if r.Code != 0 || !strings.Contains(r.Stdout, "fn") {
		t.Errorf("ls with the token from ./.stratus: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
	// Elsewhere, with no token at all: 401, and a message that says why.
	r = runCLIIn(t, t.TempDir(), append(noToken, "STRATUS_SERVER="+s.URL), "ls")
	if r.Code != 1 || !strings.Contains(r.Stderr, "UnauthorizedException") || !strings.Contains(r.Stderr, "token") {
		t.Errorf("ls without a token: exit %d stderr %q", r.Code, r.Stderr)
	}
	// STRATUS_TOKEN wins over the file.
	r = s.cliEnv([]string{"STRATUS_TOKEN=not-the-token", "STRATUS_DATA=" + data}, "ls")
	if r.Code != 1 || !strings.Contains(r.Stderr, "UnauthorizedException") {
		t.Errorf("ls with a wrong STRATUS_TOKEN: exit %d stderr %q", r.Code, r.Stderr)
	}

	// A restart keeps the token, and the function.
	s.Stop()
	s2 := startServerOwnToken(t, data)
	if s2.Token != s.Token {
		t.Errorf("the token changed across a restart: %q, was %q", s2.Token, s.Token)
	}
	r = s2.cliEnv([]string{"STRATUS_TOKEN=", "STRATUS_DATA=" + data}, "invoke", "fn")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != `{"ok":true}` {
		t.Errorf("invoke after a restart: exit %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestAuth checks that every control endpoint needs the bearer token and
// the health endpoints do not.
func TestAuth(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "fn", "--runtime", "provided", fixture("gonoop"))
	endpoints := []struct{ method, path string }{
		{"GET", "/v1/functions"},
		{"GET", "/v1/functions/fn"},
		{"PUT", "/v1/functions/fn"},
		{"DELETE", "/v1/functions/fn"},
		{"POST", "/v1/functions/fn/invoke"},
		{"GET", "/v1/functions/fn/logs"},
		{"GET", "/v1/functions/fn/invocations"},
		{"GET", "/v1/functions/nope"},
		{"GET", "/v1/no/such/endpoint"},
		{"GET", "/fn/fn"},
		{"POST", "/fn/fn/x"},
	}
	bad := [][]string{
		nil,
		{"Authorization", "Bearer wrong-token"},
		{"Authorization", "Bearer " + s.Token + "x"},
		{"Authorization", s.Token},
		{"Authorization", "Basic " + s.Token},
		{"Authorization", "Bearer"},
	}
	for _, e := range endpoints {
		for _, h := range bad {
			resp, body := s.do(e.method, e.path, []byte(`{}`), false, h...)
			wantAPIError(t, resp, body, 401, "UnauthorizedException", "token")
			if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without a WWW-Authenticate: Bearer header", e.method, e.path)
			}
		}
	}
	// Nothing changed: the function is there and was never invoked.
	if l := decode[[]functionJSON](t, []byte(s.mustCLI("ls", "-o", "json"))); len(l) != 1 || l[0].Name != "fn" || l[0].Instances.Live != 0 {
		t.Errorf("after unauthorised requests: %+v", l)
	}
	resp, body := s.do("GET", "/v1/no/such/endpoint", nil, true)
	wantAPIError(t, resp, body, 404, "ResourceNotFoundException", "")

	for path, status := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		resp, body := s.do("GET", path, nil, false)
		if resp.StatusCode != 200 || decode[map[string]string](t, body)["status"] != status {
			t.Errorf("GET %s without a token: %d %s", path, resp.StatusCode, body)
		}
	}
}
