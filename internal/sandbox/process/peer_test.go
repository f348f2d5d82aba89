package process_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/sandbox"
	"github.com/stratus-run/stratus/internal/sandbox/process"
)

// BenchmarkOwns measures one Owns check of a connection from a sandbox's
// main process (the common case: a runtime connects to its Runtime API),
// from a process it forked, and from the host (refused after a look at
// every process).
func BenchmarkOwns(b *testing.B) {
	if _, err := exec.LookPath("bash"); err != nil {
		b.Skip("bash is not installed")
	}
	d, err := process.New(process.Config{StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	ctx := context.Background()
	// connect starts a sandbox running script (which connects to the
	// listener) and returns the host's end of its connection.
	connect := func(id, script string) net.Conn {
		err := d.Start(ctx, sandbox.Spec{
			ID: id, Argv: []string{"bash", "-c", script, port},
			Env: []string{"PATH=/usr/bin:/bin"}, Dir: b.TempDir(),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = d.Stop(ctx, id, 0) })
		_ = l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		c, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	leader := connect("leader", `exec 3<>/dev/tcp/127.0.0.1/$0; exec sleep 1000`)
	child := connect("child", `bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0; exec sleep 1000' $0; exit`)
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	host, err := l.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()

	for _, bc := range []struct {
		name, id string
		conn     net.Conn
		want     bool
	}{
		{"MainProcess", "leader", leader, true},
		{"ForkedProcess", "child", child, true},
		{"Host", "leader", host, false},
	} {
		local := bc.conn.LocalAddr().(*net.TCPAddr).AddrPort()
		remote := bc.conn.RemoteAddr().(*net.TCPAddr).AddrPort()
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				ok, err := d.Owns(ctx, bc.id, local, remote)
				if err != nil || ok != bc.want {
					b.Fatalf("Owns(%s, %s) = %v, %v; want %v", bc.id, remote, ok, err, bc.want)
				}
			}
		})
	}
}
