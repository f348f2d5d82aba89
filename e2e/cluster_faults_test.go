package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/internal/events"
	"github.com/stratus-run/stratus/internal/eventually"
)

// loadCall is one call of a load: to which node, when it was sent, what
// came back; for an async accept, the request ID of its 202.
type loadCall struct {
	node  int
	start time.Time
	id    string
	r     callResult
}

// clusterLoad sends sync calls and async invokes of fn to the nodes of a
// cluster from several goroutines until stopped: sync workers per node
// call in a loop, one async sender per node sends every asyncEvery. A
// node marked down gets nothing more once its calls in flight end.
type clusterLoad struct {
	c    *cluster
	fn   string
	stop chan struct{}
	wg   sync.WaitGroup
	down atomic.Int32 // index of the node to spare, -1 for none
	seq  atomic.Int64

	mu      sync.Mutex
	sync    []loadCall
	accepts []loadCall
}

func startLoad(c *cluster, fn string, syncWorkers int, asyncEvery time.Duration, maxEvents int) *clusterLoad {
	l := &clusterLoad{c: c, fn: fn, stop: make(chan struct{})}
	l.down.Store(-1)
	for node := range c.nodes {
		for range syncWorkers {
			l.wg.Go(func() {
				for l.running(node) {
					start := time.Now()
					r := tryCall(c.nodes[node], fn, `{"sleep":20}`)
					l.mu.Lock()
					l.sync = append(l.sync, loadCall{node: node, start: start, r: r})
					l.mu.Unlock()
				}
			})
		}
		if asyncEvery <= 0 {
			continue
		}
		l.wg.Go(func() {
			tick := time.NewTicker(asyncEvery)
			defer tick.Stop()
			for l.running(node) {
				n := l.seq.Add(1)
				if n > int64(maxEvents) {
					return
				}
				start := time.Now()
				id, r := tryEnqueue(c.nodes[node], fn, `{"sleep":20,"echo":`+strconv.FormatInt(n, 10)+`}`)
				l.mu.Lock()
				l.accepts = append(l.accepts, loadCall{node: node, start: start, id: id, r: r})
				l.mu.Unlock()
				select {
				case <-l.stop:
				case <-tick.C:
				}
			}
		})
	}
	return l
}

func (l *clusterLoad) running(node int) bool {
	select {
	case <-l.stop:
		return false
	default:
		return int(l.down.Load()) != node
	}
}

// Stop ends the load and waits for its calls in flight.
func (l *clusterLoad) Stop() {
	close(l.stop)
	l.wg.Wait()
}

// count counts the calls (sync, or async accepts) that answered as they
// should (200, or 202), were sent after from, to a node keep accepts.
func (l *clusterLoad) count(async bool, from time.Time, keep func(node int) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	calls := l.sync
	if async {
		calls = l.accepts
	}
	n := 0
	for _, x := range calls {
		if x.start.After(from) && keep(x.node) && (async && x.id != "" || !async && x.r.ok()) {
			n++
		}
	}
	return n
}

func anyNode(int) bool { return true }

// describe says which node accepted event id and when, relative to at,
// and its status as s shows it.
func (l *clusterLoad) describe(s *server, at time.Time) func(id string) string {
	return func(id string) string {
		l.mu.Lock()
		var x loadCall
		for _, a := range l.accepts {
			if a.id == id {
				x = a
			}
		}
		l.mu.Unlock()
		st, err := tryStatus(s, id)
		return fmt.Sprintf("%s accepted by %s at %+.3fs: status %+v %v", id, l.c.names[x.node], x.start.Sub(at).Seconds(), st, err)
	}
}

// acceptedIDs returns the request IDs of every 202.
func (l *clusterLoad) acceptedIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, x := range l.accepts {
		if x.id != "" {
			ids = append(ids, x.id)
		}
	}
	return ids
}

// checkRanOnce checks that every id has a success record of fn, as s
// reads them; describe says more of an id that has none.
func checkRanOnce(t *testing.T, s *server, fn string, ids []string, describe func(id string) string) {
	t.Helper()
	eventually.Nil(t, 20*time.Second, "a success record of every accepted event", func() error {
		succ := map[string]int{}
		for _, r := range s.records(fn) {
			if r.Outcome == "success" {
				succ[r.RequestID]++
			}
		}
		var missing []string
		twice := 0
		for _, id := range ids {
			switch {
			case succ[id] == 0:
				missing = append(missing, describe(id))
			case succ[id] > 1:
				twice++
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d accepted events have no success record; first ones:\n%s",
				len(missing), len(ids), strings.Join(missing[:min(5, len(missing))], "\n"))
		}
		if twice > 0 {
			// At least once is the promise; say how often it was more.
			t.Logf("%d of %d events ran more than once", twice, len(ids))
		}
		return nil
	})
}

// TestClusterKillServerUnderLoad kills with SIGKILL the server that owns a
// function while sync calls and async invokes of it go to all three:
// calls in flight on it may fail, every other call succeeds, every
// accepted async event reaches a final status and has the record of its
// successful attempt, and the killed server, restarted, joins again.
func TestClusterKillServerUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	c.nodes[0].mustCLI("deploy", "work", "--runtime", "provided", "--max-concurrency", "6", fixture("goecho"))
	c.waitServed("work")
	l := startLoad(c, "work", 2, 100*time.Millisecond, 400)
	stopped := false
	defer func() {
		if !stopped {
			l.Stop()
		}
	}()
	began := time.Now()
	eventually.True(t, 30*time.Second, "the load to run", func() bool {
		return l.count(false, began, anyNode) >= 30 && l.count(true, began, anyNode) >= 10
	})
	var owner int
	eventually.Nil(t, 10*time.Second, "one server to run work's instances", func() error {
		if owner = c.runningOn("work"); owner < 0 {
			var on []string
			for i, s := range c.nodes {
				on = append(on, fmt.Sprintf("%s: %d", c.names[i], functionStartedUnder(s.Data, "work")))
			}
			return fmt.Errorf("instances of work by server: %v", on)
		}
		return nil
	})
	l.down.Store(int32(owner))
	killing := time.Now()
	c.nodes[owner].Kill()
	killed := time.Now()
	survivors := c.others(owner)
	survivor := func(node int) bool { return node != owner }
	t.Logf("killed %s, the owner of work, under load", c.names[owner])

	// The load goes on until the killed node shows dead and the survivors
	// served 20 calls begun after that.
	var deadAt time.Time
	eventually.Nil(t, clusterDeadAfter+clusterLeaseTTL+30*time.Second, "the survivors to serve calls after the failover", func() error {
		if deadAt.IsZero() {
			nodes, err := tryNodes(survivors[0])
			if err != nil {
				return err
			}
			if err := checkNodes(nodes, c.names, map[string]bool{c.names[owner]: true}); err != nil {
				return err
			}
			deadAt = time.Now()
		}
		if n := l.count(false, deadAt, survivor); n < 20 {
			return fmt.Errorf("%d calls begun after the kill served", n)
		}
		return nil
	})
	l.Stop()
	stopped = true

	// Sync calls: on the killed node anything goes; on the survivors, a
	// call in flight at the kill may have been forwarded to it; any other
	// must succeed.
	var inFlight, inFlightFailed, onKilled, after int
	var failures []string
	var servedAfter []time.Time
	for _, x := range l.sync {
		switch {
		case x.node == owner:
			onKilled++
		case x.r.ok():
			if x.start.After(killed) {
				servedAfter = append(servedAfter, x.r.End)
				after++
			} else if x.r.End.After(killed) {
				inFlight++
			}
		case x.start.Before(killed) && x.r.End.After(killing):
			inFlight++
			inFlightFailed++
			t.Logf("in flight at the kill, failed: %s at %+.3fs: %s", c.names[x.node], x.start.Sub(killed).Seconds(), x.r)
		default:
			failures = append(failures, fmt.Sprintf("%s at %+.3fs from the kill: %s", c.names[x.node], x.start.Sub(killed).Seconds(), x.r))
		}
	}
	gap, first := maxGap(servedAfter, killed)
	t.Logf("MEASURED server SIGKILL under load: %d sync calls in all, %d to the killed node, %d in flight on survivors at the kill (%d failed), %d served after it; first served %s after the kill, longest gap between served calls %s; dead seen after %s",
		len(l.sync), onKilled, inFlight, inFlightFailed, after, first.Sub(killed).Round(time.Millisecond), gap.Round(time.Millisecond), deadAt.Sub(killed).Round(time.Millisecond))
	if len(failures) > 0 {
		t.Errorf("%d sync calls to surviving servers failed (neither in flight at the kill nor sent to the killed server); first ones:\n%s",
			len(failures), strings.Join(failures[:min(10, len(failures))], "\n"))
	}

	// Async accepts on the survivors all succeeded; every accepted event
	// reaches a final status.
	var refused []string
	for _, x := range l.accepts {
		if x.id == "" && x.node != owner && !(x.start.Before(killed) && x.r.End.After(killing)) {
			refused = append(refused, fmt.Sprintf("%s at %+.3fs: %s", c.names[x.node], x.start.Sub(killed).Seconds(), x.r))
		}
	}
	if len(refused) > 0 {
		t.Errorf("%d async invokes to surviving servers were not accepted; first ones:\n%s", len(refused), strings.Join(refused[:min(10, len(refused))], "\n"))
	}
	ids := l.acceptedIDs()
	final := waitFinal(t, survivors[0], ids, 2*time.Minute)
	failed := 0
	for _, st := range final {
		if st.State != "succeeded" {
			failed++
			if failed <= 5 {
				t.Errorf("event %s: %+v, want succeeded", st.RequestID, st)
			}
		}
	}
	t.Logf("MEASURED %d accepted events all final %s after the kill (%d failed)", len(ids), time.Since(killed).Round(time.Millisecond), failed)

	c.nodes[owner].Restart()
	c.waitAllReady(60 * time.Second)
	if r := tryCall(c.nodes[owner], "work", `{}`); !r.ok() {
		t.Errorf("work on the restarted %s: %s", c.names[owner], r)
	}

	// A finished attempt leaves its record, whichever server ran it.
	checkRanOnce(t, survivors[1], "work", ids, l.describe(survivors[1], killed))
}

// TestClusterKillNATSNodeUnderLoad kills the NATS node leading the async
// stream while async invokes go to the three servers: nothing accepted is
// lost, and accepts resume within a bounded time.
func TestClusterKillNATSNodeUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	c.nodes[0].mustCLI("deploy", "work", "--runtime", "provided", "--max-concurrency", "6", fixture("goecho"))
	c.waitServed("work")
	c.nodes[1].waitState(c.nodes[1].enqueue("work", `{}`), "succeeded", 30*time.Second)
	leader := c.streamLeader(events.AsyncStream)

	l := startLoad(c, "work", 0, 50*time.Millisecond, 1000)
	stopped := false
	defer func() {
		if !stopped {
			l.Stop()
		}
	}()
	began := time.Now()
	eventually.True(t, 30*time.Second, "the load to run", func() bool { return l.count(true, began, anyNode) >= 15 })
	c.nats.Kill(t, leader)
	killed := time.Now()
	t.Logf("killed NATS node n%d, the leader of %s", leader+1, events.AsyncStream)
	eventually.Nil(t, 60*time.Second, "accepts on every server after the kill", func() error {
		for i := range c.nodes {
			if n := l.count(true, killed, func(node int) bool { return node == i }); n < 5 {
				return fmt.Errorf("%s accepted %d events sent after the kill", c.names[i], n)
			}
		}
		return nil
	})
	l.Stop()
	stopped = true

	var worst time.Duration
	refused := map[string]int{}
	for i := range c.nodes {
		var ok []time.Time
		var slowest time.Duration
		for _, x := range l.accepts {
			if x.node != i {
				continue
			}
			if x.id != "" {
				ok = append(ok, x.r.End)
				if x.r.End.After(killed) {
					slowest = max(slowest, x.r.Elapsed)
				}
			} else if x.start.After(killed.Add(-time.Second)) {
				refused[fmt.Sprintf("%d %s", x.r.Status, firstLine(x.r))]++
			}
		}
		gap, first := maxGap(ok, killed)
		resume := first.Sub(killed)
		worst = max(worst, gap)
		t.Logf("MEASURED NATS node kill, %s: first accept %s after the kill, longest gap between accepts %s, slowest accept after the kill %s",
			c.names[i], resume.Round(time.Millisecond), gap.Round(time.Millisecond), slowest.Round(time.Millisecond))
	}
	if len(refused) > 0 {
		t.Logf("async invokes not accepted around the kill, by answer: %v", refused)
	}
	if worst > 15*time.Second {
		t.Errorf("accepts stopped for %s after a NATS node was killed, want within 15s", worst)
	}

	ids := l.acceptedIDs()
	final := waitFinal(t, c.nodes[2], ids, 2*time.Minute)
	failed := 0
	for _, st := range final {
		if st.State != "succeeded" {
			failed++
			if failed <= 5 {
				t.Errorf("event %s: %+v, want succeeded", st.RequestID, st)
			}
		}
	}
	t.Logf("MEASURED %d accepted events all final %s after the NATS node kill (%d failed)", len(ids), time.Since(killed).Round(time.Millisecond), failed)
	checkRanOnce(t, c.nodes[0], "work", ids, l.describe(c.nodes[0], killed))

	// The node comes back and the cluster goes on.
	c.nats.Start(t, leader)
	for _, s := range c.nodes {
		s.waitState(s.enqueue("work", `{}`), "succeeded", 30*time.Second)
	}
}

func firstLine(r callResult) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	s, _, _ := strings.Cut(string(r.Body), "\n")
	return s[:min(len(s), 160)]
}

// TestClusterPostgresRestart stops PostgreSQL under three servers: their
// readiness reports the outage naming the store, and once PostgreSQL is
// back they recover by themselves (ready, invoking, learning of changes)
// without a restart.
func TestClusterPostgresRestart(t *testing.T) {
	c := startCluster(t, 3)
	c.nodes[0].mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	c.waitServed("echo")

	c.pg.Stop(t)
	stopped := time.Now()
	for i, s := range c.nodes {
		var why string
		eventually.Nil(t, 30*time.Second, c.names[i]+"'s /readyz to report the store down", func() error {
			r := tryDo(s, "GET", "/readyz", nil)
			if r.Err != nil {
				return r.Err
			}
			var rd v1.Readiness
			if r.Status != http.StatusServiceUnavailable || json.Unmarshal(r.Body, &rd) != nil {
				return fmt.Errorf("answered %s", r)
			}
			for name, msg := range rd.Checks {
				if msg != "ok" && (strings.Contains(name, "store") || strings.Contains(name, "cluster") || strings.Contains(name, "postgres")) {
					why = name + ": " + msg
					return nil
				}
			}
			return fmt.Errorf("503 naming no store or cluster check: %s", r.Body)
		})
		t.Logf("MEASURED PostgreSQL stopped → %s not ready: %s (%s)", c.names[i], time.Since(stopped).Round(time.Millisecond), why)
	}
	// For 5 s of outage, the servers stay not ready; what invokes answer
	// meanwhile is reported.
	answers := map[string]int{}
	var calls int
	eventually.Nil(t, 30*time.Second, "5 s of outage", func() error {
		s := c.nodes[calls%3]
		calls++
		if r := tryDo(s, "GET", "/readyz", nil); r.Err != nil || r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s's /readyz during the outage: %s", c.names[(calls-1)%3], r)
		}
		r := tryCall(s, "echo", `{}`)
		answers[strconv.Itoa(r.Status)+" "+r.FunctionError()]++
		if time.Since(stopped) < 5*time.Second {
			return errors.New("outage under 5s")
		}
		return nil
	})
	t.Logf("invokes during %s of PostgreSQL outage, by status: %v", time.Since(stopped).Round(time.Millisecond), answers)

	c.pg.Start(t)
	started := time.Now()
	for i, s := range c.nodes {
		eventually.Nil(t, 60*time.Second, c.names[i]+" to be ready and serve echo again", func() error {
			if r := tryDo(s, "GET", "/readyz", nil); r.Err != nil || r.Status != 200 {
				return fmt.Errorf("readyz: %s", r)
			}
			if r := tryCall(s, "echo", `{}`); !r.ok() {
				return fmt.Errorf("invoke: %s", r)
			}
			return nil
		})
		t.Logf("MEASURED PostgreSQL back → %s ready and invoking: %s", c.names[i], time.Since(started).Round(time.Millisecond))
	}
	c.waitAllReady(30 * time.Second)

	// They learn of changes again: a deploy on B is served by C.
	c.nodes[1].mustCLI("deploy", "after", "--runtime", "provided", fixture("goecho"))
	deployed := time.Now()
	eventually.Nil(t, 30*time.Second, "a function deployed on node-b after the outage to be served by node-c", func() error {
		if r := tryCall(c.nodes[2], "after", `{}`); !r.ok() {
			return fmt.Errorf("answered %s", r)
		}
		return nil
	})
	if d := time.Since(deployed); d > 10*time.Second {
		t.Errorf("node-c served a function deployed on node-b after the outage %s after, want within 10s", d)
	} else {
		t.Logf("MEASURED after the outage, deploy on node-b → served by node-c: %s", d.Round(time.Millisecond))
	}
}
