package sandboxtest

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// testHostname: with Capabilities.Hostname, a sandbox's hostname is its
// Spec.Hostname, and its /etc/hosts maps that name to an address and
// localhost to the loopback ones; without Spec.Hostname it has the
// driver's default, which resolves too (an address literal resolves to
// itself). A hostname that could break /etc/hosts is refused.
func testHostname(t *testing.T, h *harness) {
	if !h.d.Capabilities().Hostname {
		t.Skipf("the %s driver has no Hostname capability", h.d.Name())
	}
	script := `cat /proc/sys/kernel/hostname; echo ---; cat /etc/hosts`
	name := "sbxtest-" + randomHex(4)
	for _, tc := range []struct{ id, hostname string }{{"named", name}, {"default", ""}} {
		spec := h.spec(tc.id, script)
		spec.Hostname = tc.hostname
		var stdout, stderr Buffer
		spec.Stdout, spec.Stderr = &stdout, &stderr
		h.start(h.d, spec)
		if e := h.wait(h.d, tc.id); e.Code != 0 {
			t.Fatalf("%s: Exit = %+v, stdout %q, stderr %q", tc.id, e, stdout.String(), stderr.String())
		}
		got, hosts, _ := strings.Cut(stdout.String(), "---\n")
		got = strings.TrimSpace(got)
		if tc.hostname != "" && got != tc.hostname {
			t.Errorf("%s: hostname %q, want %q", tc.id, got, tc.hostname)
		}
		if got == "" {
			t.Errorf("%s: empty hostname", tc.id)
			continue
		}
		resolved := hostsLookup(hosts)
		if a := resolved["localhost"]; !a.IsLoopback() {
			t.Errorf("%s: /etc/hosts resolves localhost to %v, want a loopback address:\n%s", tc.id, a, hosts)
		}
		if _, err := netip.ParseAddr(got); err == nil && tc.hostname == "" {
			continue // an address literal needs no entry
		}
		if a, ok := resolved[got]; !ok || !a.IsValid() {
			t.Errorf("%s: /etc/hosts does not resolve the hostname %q:\n%s", tc.id, got, hosts)
		}
	}

	for _, bad := range []string{"a\nb", "-lead", strings.Repeat("x", sandbox.MaxHostnameLen+1), "sp ace", "tab\tname"} {
		spec := h.spec("bad-hostname", "exit 0")
		spec.Hostname = bad
		if err := h.d.Start(h.ctx, spec); !errors.Is(err, stratus.ErrInvalid) {
			_ = h.d.Stop(h.ctx, spec.ID, 0)
			t.Errorf("Start with hostname %q: err = %v, want ErrInvalid", bad, err)
		}
	}
}

// hostsLookup reads an /etc/hosts: each name to its first address.
func hostsLookup(hosts string) map[string]netip.Addr {
	m := make(map[string]netip.Addr)
	for line := range strings.Lines(hosts) {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		a, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, n := range f[1:] {
			if _, ok := m[n]; !ok {
				m[n] = a
			}
		}
	}
	return m
}

// testTmp: in a root filesystem of its own, a sandbox's /tmp is a
// world-writable sticky folder (1777, as the Knative runtime contract and
// every Linux distribution have it) whether the image has no /tmp (a
// scratch or distroless image) or one of another mode, and a program that
// runs as an unprivileged user (uid 65532, a distroless image's nonroot,
// where the driver sets users) writes to it. Drivers that bind the root
// read-only (Capabilities.Mounts) give the sandbox its /tmp; the process
// driver's chroot has the root's own.
func testTmp(t *testing.T, h *harness) {
	caps := h.d.Capabilities()
	if !caps.RootFS || !caps.Mounts {
		t.Skipf("the %s driver gives a root filesystem no /tmp of its own", h.d.Name())
	}
	noTmp := NewRootFS(t, nil)
	tmp0755 := NewRootFS(t, nil)
	if err := os.Mkdir(filepath.Join(tmp0755, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, root string }{{"no-tmp", noTmp}, {"tmp-0755", tmp0755}} {
		spec := h.spec(tc.id, "")
		spec.RootFS = tc.root
		spec.Argv = []string{ProbeName, "ids", "write:/tmp/probe", "stat:/tmp", "stat:/tmp/probe"}
		spec.Env = []string{"PATH=/bin", h.marker}
		spec.Dir = "/work"
		wantIDs := ""
		if caps.Users {
			spec.User = &sandbox.User{UID: 65532, GID: 65532}
			wantIDs = "65532:65532"
		}
		var stdout, stderr Buffer
		spec.Stdout, spec.Stderr = &stdout, &stderr
		h.start(h.d, spec)
		if e := h.wait(h.d, tc.id); e.Code != 0 {
			t.Fatalf("%s: Exit = %+v, stdout %q, stderr %q", tc.id, e, stdout.String(), stderr.String())
		}
		got := probeResults(stdout.String())
		want := map[string]string{
			"write:/tmp/probe": "ok",
			"stat:/tmp":        "dir 1777",
			"stat:/tmp/probe":  "file 644",
		}
		if wantIDs != "" {
			want["ids"] = wantIDs
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: probe %s = %q, want %q (stderr %q)", tc.id, k, got[k], v, stderr.String())
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(noTmp, "tmp")); err == nil {
		t.Errorf("the sandbox made /tmp in the root folder it was given")
	}
}
