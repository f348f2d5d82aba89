package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/clustertest"
	"github.com/stratus-run/stratus/internal/eventually"
)

// Timings of a cluster node, as the servers document them: a heartbeat
// every 2 s, dead after 10 s without one, leases of 10 s.
const (
	clusterDeadAfter = 10 * time.Second
	clusterLeaseTTL  = 10 * time.Second
)

// cluster is several stratus servers (nodes) sharing one PostgreSQL
// database and one three-node NATS cluster, each with its own data dir
// and loopback port, as an operator runs them.
type cluster struct {
	t     *testing.T
	pg    *clustertest.Postgres
	nats  *clustertest.NATSCluster
	store string    // the database's URL, --store
	nodes []*server // nodes[i] is named names[i]
	names []string
}

// startCluster starts PostgreSQL (one database), a NATS cluster of
// three and n servers on them named node-a, node-b..., each with args
// added, and waits until every server lists every node alive and ready.
// The servers are stopped together (SIGTERM to all, then each is waited
// for) before the engines.
func startCluster(t *testing.T, n int, args ...string) *cluster {
	t.Helper()
	needRunc(t)
	c := &cluster{t: t}
	begin := time.Now()
	c.pg = clustertest.StartPostgres(t)
	c.store = c.pg.CreateDB(t)
	pgUp := time.Since(begin)
	c.nats = clustertest.StartNATSCluster(t, 3)
	natsUp := time.Since(begin) - pgUp
	t.Logf("MEASURED engines up: PostgreSQL %s, NATS cluster of 3 %s", pgUp.Round(time.Millisecond), natsUp.Round(time.Millisecond))
	// Runs after the servers' Stop (cleanups run last first): what they
	// logged, when the test failed.
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range c.nodes {
				t.Logf("server %s log (warnings, errors and the last lines):\n%s", c.names[i], logDigest(s.Stderr(), 80, 25))
			}
		}
	})
	for i := range n {
		name := "node-" + string(rune('a'+i))
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		argv := append([]string{"--listen", addr, "--advertise", "http://" + addr,
			"--store", c.store, "--nats-url", c.nats.URL(), "--node-name", name}, args...)
		c.nodes = append(c.nodes, startServer(t, argv...))
		c.names = append(c.names, name)
	}
	t.Cleanup(func() {
		// Stop every node at once: stopped one by one, each would hand
		// its work to the next one to stop.
		for _, s := range c.nodes {
			select {
			case <-s.done:
			default:
				_ = s.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
	})
	c.waitAllReady(60 * time.Second)
	t.Logf("MEASURED cluster start: %d servers ready %s after the engines (total %s)",
		n, (time.Since(begin) - pgUp - natsUp).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	return c
}

// logDigest is the WARN and ERROR lines of a server log (at most
// maxProblems, the last ones) and its last tail lines.
func logDigest(log string, maxProblems, tail int) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var problems []string
	for _, l := range lines {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
			problems = append(problems, l)
		}
	}
	if len(problems) > maxProblems {
		problems = problems[len(problems)-maxProblems:]
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	return "--- warnings and errors:\n" + strings.Join(problems, "\n") + "\n--- last lines:\n" + strings.Join(lines, "\n")
}

// waitAllReady waits until every node lists every node alive and
// "ready" with a fresh heartbeat.
func (c *cluster) waitAllReady(timeout time.Duration) {
	c.t.Helper()
	for i, s := range c.nodes {
		eventually.Nil(c.t, timeout, "server "+c.names[i]+" to list every node alive and ready", func() error {
			nodes, err := tryNodes(s)
			if errors.Is(err, errNoNodes) {
				c.t.Fatalf("server %s: %v", c.names[i], err)
			}
			if err != nil {
				return err
			}
			return checkNodes(nodes, c.names, nil)
		})
	}
}

// checkNodes checks that nodes are exactly names, by name, each alive and
// ready with a heartbeat under 5 s old, except those in dead, which must
// be listed not alive.
func checkNodes(nodes []v1.Node, names []string, dead map[string]bool) error {
	var got []string
	for _, n := range nodes {
		got = append(got, n.Name)
	}
	if !slices.Equal(got, names) {
		return fmt.Errorf("nodes %v, want %v", got, names)
	}
	for _, n := range nodes {
		switch {
		case dead[n.Name] && n.Alive:
			return fmt.Errorf("node %s alive (heartbeat %.1fs ago, state %q), want dead", n.Name, n.HeartbeatAgeSec, n.State)
		case dead[n.Name]:
		case !n.Alive || n.State != "ready" || n.HeartbeatAgeSec > 5:
			return fmt.Errorf("node %s: alive %v, state %q, heartbeat %.1fs ago; want alive, ready, heartbeat under 5s", n.Name, n.Alive, n.State, n.HeartbeatAgeSec)
		}
	}
	return nil
}

// clusterClient is the client of the calls made off the test goroutine:
// bounded, so that a call to a server that hangs fails instead of the
// test.
var clusterClient = &http.Client{Timeout: 90 * time.Second}

// tryDo sends a request with the token to s and reports any failure in
// the answer instead of failing the test; safe from any goroutine.
func tryDo(s *server, method, path string, body []byte, hdr ...string) callResult {
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(string(body)))
	if err != nil {
		return callResult{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := clusterClient.Do(req)
	if err != nil {
		return callResult{Err: err, Elapsed: time.Since(start), End: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return callResult{Status: resp.StatusCode, Header: resp.Header, Body: b, Elapsed: time.Since(start), End: time.Now(), Err: err}
}

// tryCall invokes fn synchronously on s; safe from any goroutine.
func tryCall(s *server, fn, event string) callResult {
	return tryDo(s, "POST", "/v1/functions/"+fn+"/invoke", []byte(event))
}

// ok reports whether a call answered 200 without a function error.
func (c callResult) ok() bool { return c.Err == nil && c.Status == 200 && c.FunctionError() == "" }

// tryEnqueue sends an async invoke of fn to s and returns the request ID
// of a 202; safe from any goroutine.
func tryEnqueue(s *server, fn, event string) (string, callResult) {
	r := tryDo(s, "POST", "/v1/functions/"+fn+"/invoke", []byte(event), "X-Invocation-Type", "Event")
	if r.Err != nil || r.Status != http.StatusAccepted {
		return "", r
	}
	var a struct {
		RequestID string `json:"requestId"`
	}
	if err := json.Unmarshal(r.Body, &a); err != nil || a.RequestID == "" {
		r.Err = fmt.Errorf("202 without a request id: %s", r.Body)
		return "", r
	}
	return a.RequestID, r
}

// errNoNodes is a server without GET /v1/nodes: not a cluster node.
var errNoNodes = errors.New("the server has no nodes endpoint")

// tryNodes is GET /v1/nodes on s.
func tryNodes(s *server) ([]v1.Node, error) {
	r := tryDo(s, "GET", "/v1/nodes", nil)
	if r.Err != nil {
		return nil, r.Err
	}
	if r.Status == http.StatusNotFound {
		return nil, fmt.Errorf("GET /v1/nodes: %s: %w", r.Body, errNoNodes)
	}
	if r.Status != 200 {
		return nil, fmt.Errorf("GET /v1/nodes: %d %s", r.Status, r.Body)
	}
	var l v1.NodeList
	if err := json.Unmarshal(r.Body, &l); err != nil {
		return nil, fmt.Errorf("GET /v1/nodes: %v: %s", err, r.Body)
	}
	return l.Nodes, nil
}

// tryStatus is GET /v1/invocations/ID on s: the async invocation's state,
// "" while s does not know it.
func tryStatus(s *server, id string) (asyncStatus, error) {
	r := tryDo(s, "GET", "/v1/invocations/"+id, nil)
	if r.Err != nil {
		return asyncStatus{}, r.Err
	}
	if r.Status == 404 {
		return asyncStatus{}, nil
	}
	if r.Status != 200 {
		return asyncStatus{}, fmt.Errorf("GET /v1/invocations/%s: %d %s", id, r.Status, r.Body)
	}
	var st asyncStatus
	err := json.Unmarshal(r.Body, &st)
	return st, err
}

// waitFinal waits until every async invocation in ids has a final state
// (succeeded or failed) as s shows it, and returns the states.
func waitFinal(t *testing.T, s *server, ids []string, timeout time.Duration) map[string]asyncStatus {
	t.Helper()
	final := map[string]asyncStatus{}
	eventually.Nil(t, timeout, fmt.Sprintf("the %d accepted events to reach a final status", len(ids)), func() error {
		var pending []string
		for _, id := range ids {
			if _, done := final[id]; done {
				continue
			}
			st, err := tryStatus(s, id)
			if err != nil {
				return err
			}
			if st.State == "succeeded" || st.State == "failed" {
				final[id] = st
				continue
			}
			pending = append(pending, id+" ("+cmpOr(st.State, "unknown")+")")
		}
		if len(pending) > 0 {
			return fmt.Errorf("%d not final yet, first %v", len(pending), pending[:min(5, len(pending))])
		}
		return nil
	})
	return final
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// functionStartedUnder counts the started instances (as startedUnder
// counts them) of function fn under data dir dir.
func functionStartedUnder(dir, fn string) int {
	seen := map[string]bool{}
	for _, p := range instanceProcesses(dir) {
		if p.init || p.argv0 == "" || filepath.Base(p.argv0) == "runc" || parkedOnStart(p.pid) {
			continue
		}
		env, _ := os.ReadFile(filepath.Join("/proc", p.pid, "environ"))
		if slices.Contains(strings.Split(string(env), "\x00"), "AWS_LAMBDA_FUNCTION_NAME="+fn) {
			seen[p.instance] = true
		}
	}
	return len(seen)
}

// runningOn returns the index of the one node that runs started
// instances of fn, or -1 when none or several do.
func (c *cluster) runningOn(fn string) int {
	at := -1
	for i, s := range c.nodes {
		if functionStartedUnder(s.Data, fn) > 0 {
			if at >= 0 {
				return -1
			}
			at = i
		}
	}
	return at
}

// waitServed waits until every node answers a call of fn with event
// (default {}) without an error.
func (c *cluster) waitServed(fn string, event ...string) {
	c.t.Helper()
	for i, s := range c.nodes {
		eventually.Nil(c.t, 30*time.Second, c.names[i]+" to serve "+fn, func() error {
			if r := tryCall(s, fn, strings.Join(append(event, "{}")[:1], "")); !r.ok() {
				return fmt.Errorf("last answer: %s", r)
			}
			return nil
		})
	}
}

// others returns the nodes but nodes[i].
func (c *cluster) others(i int) []*server {
	var out []*server
	for j, s := range c.nodes {
		if j != i {
			out = append(out, s)
		}
	}
	return out
}

// streamLeader returns the index of the NATS node leading JetStream
// stream name (the harness names node i "n" and i+1).
func (c *cluster) streamLeader(name string) int {
	c.t.Helper()
	nc, err := nats.Connect(c.nats.URL())
	if err != nil {
		c.t.Fatalf("connect to the NATS cluster: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		c.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		c.t.Fatalf("stream %s: %v", name, err)
	}
	if info.Cluster == nil || !strings.HasPrefix(info.Cluster.Leader, "n") {
		c.t.Fatalf("stream %s has no leader named n1..n3: %+v", name, info.Cluster)
	}
	var i int
	if _, err := fmt.Sscanf(info.Cluster.Leader, "n%d", &i); err != nil || i < 1 || i > c.nats.Size() {
		c.t.Fatalf("stream %s leader %q", name, info.Cluster.Leader)
	}
	c.t.Logf("stream %s: leader %s, replicas %d", name, info.Cluster.Leader, info.Config.Replicas)
	if info.Config.Replicas != 3 {
		c.t.Errorf("stream %s has %d replicas on a NATS cluster of 3, want 3", name, info.Config.Replicas)
	}
	return i - 1
}

// maxGap returns the longest time between consecutive times in ts
// (sorted here) that ends after from, and the first time after from.
func maxGap(ts []time.Time, from time.Time) (gap time.Duration, first time.Time) {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	for i, x := range ts {
		if x.After(from) {
			if first.IsZero() {
				first = x
			}
			if i > 0 {
				gap = max(gap, x.Sub(ts[i-1]))
			}
		}
	}
	return gap, first
}
