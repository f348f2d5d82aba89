package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/stratus-run/stratus/internal/eventually"
)

// TestClusterDeployAnywhere: a function deployed on one server of three
// is served by the other two within a bounded delay, listed by each, its
// invocations made on one are readable on another, and a remove on any
// removes it everywhere.
func TestClusterDeployAnywhere(t *testing.T) {
	c := startCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]

	a.mustCLI("deploy", "echo", "--runtime", "provided", fixture("goecho"))
	deployed := time.Now()
	for i, s := range []*server{b, cc} {
		name := c.names[i+1]
		var last callResult
		eventually.Nil(t, 30*time.Second, "echo deployed on node-a to be served by "+name, func() error {
			last = tryCall(s, "echo", `{"echo":"hi"}`)
			if last.ok() {
				return nil
			}
			return fmt.Errorf("last answer: %s", last)
		})
		delay := last.End.Sub(deployed)
		t.Logf("MEASURED deploy on node-a → served by %s: %s after the deploy returned (that call took %s, cold %v)",
			name, delay.Round(time.Millisecond), last.Elapsed.Round(time.Millisecond), last.Cold())
		if delay > 10*time.Second {
			t.Errorf("%s served echo %s after its deploy on node-a, want within 10s", name, delay)
		}
		if !strings.Contains(string(last.Body), `"echo":"hi"`) {
			t.Errorf("%s answered %s", name, last.Body)
		}
	}

	// Every server lists it.
	for i, s := range c.nodes {
		if out := s.mustCLI("ls"); !strings.Contains(out, "echo") {
			t.Errorf("stratus ls on %s lacks echo:\n%s", c.names[i], out)
		}
	}
	if v := cc.getFn("echo"); v.Name != "echo" || v.Version != 1 {
		t.Errorf("stratus get echo on node-c: %+v", v)
	}

	// An async invoke accepted by B is followed on A; a sync invoke on B
	// is recorded where A reads it.
	id := b.enqueue("echo", `{"echo":"async"}`)
	if st := a.waitState(id, "succeeded", 30*time.Second); st.Function != "echo" || st.Attempt != 1 {
		t.Errorf("status on node-a of the event accepted by node-b: %+v", st)
	}
	syncID := b.mustInvoke("echo", `{"echo":"sync"}`).RequestID()
	eventually.True(t, 10*time.Second, "node-a to read the record of the call made on node-b", func() bool {
		for _, r := range a.records("echo") {
			if r.RequestID == syncID && r.Outcome == "success" {
				return true
			}
		}
		return false
	})
	if out := a.mustCLI("invocation", id); !strings.Contains(out, "succeeded") {
		t.Errorf("stratus invocation %s on node-a printed %q", id, out)
	}

	// A remove on C removes it from A and B.
	cc.mustCLI("rm", "echo")
	removed := time.Now()
	for i, s := range []*server{a, b} {
		name := c.names[i]
		eventually.Nil(t, 20*time.Second, "echo removed on node-c to be gone from "+name, func() error {
			if r := tryCall(s, "echo", `{}`); r.Err != nil || r.Status != http.StatusNotFound {
				return fmt.Errorf("invoke answered %s", r)
			}
			if r := tryDo(s, "GET", "/v1/functions/echo", nil); r.Err != nil || r.Status != http.StatusNotFound {
				return fmt.Errorf("GET answered %s", r)
			}
			return nil
		})
		t.Logf("MEASURED remove on node-c → gone from %s: %s", name, time.Since(removed).Round(time.Millisecond))
		if out := s.mustCLI("ls"); strings.Contains(out, "echo") {
			t.Errorf("stratus ls on %s after the remove:\n%s", name, out)
		}
	}
	eventually.Nil(t, 30*time.Second, "no instance of echo left on any server", func() error {
		for i, s := range c.nodes {
			if p := functionProcessesUnder(s.Data, "echo"); len(p) > 0 {
				return fmt.Errorf("%s runs %v", c.names[i], p)
			}
		}
		return nil
	})
}

// TestClusterGlobalConcurrency: a function's --max-concurrency holds
// across the servers: 12 calls at once spread over three servers never
// have more than 2 instances running in total, and each call beyond them
// waits for one (up to --throttle-wait, 1 s) or gets 429.
func TestClusterGlobalConcurrency(t *testing.T) {
	c := startCluster(t, 3)
	c.nodes[0].mustCLI("deploy", "slow", "--runtime", "provided", "--max-concurrency", "2", fixture("goecho"))
	c.waitServed("slow")

	// Count the started instances of slow under the three data dirs while
	// the calls run.
	stop := make(chan struct{})
	sampled := make(chan [4]int, 1) // peak total, then the peak on each node
	go func() {
		var peak [4]int
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			total := 0
			for i, s := range c.nodes {
				n := functionStartedUnder(s.Data, "slow")
				peak[i+1] = max(peak[i+1], n)
				total += n
			}
			peak[0] = max(peak[0], total)
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()
	const calls = 12
	results := make([]callResult, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() { results[i] = tryCall(c.nodes[i%3], "slow", `{"sleep":700}`) })
	}
	wg.Wait()
	close(stop)
	peak := <-sampled

	ok, throttled := 0, 0
	for i, r := range results {
		switch {
		case r.ok():
			ok++
		case r.Err == nil && r.Status == http.StatusTooManyRequests && strings.Contains(string(r.Body), "TooManyRequestsException"):
			throttled++
		default:
			t.Errorf("call %d on %s: %s, want 200 or 429 TooManyRequestsException", i, c.names[i%3], r)
		}
	}
	t.Logf("MEASURED 12 calls of 700 ms over 3 servers, max concurrency 2: %d succeeded, %d throttled; peak instances %d in total (%d, %d, %d on node-a, b, c)",
		ok, throttled, peak[0], peak[1], peak[2], peak[3])
	if peak[0] > 2 {
		t.Errorf("%d instances of slow ran at once across the servers, max concurrency is 2", peak[0])
	}
	if peak[0] == 0 {
		t.Errorf("no instance of slow was ever seen running")
	}
	if ok < 2 {
		t.Errorf("%d calls succeeded, want at least the 2 the instances take at once", ok)
	}
	// 12 calls of 0.7 s on 2 instances take 4.2 s; a call waits at most
	// --throttle-wait (1 s) once the instances run: some must be refused.
	if throttled == 0 {
		t.Errorf("no call was throttled although they could not all run within the throttle wait")
	}
	if ok+throttled == calls {
		// The slots come back: a call after the burst runs.
		c.nodes[2].mustInvoke("slow", `{}`)
	}
}

// flakyApp is a Python handler that fails while the clock is before the
// event's failUntil (ms since the epoch): an event sent with failUntil
// 1.5 s ahead fails its first attempt, and its retries (the first after
// 0.5 to 1 s, the second after 1 to 2 s more) succeed at the latest on
// the third.
const flakyApp = "import time\n" +
	"def handler(event, context):\n" +
	"    if time.time() * 1000 < event['failUntil']:\n" +
	"        raise Exception('not yet')\n" +
	"    return {'n': event['n']}\n"

// TestClusterAsync: async events accepted by any of three servers, of a
// function that fails then succeeds, each reach their final status
// (readable on any server) and succeed exactly once.
func TestClusterAsync(t *testing.T) {
	needTool(t, "python3")
	c := startCluster(t, 3)
	c.nodes[0].mustCLI("deploy", "flaky", "--runtime", "python3", "--handler", "app.handler",
		"--max-retries", "2", "--max-concurrency", "4", writeFiles(t, map[string]string{"app.py": flakyApp}))
	c.waitServed("flaky", `{"n":-1,"failUntil":0}`)
	const n = 24
	ids := make([]string, n)
	for i := range n {
		s := c.nodes[i%3]
		until := time.Now().Add(1500 * time.Millisecond).UnixMilli()
		ids[i] = s.enqueue("flaky", `{"n":`+strconv.Itoa(i)+`,"failUntil":`+strconv.FormatInt(until, 10)+`}`)
	}
	accepted := time.Now()
	// Each status read on another server than the one that accepted it.
	final := map[string]asyncStatus{}
	for k := range 3 {
		var mine []string
		for i := k; i < n; i += 3 {
			mine = append(mine, ids[i])
		}
		for id, st := range waitFinal(t, c.nodes[(k+1)%3], mine, 90*time.Second) {
			final[id] = st
		}
	}
	t.Logf("MEASURED %d async events with retries over 3 servers: all final %s after the last accept", n, time.Since(accepted).Round(time.Millisecond))
	retried := 0
	for i, id := range ids {
		st := final[id]
		if st.State != "succeeded" || st.Function != "flaky" {
			t.Errorf("event %d (%s, accepted by %s): %+v, want succeeded", i, id, c.names[i%3], st)
		}
		if st.Attempt > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Errorf("no event needed a retry; the handler fails until 1.5 s after the accept")
	}
	// Exactly one success per event, as every server records them.
	eventually.Nil(t, 10*time.Second, "one success record per event", func() error {
		succ := map[string]int{}
		for _, r := range c.nodes[1].records("flaky") {
			if r.Outcome == "success" {
				succ[r.RequestID]++
			}
		}
		for i, id := range ids {
			if succ[id] != 1 {
				return fmt.Errorf("event %d (%s) has %d success records, want 1", i, id, succ[id])
			}
		}
		return nil
	})
	t.Logf("%d of %d events succeeded after a retry", retried, n)
}

// triggerRecord is an invocation record with its trigger.
type triggerRecord struct {
	RequestID string `json:"requestId"`
	Outcome   string `json:"outcome"`
	Trigger   string `json:"trigger"`
}

// triggered counts fn's records with trigger, as s reads them.
func (s *server) triggered(fn, trigger string) int {
	s.t.Helper()
	resp, body := s.do("GET", "/v1/functions/"+fn+"/invocations?limit=10000", nil, true)
	if resp.StatusCode != 200 {
		s.t.Fatalf("records of %s: %d %s", fn, resp.StatusCode, body)
	}
	n := 0
	for _, r := range decode[struct {
		Invocations []triggerRecord `json:"invocations"`
	}](s.t, body).Invocations {
		if r.Trigger == trigger {
			n++
		}
	}
	return n
}

// TestClusterTopicsAndSchedules: a subscription made on one server gets
// an event published on another exactly once; schedules made on a third
// fire once per tick across the three.
func TestClusterTopicsAndSchedules(t *testing.T) {
	c := startCluster(t, 3)
	a, b, cc := c.nodes[0], c.nodes[1], c.nodes[2]
	a.tpDeploySinks("sink")
	deployEventPrinter(t, a, "tick")
	a.mustCLI("topic", "create", "orders")
	a.mustCLI("subscribe", "orders", "--function", "sink")
	eventually.True(t, 10*time.Second, "node-b to list the subscription made on node-a", func() bool {
		out := b.cli("topic", "ls")
		return out.Code == 0 && strings.Contains(out.Stdout, "orders") && strings.Contains(strings.Join(strings.Fields(out.Stdout), " "), "orders 1")
	})
	published := time.Now()
	b.tpMustPublish("orders", tpCE("e1", "order.created", "/shop", `{"n":1}`), []string{"e1"}, "Content-Type", ctStructured)
	cc.tpWaitIDs("sink", "e1")
	t.Logf("MEASURED publish on node-b → delivered to the cold sink (read on node-c): %s", time.Since(published).Round(time.Millisecond))

	// Schedules made on C: a rate fires at its creation, an at() at its
	// time; each once, whichever server fires it.
	cc.mustCLI("schedule", "create", "every", "--function", "tick", "--rate", "1 minute")
	created := time.Now()
	atText, _ := atSoon(4 * time.Second)
	cc.mustCLI("schedule", "create", "once", "--function", "tick", "--at", atText)
	waitScheduledEvents(t, b, "tick", "every", 1, 20*time.Second)
	t.Logf("MEASURED rate schedule created on node-c → fired: %s", time.Since(created).Round(time.Millisecond))
	waitScheduledEvents(t, a, "tick", "once", 1, 20*time.Second)

	// Twins of the firings would have arrived with them; a second event
	// through the topic comes after.
	published = time.Now()
	a.tpMustPublish("orders", tpCE("e2", "order.created", "/shop", `{"n":2}`), []string{"e2"}, "Content-Type", ctStructured)
	b.tpWaitIDs("sink", "e1", "e2")
	t.Logf("MEASURED publish on node-a → delivered to the warm sink (read on node-b): %s", time.Since(published).Round(time.Millisecond))
	if since := time.Since(created); since < 55*time.Second {
		evs := scheduledEventsOf(t, cc, "tick")
		if len(evs["every"]) != 1 || len(evs["once"]) != 1 {
			t.Errorf("tick got %d events of the rate schedule and %d of the at() schedule in one tick (%s), want 1 each: %+v",
				len(evs["every"]), len(evs["once"]), since.Round(time.Second), evs)
		}
		eventually.Nil(t, 10*time.Second, "2 records of tick with trigger schedule", func() error {
			if n := a.triggered("tick", "schedule"); n != 2 {
				return fmt.Errorf("%d records", n)
			}
			return nil
		})
	} else {
		t.Logf("the rate schedule is %s old: a second tick may have come; count not checked", since)
	}
	if ids := cc.tpIDs("sink"); strings.Join(ids, ",") != "e1,e2" {
		t.Errorf("sink received %v, want e1 and e2 once each", ids)
	}
	// Every server shows the schedule's firing.
	for i, s := range c.nodes {
		if v := s.schedule("every"); v.LastFiredAt == nil || v.Function != "tick" {
			t.Errorf("schedule get every on %s: %+v", c.names[i], v)
		}
	}
}

// TestClusterNodes: stratus nodes on any server lists the three, ready
// with fresh heartbeats; a server killed with SIGKILL shows dead within
// the dead timeout, and the function it owned is served by the others
// once its lease expired; restarted, it joins again.
func TestClusterNodes(t *testing.T) {
	c := startCluster(t, 3)
	for i, s := range c.nodes {
		out := s.mustCLI("nodes")
		for j, name := range c.names {
			row := rowOf(out, name)
			if j == i {
				row = rowOf(out, name+"*")
			}
			if row == nil || row[2] != "ready" || row[6] != c.nodes[j].URL {
				t.Errorf("stratus nodes on %s: row of %s is %q:\n%s", c.names[i], name, row, out)
			}
		}
		var list struct {
			Nodes []struct {
				Name  string `json:"name"`
				Alive bool   `json:"alive"`
				Self  bool   `json:"self"`
			} `json:"nodes"`
		}
		if err := json.Unmarshal([]byte(s.mustCLI("nodes", "-o", "json")), &list); err != nil || len(list.Nodes) != 3 {
			t.Errorf("stratus nodes -o json on %s: %v %+v", c.names[i], err, list)
		}
		for _, n := range list.Nodes {
			if n.Self != (n.Name == c.names[i]) || !n.Alive {
				t.Errorf("stratus nodes -o json on %s: %+v", c.names[i], n)
			}
		}
	}

	// The owner of a function is where its instance runs.
	c.nodes[0].mustCLI("deploy", "owned", "--runtime", "provided", fixture("goecho"))
	c.waitServed("owned")
	var owner int
	eventually.True(t, 10*time.Second, "one server to run owned's instance", func() bool {
		owner = c.runningOn("owned")
		return owner >= 0
	})
	t.Logf("owned runs on %s", c.names[owner])
	c.nodes[owner].Kill()
	killed := time.Now()
	survivors := c.others(owner)

	// Its work moves: calls on a survivor, made from the kill on, succeed
	// within the lease TTL. Meanwhile the node shows dead within the dead
	// timeout.
	type moved struct {
		served   time.Duration
		failures []string
	}
	movedc := make(chan moved, 1)
	go func() {
		var m moved
		for time.Since(killed) < clusterLeaseTTL+20*time.Second {
			r := tryCall(survivors[0], "owned", `{}`)
			if r.ok() {
				m.served = time.Since(killed)
				break
			}
			if len(m.failures) < 5 {
				m.failures = append(m.failures, fmt.Sprintf("+%s: %s", time.Since(killed).Round(time.Millisecond), r))
			}
		}
		movedc <- m
	}()
	var dead time.Duration
	eventually.Nil(t, clusterDeadAfter+20*time.Second, c.names[owner]+" to show dead", func() error {
		nodes, err := tryNodes(survivors[1])
		if err != nil {
			return err
		}
		if err := checkNodes(nodes, c.names, map[string]bool{c.names[owner]: true}); err != nil {
			return err
		}
		dead = time.Since(killed)
		return nil
	})
	t.Logf("MEASURED SIGKILL → node shown dead: %s (dead timeout %s after its last heartbeat)", dead.Round(time.Millisecond), clusterDeadAfter)
	if dead > clusterDeadAfter+5*time.Second {
		t.Errorf("%s showed dead %s after SIGKILL, want within %s and 5s", c.names[owner], dead, clusterDeadAfter)
	}
	m := <-movedc
	t.Logf("MEASURED owner killed → function served by another: %s (failures meanwhile: %v)", m.served.Round(time.Millisecond), m.failures)
	if m.served == 0 || m.served > clusterLeaseTTL+5*time.Second {
		t.Errorf("owned was served %s after its owner died (0: never), want within the lease TTL (%s) and 5s; failures: %v", m.served, clusterLeaseTTL, m.failures)
	}
	if r := tryCall(survivors[1], "owned", `{}`); !r.ok() {
		t.Errorf("owned on the other survivor: %s", r)
	}
	out := survivors[1].mustCLI("nodes")
	if row := rowOf(out, c.names[owner]); row == nil || row[2] != "dead" || row[4] != "-" {
		t.Errorf("stratus nodes after the kill: row of %s is %q:\n%s", c.names[owner], row, out)
	}

	// Restarted on its data dir, it is alive and ready again.
	c.nodes[owner].Restart()
	c.waitAllReady(60 * time.Second)
	if r := tryCall(c.nodes[owner], "owned", `{}`); !r.ok() {
		t.Errorf("owned on the restarted %s: %s", c.names[owner], r)
	}
}

// rowOf returns the cells of the row of stratus nodes' table whose first
// cell is name, nil if there is none (or it has not 7 cells).
func rowOf(table, name string) []string {
	for l := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == name {
			// NAME REGION STATE HEARTBEAT INSTANCES REPLICAS ADDRESS, the
			// HEARTBEAT cell in two fields ("1s ago").
			if len(f) != 8 || f[4] != "ago" {
				return nil
			}
			return append(f[:3:3], append([]string{f[3] + " ago"}, f[5:]...)...)
		}
	}
	return nil
}

// TestClusterServiceOnce: a service deployed on one server of three is
// reachable through the path and host routes of the others, and its
// replicas run on exactly one server, as many as its owner reports.
func TestClusterServiceOnce(t *testing.T) {
	c := startCluster(t, 3, fastServices...)
	a := c.nodes[0]
	a.mustCLI("image", "import", serviceImageTar(t, "gosvc:v1", ggcr.Config{}))
	a.mustCLI("service", "deploy", "web", "--image", "gosvc:v1", "--min", "1", "--max", "3")
	deployed := time.Now()
	for i, s := range c.nodes[1:] {
		name := c.names[i+1]
		var env map[string]string
		eventually.Nil(t, 60*time.Second, "web deployed on node-a to answer /svc/web on "+name, func() error {
			r := tryDo(s, "GET", "/svc/web/env", nil)
			if r.Err != nil || r.Status != 200 || json.Unmarshal(r.Body, &env) != nil || env["K_SERVICE"] != "web" {
				return fmt.Errorf("answered %s", r)
			}
			return nil
		})
		t.Logf("MEASURED service deploy on node-a → answered through %s: %s", name, time.Since(deployed).Round(time.Millisecond))
		if code, body := s.hostGet("web.localhost", "/path/x?q=1"); code != 200 || !strings.Contains(body, `"path":"/path/x"`) || !strings.Contains(body, `"host":"web.localhost"`) {
			t.Errorf("host route on %s: %d %s", name, code, body)
		}
		if resp, _ := s.do("GET", "/svc/web/", nil, false); resp.StatusCode != 401 {
			t.Errorf("/svc/web/ without token on %s: %d, want 401", name, resp.StatusCode)
		}
	}

	// The replicas run on one server, as many as the service reports; no
	// other server holds a sandbox of it.
	var where string
	eventually.Nil(t, 30*time.Second, "web's replicas on one server, as many as service get reports", func() error {
		svc := c.nodes[2].service("web")
		var on []string
		total := 0
		for i, s := range c.nodes {
			// A started replica counts; a service's prepared sandbox (its
			// init waits) only says where the service runs.
			if n := instancesUnder(s.Data); n > 0 {
				on = append(on, fmt.Sprintf("%s runs %d sandboxes: %v", c.names[i], n, processesUnder(s.Data)))
				total += startedUnder(s.Data)
			}
		}
		if len(on) != 1 || svc.Replicas.Ready < 1 || total != svc.Replicas.Ready || svc.Status != "Ready" {
			return fmt.Errorf("replicas: %v; service get on node-c: status %s, replicas %+v", on, svc.Status, svc.Replicas)
		}
		where = on[0]
		return nil
	})
	t.Logf("web: %s", where)
	for i, s := range c.nodes {
		if svc := s.service("web"); svc.Revision != 1 || svc.Status != "Ready" {
			t.Errorf("service get web on %s: %+v", c.names[i], svc)
		}
		if ls := s.mustCLI("service", "ls"); !strings.Contains(ls, "web") {
			t.Errorf("service ls on %s:\n%s", c.names[i], ls)
		}
	}

	// A remove on another server stops them.
	c.nodes[1].mustCLI("service", "rm", "web")
	eventually.Nil(t, 30*time.Second, "no replica of web left", func() error {
		for i, s := range c.nodes {
			if p := processesUnder(s.Data); len(p) > 0 {
				return fmt.Errorf("%s runs %v", c.names[i], p)
			}
		}
		return nil
	})
	for i, s := range c.nodes {
		eventually.True(t, 10*time.Second, "/svc/web gone on "+c.names[i], func() bool {
			r := tryDo(s, "GET", "/svc/web/", nil)
			return r.Err == nil && r.Status == 404
		})
	}
}
