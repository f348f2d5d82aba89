package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePorts returns n distinct free loopback TCP ports. They are free when
// returned; nothing holds them until a process listens. They are taken
// below the kernel's ephemeral range, which outgoing connections and
// listeners on port 0 draw from: a process restarted on its old port
// (NATSCluster.Start) would otherwise find it taken by a connection's
// local end.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	low, high := portRange()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("find %d free ports in %d-%d: found %d in %d tries", n, low, high, len(ports), tries)
		}
		p := low + rand.IntN(high-low)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // taken
		}
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports
}

// portRange is the range FreePorts draws from: from 10000 up to the start
// of the ephemeral range (net.ipv4.ip_local_port_range), or to 32768, its
// usual start, when that cannot be read or leaves too little room.
func portRange() (low, high int) {
	low, high = 10000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return low, high
	}
	if f := strings.Fields(string(b)); len(f) == 2 {
		if start, err := strconv.Atoi(f[0]); err == nil && start-low >= 4096 {
			high = start
		}
	}
	return low, high
}

// GetOK sends GET url with client and returns nil when it answers 200 OK,
// else an error with the status and the end of the body: a readiness
// check of a process under test.
func GetOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, LastLines(body, 5))
	}
	return nil
}

// LastLines returns the last n lines of b (a process's log, an answer's
// body), trailing white space left out.
func LastLines(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, " \t\r\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
