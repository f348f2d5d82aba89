package runc_test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/sandboxtest"
)

// TestHostname: a sandbox's /etc/hosts maps its hostname to its own
// address (Addr), as Docker's and a pod's do; without Spec.Hostname the
// hostname is that address (Lambda's hostnames are their environment's
// address). The host's /etc/hosts is left as it was.
func TestHostname(t *testing.T) {
	d := newDriver(t, t.TempDir())
	hostHosts, err := os.ReadFile("/etc/hosts")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct{ id, hostname string }{{"web-1-0a1b2c3d", "web-1-0a1b2c3d"}, {"fn-default", ""}} {
		t.Run(tc.id, func(t *testing.T) {
			var out sandboxtest.Buffer
			err := d.Start(ctx, sandbox.Spec{
				ID: tc.id, Hostname: tc.hostname, Dir: "/", MemoryMB: 64,
				Argv:   []string{"/bin/sh", "-c", `cat /proc/sys/kernel/hostname; cat /etc/hosts; echo end; exec sleep 1000`},
				Env:    []string{"PATH=/usr/bin:/bin"},
				Stdout: &out, Stderr: &out,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Stop(context.Background(), tc.id, 0) })
			out.WaitFor(t, "end\n")
			addr, err := d.Addr(ctx, tc.id)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(out.String(), "\n")
			want := tc.hostname
			if want == "" {
				want = addr.String()
			}
			if lines[0] != want {
				t.Errorf("hostname %q, want %q", lines[0], want)
			}
			hosts := strings.Join(lines[1:], "\n")
			if tc.hostname != "" && !strings.Contains(hosts, addr.String()+"\t"+tc.hostname+"\n") {
				t.Errorf("/etc/hosts does not map %s to %s:\n%s", tc.hostname, addr, hosts)
			}
			for _, l := range []string{"127.0.0.1\tlocalhost\n", "::1\tlocalhost"} {
				if !strings.Contains(hosts, l) {
					t.Errorf("/etc/hosts has no %q:\n%s", l, hosts)
				}
			}
		})
	}
	if b, _ := os.ReadFile("/etc/hosts"); string(b) != string(hostHosts) {
		t.Errorf("the host's /etc/hosts changed:\n%s", b)
	}
}

// TestUnprivilegedPort: a program running as an unprivileged user
// (65532, with no capability) listens on port 80 of its sandbox and the
// host reaches it there; the host's own threshold is untouched.
func TestUnprivilegedPort(t *testing.T) {
	d := newDriver(t, t.TempDir())
	const sysctl = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
	before, err := os.ReadFile(sysctl)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out sandboxtest.Buffer
	err = d.Start(ctx, sandbox.Spec{
		ID: "port80", RootFS: sandboxtest.NewRootFS(t, nil), Dir: "/work", MemoryMB: 64,
		Argv:   []string{sandboxtest.ProbeName, "ids", "serve:80"},
		Env:    []string{"PATH=/bin"},
		User:   &sandbox.User{UID: 65532, GID: 65532},
		Stdout: &out, Stderr: &out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background(), "port80", 0) })
	out.WaitFor(t, "serve:80: ")
	if !strings.Contains(out.String(), "ids: 65532:65532\n") || !strings.Contains(out.String(), "serve:80: ok\n") {
		t.Fatalf("probe output %q, want it to run as 65532:65532 and listen on :80", out.String())
	}
	addr, err := d.Addr(ctx, "port80")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, 80).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "pong\n" {
		t.Errorf("read from %s:80: %q, %v; want pong", addr, line, err)
	}
	if after, _ := os.ReadFile(sysctl); string(after) != string(before) {
		t.Errorf("the host's %s changed from %q to %q", sysctl, before, after)
	}
}
