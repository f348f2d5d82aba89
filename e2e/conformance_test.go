package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
	"github.com/stratus-run/stratus/internal/trace/otlptest"
)

// This file checks Stratus against two pieces of third-party code, built
// at test time from the Go module proxy at the versions pinned in the
// nested modules under testdata/conformance (see its README.md):
//
//   - Knative Serving's runtime conformance image
//     (knative.dev/serving/test/test_images/runtime), packaged as ko
//     packages it, deployed from a Knative manifest; the checks are the
//     expectations of Knative's runtime conformance tests
//     (test/conformance/runtime), written here from the runtime contract.
//   - go-httpbin, a proxy-aware echo server (its /get answers the request
//     headers it saw, the client address it believes, first of
//     X-Forwarded-For, and the URL it rebuilds with X-Forwarded-Proto), as
//     a service behind servers with and without --trusted-proxies.

// conformanceBuildTimeout bounds one build of a tool (the runtime image's
// module graph is Kubernetes' client libraries: minutes on a cold cache).
const conformanceBuildTimeout = 20 * time.Minute

// conformanceTool returns the executable of program name: the main
// package pkg of module mod at the version that the nested module
// testdata/conformance/DIR pins, built static (clustertest.BuildGoTool: once per version and Go
// toolchain, in
// ${XDG_CACHE_HOME:-~/.cache}/stratus-tools/NAME-VERSION-GOVERSION/NAME,
// which the test logs). A missing go command skips the test, or fails it
// when CI=true; a failed build fails it.
func conformanceTool(t *testing.T, dir, mod, pkg, name string) []byte {
	t.Helper()
	built := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:     name,
		ModDir:   "e2e/testdata/conformance/" + dir,
		Module:   mod,
		Binaries: map[string]string{name: pkg},
		LDFlags:  func(string) string { return "-s -w" },
		Static:   true,
		Timeout:  conformanceBuildTimeout,
	})
	exe := filepath.Join(built, name)
	t.Logf("%s: %s", pkg, exe)
	body, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// knativeRuntimeImage writes, as a `docker save` tarball tagged tag, the
// Knative runtime conformance image as `ko build` makes it on a
// distroless-like nonroot base: a base layer with /etc/passwd and
// /etc/group naming nonroot (65532) and its home /home/nonroot (0700,
// its own), and no /tmp (as scratch, distroless static and ko images
// have none); ko's kodata layer (/var/run/ko); ko's binary layer
// (/ko-app/runtime, 0555); USER 65532, WORKDIR /home/nonroot, ENTRYPOINT
// the binary, PATH with /ko-app and KO_DATA_PATH, as ko sets them. It
// returns the path.
func knativeRuntimeImage(t *testing.T, tag string) string {
	t.Helper()
	body := conformanceTool(t, "runtimeimage", "knative.dev/serving",
		"knative.dev/serving/test/test_images/runtime", "knative-runtime")
	base, err := layerOf([]layerFile{
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
		{Name: "home/", Mode: 0o755},
		{Name: "home/nonroot/", Mode: 0o700, UID: 65532},
		{Name: "root/", Mode: 0o700},
	})
	if err != nil {
		t.Fatal(err)
	}
	kodata, err := layerOf([]layerFile{
		{Name: "var/", Mode: 0o555},
		{Name: "var/run/", Mode: 0o555},
		{Name: "var/run/ko/", Mode: 0o555},
	})
	if err != nil {
		t.Fatal(err)
	}
	app, err := layerOf([]layerFile{
		{Name: "ko-app/", Mode: 0o555},
		{Name: "ko-app/runtime", Mode: 0o555, Body: body},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ggcr.Config{
		User:       "65532",
		WorkingDir: "/home/nonroot",
		Entrypoint: []string{"/ko-app/runtime"},
		Env: []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/ko-app",
			"KO_DATA_PATH=/var/run/ko",
		},
	}
	return writeImageTar(t, imageOf(t, cfg, base, kodata, app), tag)
}

// knRuntimeInfo is the part of the runtime image's JSON answer (its
// RuntimeInfo) that the checks read.
type knRuntimeInfo struct {
	Request struct {
		URI        string      `json:"uri"`
		Host       string      `json:"host"`
		Method     string      `json:"method"`
		Headers    http.Header `json:"headers"`
		ProtoMajor int         `json:"protoMajor"`
		ProtoMinor int         `json:"protoMinor"`
	} `json:"request"`
	Host struct {
		Files      map[string]knFile `json:"files"`
		Envs       map[string]string `json:"envs"`
		FileAccess map[string]struct {
			ReadErr  string `json:"read_error"`
			WriteErr string `json:"write_error"`
		} `json:"fileaccess"`
		Cgroups []struct {
			Name     string  `json:"name"`
			Value    *string `json:"value"`
			ReadOnly *bool   `json:"readOnly"`
			Error    string  `json:"error"`
		} `json:"cgroups"`
		Mounts []struct {
			Device  string   `json:"device"`
			Path    string   `json:"path"`
			Type    string   `json:"type"`
			Options []string `json:"options"`
			Error   string   `json:"error"`
		} `json:"mounts"`
		Stdin struct {
			EOF   *bool  `json:"eof"`
			Error string `json:"error"`
		} `json:"stdin"`
		User *struct {
			UID  int `json:"uid"`
			EUID int `json:"euid"`
			GID  int `json:"gid"`
			EGID int `json:"egid"`
			Cwd  struct {
				Directory string `json:"directory"`
				Error     string `json:"error"`
			} `json:"cwd"`
		} `json:"user"`
		Args []string `json:"args"`
	} `json:"host"`
}

// knFile is what the image reports of one path: its permission bits as
// Go writes them ("rwxrwxrwx"), the target of a symbolic link, whether a
// folder, or the error of stat(2).
type knFile struct {
	Mode       string `json:"mode"`
	SourceFile string `json:"sourceFile"`
	IsDir      *bool  `json:"isDir"`
	Error      string `json:"error"`
}

// knativeRuntimeManifest is the Knative Service of the runtime image as
// NAME: one replica kept, open without the token, with extra (YAML lines
// at the container's indentation) added to its container.
func knativeRuntimeManifest(name, image, extra string) string {
	return `apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: ` + name + `
  annotations:
    stratus.dev/auth: none
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containers:
        - image: ` + image + `
` + extra
}

// knApply applies manifest and fails t unless apply exits 0 printing want
// (which it does once the service is ready).
func knApply(t *testing.T, s *server, manifest, want string) {
	t.Helper()
	r := s.applyFile(manifest)
	if r.Code != 0 || r.Stdout != want+"\n" {
		t.Fatalf("apply: exit %d, stdout %q (want %q), stderr %q\nserver log:\n%s", r.Code, r.Stdout, want, r.Stderr, s.Stderr())
	}
}

// fetchRuntimeInfo sends GET / to service name through its host route
// (NAME.localhost) with hdr, waits until it answers 200, and decodes the
// runtime image's answer.
func fetchRuntimeInfo(t *testing.T, s *server, name string, hdr http.Header) knRuntimeInfo {
	t.Helper()
	var body []byte
	eventually.Nil(t, 60*time.Second, "GET / of "+name, func() error {
		req, err := http.NewRequest("GET", s.URL+"/", nil)
		if err != nil {
			return err
		}
		req.Host = name + ".localhost"
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		body = b
		return nil
	})
	return decode[knRuntimeInfo](t, body)
}

// TestKnativeRuntimeConformance deploys Knative's runtime conformance
// image from Knative manifests and checks what Knative's runtime
// conformance tests check: the environment (PORT, K_SERVICE,
// K_CONFIGURATION, K_REVISION), /dev, /proc/self/fd and /tmp and their
// access, /etc/resolv.conf, no /dev/console, cgroup limits as asked and
// read-only, /proc/sys read-only, stdin at EOF, the image's user and
// working folder, command and args, the headers a request arrives with
// (a valid RFC 7239 Forwarded, X-Forwarded-Proto, X-Forwarded-For,
// traceparent, the client's own), HTTP/1.1 and h2c, probes, a port below
// 1024, and the container fields the contract says must be refused.
func TestKnativeRuntimeConformance(t *testing.T) {
	needRunc(t)
	tar := knativeRuntimeImage(t, "knative-runtime:v1")
	// Spans go to a collector, as in Knative's conformance clusters:
	// requests then arrive with a traceparent.
	rcv := otlptest.Start(t)
	s := startServer(t, "--otlp-endpoint", rcv.HTTPURL())
	s.mustCLI("image", "import", tar)

	const (
		memLimit   = 128 << 20 // bytes
		cpuLimit   = 1000      // milli-CPU
		cpuRequest = 125       // milli-CPU
	)
	knApply(t, s, knativeRuntimeManifest("kruntime", "knative-runtime:v1", `          command: ["/ko-app/runtime", "abra"]
          args: ["cadabra", "do"]
          env:
            - name: CONFORMANCE_KEY
              value: conformance value
          ports:
            - containerPort: 8801
              name: http1
          resources:
            limits:
              memory: 128Mi
              cpu: "1"
            requests:
              cpu: 125m
`), "service/kruntime created")
	hdr := http.Header{"This-Was-User-Set": {"a value"}}
	ri := fetchRuntimeInfo(t, s, "kruntime", hdr)
	h := &ri.Host

	t.Run("env", func(t *testing.T) {
		for k, want := range map[string]string{
			"PORT":            "8801",
			"K_SERVICE":       "kruntime",
			"K_CONFIGURATION": "kruntime",
			"K_REVISION":      "kruntime-00001",
			"CONFORMANCE_KEY": "conformance value",
			"KO_DATA_PATH":    "/var/run/ko", // from the image
		} {
			if got, ok := h.Envs[k]; !ok || got != want {
				t.Errorf("%s = %q (set: %v), want %q", k, got, ok, want)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		yes, no := true, false
		// Every path the contract names, as it wants it: a folder or
		// not, the link's target, the permissions (* for any), or the
		// stat error.
		want := map[string]struct {
			dir    *bool
			link   string
			perm   string
			errMsg string
		}{
			"/dev/fd":          {dir: &yes, link: "/proc/self/fd"},
			"/dev/full":        {dir: &no},
			"/dev/null":        {dir: &no},
			"/dev/ptmx":        {dir: &no},
			"/dev/random":      {dir: &no},
			"/dev/stdin":       {dir: &no, link: "/proc/self/fd/0"},
			"/dev/stdout":      {dir: &no, link: "/proc/self/fd/1"},
			"/dev/stderr":      {dir: &no, link: "/proc/self/fd/2"},
			"/dev/tty":         {dir: &no},
			"/dev/urandom":     {dir: &no},
			"/dev/zero":        {dir: &no},
			"/proc/self/fd":    {dir: &yes},
			"/proc/self/fd/0":  {dir: &no},
			"/proc/self/fd/1":  {dir: &no},
			"/proc/self/fd/2":  {dir: &no},
			"/tmp":             {dir: &yes, perm: "rwxrwxrwx"},
			"/etc/resolv.conf": {dir: &no, perm: "rw*r**r**"},
			"/dev/console":     {errMsg: "stat /dev/console: no such file or directory"},
		}
		for p, w := range want {
			f, ok := h.Files[p]
			switch {
			case !ok:
				t.Errorf("%s: not reported", p)
				continue
			case w.errMsg != "":
				if f.Error != w.errMsg {
					t.Errorf("%s: error %q, want %q", p, f.Error, w.errMsg)
				}
				continue
			case f.Error != "":
				t.Errorf("%s: %s", p, f.Error)
				continue
			}
			if w.dir != nil && (f.IsDir == nil || *f.IsDir != *w.dir) {
				t.Errorf("%s: folder %v, want %v", p, f.IsDir, *w.dir)
			}
			if w.link != "" && f.SourceFile != w.link {
				t.Errorf("%s: links to %q, want %q", p, f.SourceFile, w.link)
			}
			if w.perm != "" && !permMatches(f.Mode, w.perm) {
				t.Errorf("%s: mode %q, want %q", p, f.Mode, w.perm)
			}
			// The image reads what others may read and writes (a new
			// file in a folder) what others may write.
			if a, ok := h.FileAccess[p]; ok && (a.ReadErr != "" || a.WriteErr != "") {
				t.Errorf("%s: read error %q, write error %q", p, a.ReadErr, a.WriteErr)
			}
		}
		if _, ok := h.FileAccess["/tmp"]; !ok {
			t.Errorf("/tmp: no access attempt reported: %v", h.FileAccess)
		}
	})

	t.Run("cgroups", func(t *testing.T) {
		// The image reads cgroup v2's files where /sys/fs/cgroup is
		// cgroup2, else v1's.
		v2 := false
		for _, m := range h.Mounts {
			if m.Path == "/sys/fs/cgroup" {
				v2 = m.Type == "cgroup2"
			}
		}
		seen := map[string]string{}
		for _, c := range h.Cgroups {
			if c.Error != "" || c.Value == nil {
				t.Errorf("%s: %s", c.Name, c.Error)
				continue
			}
			seen[c.Name] = *c.Value
			if c.ReadOnly == nil || !*c.ReadOnly {
				t.Errorf("%s: writable from inside the container", c.Name)
			}
		}
		t.Logf("cgroup v2 %v: %v", v2, seen)
		// ratio is the milli-CPU of quota over period, or -1.
		ratio := func(quota, period string) int {
			q, err1 := strconv.Atoi(quota)
			p, err2 := strconv.Atoi(period)
			if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
				return -1
			}
			return 1000 * q / p
		}
		// The memory limit counts whole 4 KiB pages.
		mem := strconv.Itoa(memLimit &^ 4095)
		if v2 {
			if got := seen["/sys/fs/cgroup/memory.max"]; got != mem {
				t.Errorf("memory.max = %q, want %s", got, mem)
			}
			// cpu.max is "QUOTA PERIOD".
			if f := strings.Fields(seen["/sys/fs/cgroup/cpu.max"]); len(f) != 2 || ratio(f[0], f[1]) != cpuLimit {
				t.Errorf("cpu.max = %q, want %d milli-CPU", seen["/sys/fs/cgroup/cpu.max"], cpuLimit)
			}
			if w, err := strconv.Atoi(seen["/sys/fs/cgroup/cpu.weight"]); err != nil || w < 1 {
				t.Errorf("cpu.weight = %q, want a positive integer", seen["/sys/fs/cgroup/cpu.weight"])
			}
			return
		}
		if got := seen["/sys/fs/cgroup/memory/memory.limit_in_bytes"]; got != mem {
			t.Errorf("memory.limit_in_bytes = %q, want %s", got, mem)
		}
		if q, p := seen["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"], seen["/sys/fs/cgroup/cpu/cpu.cfs_period_us"]; ratio(q, p) != cpuLimit {
			t.Errorf("cpu.cfs_quota_us %q over cpu.cfs_period_us %q, want %d milli-CPU", q, p, cpuLimit)
		}
		// cpu.shares: the CPU request, 1024 a CPU.
		if got, want := seen["/sys/fs/cgroup/cpu/cpu.shares"], strconv.Itoa(cpuRequest*1024/1000); got != want {
			t.Errorf("cpu.shares = %q, want %s (requests.cpu %dm)", got, want, cpuRequest)
		}
	})

	t.Run("mounts", func(t *testing.T) {
		for _, m := range h.Mounts {
			if m.Error != "" {
				t.Fatalf("mounts: %s", m.Error)
			}
			// /proc/sys, where it is a mount of its own, is proc and
			// read-only.
			if m.Path == "/proc/sys" && (m.Type != "proc" || m.Device != "proc" || !slices.Contains(m.Options, "ro")) {
				t.Errorf("/proc/sys: %+v, want a read-only proc mount", m)
			}
		}
	})

	t.Run("stdin", func(t *testing.T) {
		if h.Stdin.Error != "" || h.Stdin.EOF == nil || !*h.Stdin.EOF {
			t.Errorf("stdin: %+v, want EOF at the first read", h.Stdin)
		}
	})

	t.Run("user", func(t *testing.T) {
		u := h.User
		if u == nil {
			t.Fatal("no user reported")
		}
		// The image's USER 65532, whose group in its /etc/passwd is 65532.
		if u.UID != 65532 || u.EUID != 65532 {
			t.Errorf("uid %d, euid %d: want the image's USER, 65532", u.UID, u.EUID)
		}
		if u.GID != 65532 || u.EGID != 65532 {
			t.Errorf("gid %d, egid %d: want the group of 65532 in the image's /etc/passwd, 65532", u.GID, u.EGID)
		}
		if u.Cwd.Directory != "/home/nonroot" || u.Cwd.Error != "" {
			t.Errorf("working folder %q (error %q), want the image's WORKDIR /home/nonroot", u.Cwd.Directory, u.Cwd.Error)
		}
	})

	t.Run("args", func(t *testing.T) {
		if want := []string{"/ko-app/runtime", "abra", "cadabra", "do"}; !slices.Equal(h.Args, want) {
			t.Errorf("args %q, want command then args %q", h.Args, want)
		}
	})

	t.Run("headers", func(t *testing.T) {
		r := ri.Request
		if r.Host == "" || r.Method != "GET" || r.URI != "/" {
			t.Errorf("request: host %q, method %q, uri %q", r.Host, r.Method, r.URI)
		}
		if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
			t.Errorf("HTTP/%d.%d, want HTTP/1.1 (port name http1)", r.ProtoMajor, r.ProtoMinor)
		}
		checks := map[string]func(string) bool{
			"This-Was-User-Set": func(v string) bool { return v == "a value" },
			"Forwarded":         validForwarded,
			"X-Forwarded-Proto": regexp.MustCompile(`^https?$`).MatchString,
			"X-Forwarded-For": func(v string) bool {
				for ip := range strings.SplitSeq(v, ",") {
					if net.ParseIP(strings.TrimSpace(ip)) == nil {
						return false
					}
				}
				return true
			},
			"Traceparent": regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`).MatchString,
		}
		for k, ok := range checks {
			vs := r.Headers[k]
			if len(vs) == 0 {
				t.Errorf("%s: missing (headers %v)", k, r.Headers)
			}
			for _, v := range vs {
				if !ok(v) {
					t.Errorf("%s: %q is not valid", k, v)
				}
			}
		}
	})

	t.Run("h2c", func(t *testing.T) {
		knApply(t, s, knativeRuntimeManifest("kh2c", "knative-runtime:v1", `          ports:
            - containerPort: 8080
              name: h2c
`), "service/kh2c created")
		r := fetchRuntimeInfo(t, s, "kh2c", nil).Request
		if r.ProtoMajor != 2 || r.ProtoMinor != 0 {
			t.Errorf("HTTP/%d.%d, want HTTP/2.0 (port name h2c)", r.ProtoMajor, r.ProtoMinor)
		}
	})

	t.Run("port80", func(t *testing.T) {
		// Its user, 65532, binds port 80 as it would in a pod.
		knApply(t, s, knativeRuntimeManifest("k80", "knative-runtime:v1", `          ports:
            - containerPort: 80
`), "service/k80 created")
		if got := fetchRuntimeInfo(t, s, "k80", nil).Host.Envs["PORT"]; got != "80" {
			t.Errorf("PORT = %q, want 80", got)
		}
	})

	t.Run("probes", func(t *testing.T) {
		// The image answers /healthz 200 only to a kubelet's probe
		// (User-Agent kube-probe/..., or K-Kubelet-Probe), 400 to others.
		knApply(t, s, knativeRuntimeManifest("kprobe", "knative-runtime:v1", `          readinessProbe:
            httpGet:
              path: /healthz
          livenessProbe:
            httpGet:
              path: /healthz
              port: 8080
`), "service/kprobe created")
		if r := s.cli("service", "get", "kprobe", "-o", "json"); r.Code != 0 {
			t.Errorf("service get kprobe: exit %d: %s", r.Code, r.Stderr)
		} else if svc := decode[v1.Service](t, []byte(r.Stdout)); svc.Status != "Ready" {
			t.Errorf("kprobe: status %q, want Ready", svc.Status)
		}
		fetchRuntimeInfo(t, s, "kprobe", nil)
	})

	t.Run("refused", func(t *testing.T) {
		// Fields the contract says must (or should) be refused: each
		// apply fails and names its field.
		for _, c := range []struct{ name, extra, field string }{
			{"arbitrary-port-name", "          ports:\n            - name: arbitrary\n", "ports[0].name"},
			{"mount-propagation", "          volumeMounts:\n            - name: v\n              mountPath: /\n              mountPropagation: HostToContainer\n", "volumeMounts"},
			{"post-start", "          lifecycle:\n            postStart:\n              exec:\n                command: [/bin/true]\n", "lifecycle"},
			{"pre-stop", "          lifecycle:\n            preStop:\n              exec:\n                command: [/bin/true]\n", "lifecycle"},
			{"two-ports", "          ports:\n            - containerPort: 80\n            - containerPort: 81\n", "ports"},
			{"host-port", "          ports:\n            - hostPort: 80\n", "hostPort"},
			{"stdin", "          stdin: true\n", "stdin"},
			{"stdin-once", "          stdinOnce: true\n", "stdinOnce"},
			{"tty", "          tty: true\n", "tty"},
			{"negative-uid", "          securityContext:\n            runAsUser: -10\n", "securityContext"},
		} {
			r := s.applyFile(knativeRuntimeManifest("krefused", "knative-runtime:v1", c.extra))
			if r.Code == 0 || !strings.Contains(r.Stderr, c.field) {
				t.Errorf("%s: apply exit %d, stderr %q: want a failure naming %s", c.name, r.Code, r.Stderr, c.field)
			}
		}
		if r := s.cli("service", "get", "krefused"); r.Code == 0 {
			t.Errorf("a refused manifest made service krefused:\n%s", r.Stdout)
		}
	})
}

// permMatches reports whether mode (as "rwxr-xr-x") matches want, where
// * in want matches any character.
func permMatches(mode, want string) bool {
	if len(mode) != len(want) {
		return false
	}
	for i := range want {
		if want[i] != '*' && want[i] != mode[i] {
			return false
		}
	}
	return true
}

var (
	// RFC 7230's token and quoted-string, as RFC 7239 uses them.
	forwardedToken  = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$")
	forwardedQuoted = regexp.MustCompile(`^"(?:[^"\\]|\\.)*"$`)
	forwardedEscape = regexp.MustCompile(`\\(.)`) // a quoted-pair
)

// validForwarded reports whether v is a valid RFC 7239 Forwarded value:
// elements separated by commas, each pairs token=value separated by
// semicolons, each value a token or a quoted string, no pair twice in
// one element.
func validForwarded(v string) bool {
	elems, ok := parseForwarded(v)
	return ok && len(elems) > 0
}

// parseForwarded splits an RFC 7239 Forwarded value into its elements,
// each a map of its pairs (names lower-cased, quoted values unquoted);
// ok is false when v is not valid.
func parseForwarded(v string) (elems []map[string]string, ok bool) {
	for _, el := range splitOutsideQuotes(v, ',') {
		m := map[string]string{}
		for _, pair := range splitOutsideQuotes(el, ';') {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			k, val, found := strings.Cut(pair, "=")
			if !found || !forwardedToken.MatchString(k) {
				return nil, false
			}
			switch {
			case forwardedToken.MatchString(val):
			case forwardedQuoted.MatchString(val):
				val = forwardedEscape.ReplaceAllString(val[1:len(val)-1], "$1")
			default:
				return nil, false
			}
			k = strings.ToLower(k)
			if _, dup := m[k]; dup {
				return nil, false
			}
			m[k] = val
		}
		if len(m) == 0 {
			return nil, false
		}
		elems = append(elems, m)
	}
	return elems, true
}

// splitOutsideQuotes splits s at each sep outside a quoted string.
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestParseForwarded(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []map[string]string
	}{
		{`for=192.0.2.60;proto=http;by=203.0.113.43`, []map[string]string{{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}}},
		{`for="[2001:db8:cafe::17]:4711", For=198.51.100.17`, []map[string]string{{"for": "[2001:db8:cafe::17]:4711"}, {"for": "198.51.100.17"}}},
		{`host="a;b,c"`, []map[string]string{{"host": "a;b,c"}}},
		{`for=unknown;host="x\"y"`, []map[string]string{{"for": "unknown", "host": `x"y`}}},
		{`for=[::1]`, nil},               // a bracket is not a token character: quote it
		{`for=1.2.3.4;for=5.6.7.8`, nil}, // a pair twice in one element
		{`for`, nil},
		{``, nil},
		{`for=1.2.3.4,`, nil},
	} {
		got, ok := parseForwarded(c.in)
		if ok != (c.want != nil) || ok && fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("parseForwarded(%q) = %v, %v; want %v", c.in, got, ok, c.want)
		}
	}
}

// httpbinImage writes, as a `docker save` tarball tagged tag, an image of
// go-httpbin at /app/go-httpbin listening on $PORT, and returns its path.
func httpbinImage(t *testing.T, tag string) string {
	t.Helper()
	body := conformanceTool(t, "httpbin", "github.com/mccutchen/go-httpbin/v2",
		"github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin", "go-httpbin")
	layer, err := layerOf([]layerFile{
		{Name: "app/", Mode: 0o755},
		{Name: "app/go-httpbin", Mode: 0o755, Body: body},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\n")},
		{Name: "tmp/", Mode: 0o1777},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := ggcr.Config{Entrypoint: []string{"/app/go-httpbin"}, Env: []string{"PATH=/app"}, ExposedPorts: map[string]struct{}{"8080/tcp": {}}}
	return writeImageTar(t, imageOf(t, cfg, layer), tag)
}

// httpbinGet is go-httpbin's answer to GET /get: the headers it saw, the
// client address it believes (the first of X-Forwarded-For, else the
// peer) and the URL it rebuilds (scheme from X-Forwarded-Proto).
type httpbinGet struct {
	Headers http.Header `json:"headers"`
	Origin  string      `json:"origin"`
	URL     string      `json:"url"`
}

// httpbinSaw sends GET path (Host host when not empty) with hdr (name,
// value pairs) to s and returns what go-httpbin saw.
func httpbinSaw(t *testing.T, s *server, host, path string, hdr ...string) httpbinGet {
	t.Helper()
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %q): %v", path, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s (Host %q): %v", path, host, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s (Host %q): %d %s\n%s", path, host, resp.StatusCode, body, s.Stderr())
	}
	return decode[httpbinGet](t, body)
}

// TestForwardingHeadersHTTPBin runs go-httpbin as a service and checks
// the forwarding headers it is handed, by a server that trusts no proxy
// (the default), one whose --trusted-proxies names another address, and
// one that trusts its client (127.0.0.1/32): from an untrusted peer every
// one describes the hop to Stratus (a client's own are overwritten); from
// a trusted proxy X-Forwarded-For and Forwarded are appended to and its
// X-Forwarded-Proto, -Host, -Port and -Prefix kept. /svc/NAME adds its
// prefix to X-Forwarded-Prefix; the host route sends none.
func TestForwardingHeadersHTTPBin(t *testing.T) {
	needRunc(t)
	tar := httpbinImage(t, "httpbin:v1")
	// What the client claims: a proxy in front that terminated TLS for
	// 203.0.113.7 on app.example.com and mounted Stratus at /edge.
	claims := []string{
		"X-Forwarded-For", "203.0.113.7",
		"X-Forwarded-Proto", "https",
		"X-Forwarded-Host", "app.example.com",
		"X-Forwarded-Port", "443",
		"X-Forwarded-Prefix", "/edge",
		"Forwarded", `for=203.0.113.7;proto=https;host=app.example.com`,
	}
	for _, c := range []struct {
		name    string
		args    []string
		trusted bool
	}{
		{"default", nil, false},
		{"other-proxy", []string{"--trusted-proxies", "192.0.2.0/24,2001:db8::1"}, false},
		{"trusted", []string{"--trusted-proxies", "127.0.0.1/32"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, c.args...)
			s.mustCLI("image", "import", tar)
			s.mustCLI("service", "deploy", "hb", "--image", "httpbin:v1", "--auth", "none", "--min", "1")
			u, err := url.Parse(s.URL)
			if err != nil {
				t.Fatal(err)
			}
			hostPort, port := u.Host, u.Port()
			// own is this hop's Forwarded element as Stratus must write it.
			own := map[string]string{"for": "127.0.0.1", "proto": "http", "host": hostPort}

			t.Run("plain", func(t *testing.T) {
				// No forwarding headers from the client: each describes the
				// hop to Stratus, whether or not the client is trusted.
				g := httpbinSaw(t, s, "", "/svc/hb/get")
				checkForwarding(t, g, map[string]string{
					"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": hostPort,
					"X-Forwarded-Port": port, "X-Forwarded-Prefix": "/svc/hb",
				}, []map[string]string{own})
				if g.Origin != "127.0.0.1" || g.URL != "http://"+hostPort+"/get" {
					t.Errorf("go-httpbin's client %q and URL %q, want 127.0.0.1 and http://%s/get", g.Origin, g.URL, hostPort)
				}
			})

			t.Run("claims", func(t *testing.T) {
				g := httpbinSaw(t, s, "", "/svc/hb/get", claims...)
				if !c.trusted {
					// Overwritten: nothing the client claimed gets through.
					checkForwarding(t, g, map[string]string{
						"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": hostPort,
						"X-Forwarded-Port": port, "X-Forwarded-Prefix": "/svc/hb",
					}, []map[string]string{own})
					if g.Origin != "127.0.0.1" || !strings.HasPrefix(g.URL, "http://") {
						t.Errorf("go-httpbin believed client %q and URL %q from an untrusted peer", g.Origin, g.URL)
					}
					return
				}
				// Appended and kept: the proxy's view, then this hop.
				checkForwarding(t, g, map[string]string{
					"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https",
					"X-Forwarded-Host": "app.example.com", "X-Forwarded-Port": "443", "X-Forwarded-Prefix": "/edge/svc/hb",
				}, []map[string]string{{"for": "203.0.113.7", "proto": "https", "host": "app.example.com"}, own})
				if g.Origin != "203.0.113.7" || g.URL != "https://"+hostPort+"/get" {
					t.Errorf("go-httpbin's client %q and URL %q, want 203.0.113.7 and https://%s/get", g.Origin, g.URL, hostPort)
				}
			})

			t.Run("host-route", func(t *testing.T) {
				// NAME.localhost cuts no prefix: no X-Forwarded-Prefix of
				// its own.
				g := httpbinSaw(t, s, "hb.localhost", "/get")
				checkForwarding(t, g, map[string]string{
					"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "hb.localhost",
					"X-Forwarded-Prefix": "",
				}, []map[string]string{{"for": "127.0.0.1", "proto": "http", "host": "hb.localhost"}})
				if g.URL != "http://hb.localhost/get" {
					t.Errorf("go-httpbin's URL %q, want http://hb.localhost/get", g.URL)
				}
			})
		})
	}
}

// checkForwarding checks the forwarding headers go-httpbin saw: each of
// want's headers has exactly its value ("" for absent), and Forwarded is
// one valid header whose elements hold the pairs of each of fwd, in
// order (an element may hold more pairs, such as by=).
func checkForwarding(t *testing.T, g httpbinGet, want map[string]string, fwd []map[string]string) {
	t.Helper()
	for k, w := range want {
		got := g.Headers[k]
		if w == "" && len(got) != 0 || w != "" && (len(got) != 1 || got[0] != w) {
			t.Errorf("%s: %q, want %q", k, got, w)
		}
	}
	vs := g.Headers["Forwarded"]
	if len(vs) != 1 {
		t.Errorf("Forwarded: %q, want one header", vs)
		return
	}
	elems, ok := parseForwarded(vs[0])
	if !ok || len(elems) != len(fwd) {
		t.Errorf("Forwarded: %q, want %d valid elements with %v", vs[0], len(fwd), fwd)
		return
	}
	for i, w := range fwd {
		for k, v := range w {
			if elems[i][k] != v {
				t.Errorf("Forwarded: %q: element %d has %s=%q, want %q", vs[0], i, k, elems[i][k], v)
			}
		}
	}
}
