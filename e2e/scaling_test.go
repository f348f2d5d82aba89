package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// callResult is the answer to one invocation made off the test goroutine, where
// t.Fatal is not allowed.
type callResult struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration
	End     time.Time // when the answer was read
	Err     error
}

// Cold reports whether the invocation started its instance.
func (c callResult) Cold() bool { return c.Header.Get("X-Stratus-Cold-Start") == "true" }

// RequestID is the invocation's request ID.
func (c callResult) RequestID() string { return c.Header.Get("X-Amzn-Requestid") }

// FunctionError is the X-Amz-Function-Error header.
func (c callResult) FunctionError() string { return c.Header.Get("X-Amz-Function-Error") }

func (c callResult) String() string {
	if c.Err != nil {
		return "error: " + c.Err.Error()
	}
	return fmt.Sprintf("status %d cold %q function error %q after %s: %s", c.Status, c.Header.Get("X-Stratus-Cold-Start"), c.FunctionError(), c.Elapsed.Round(time.Millisecond), c.Body)
}

// tryInvoke calls POST /v1/functions/NAME/invoke and reports any failure in
// the answer instead of failing the test; safe from any goroutine.
func (s *server) tryInvoke(name, event string) callResult {
	req, err := http.NewRequest("POST", s.URL+"/v1/functions/"+name+"/invoke", strings.NewReader(event))
	if err != nil {
		return callResult{Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return callResult{Err: err, Elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return callResult{Status: resp.StatusCode, Header: resp.Header, Body: b, Elapsed: time.Since(start), End: time.Now(), Err: err}
}

// mustInvoke invokes name and fails the test unless the function answered
// without an error.
func (s *server) mustInvoke(name, event string) callResult {
	s.t.Helper()
	c := s.tryInvoke(name, event)
	if c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
		s.t.Fatalf("invoke %s %s: %s\nserver log:\n%s", name, event, c, s.Stderr())
	}
	return c
}

// invokeAsync starts an invocation in the background; its answer arrives on
// the returned channel.
func (s *server) invokeAsync(name, event string) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() { ch <- s.tryInvoke(name, event) }()
	return ch
}

// invokeParallel makes n invocations at once and returns their answers.
func (s *server) invokeParallel(n int, name, event string) []callResult {
	out := make([]callResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = s.tryInvoke(name, event) })
	}
	wg.Wait()
	return out
}

// pidOf returns the host's PID of the process that gave a goecho (or
// bash fixture) answer: its "pid" field, in the PID namespace of its
// "pidns" field.
func pidOf(t *testing.T, c callResult) int {
	t.Helper()
	var a struct {
		PID   int    `json:"pid"`
		PIDNS string `json:"pidns"`
	}
	if err := json.Unmarshal(c.Body, &a); err != nil || a.PID == 0 {
		t.Fatalf("answer has no pid: %s", c)
	}
	return hostPID(t, a.PIDNS, a.PID)
}

// fnView is what `stratus get -o json` shows of a function.
type fnView struct {
	Name      string `json:"name"`
	Version   int    `json:"version"`
	Instances struct {
		Live int `json:"live"`
		Idle int `json:"idle"`
		Busy int `json:"busy"`
	} `json:"instances"`
	Config struct {
		MaxConcurrency int `json:"maxConcurrency"`
		MinInstances   int `json:"minInstances"`
		TimeoutSec     int `json:"timeoutSec"`
	} `json:"config"`
}

// getFn runs `stratus get NAME -o json`.
func (s *server) getFn(name string) fnView {
	s.t.Helper()
	return decode[fnView](s.t, []byte(s.mustCLI("get", name, "-o", "json")))
}

// waitInstances waits until the function shows the wanted live and busy
// counts of name (busy < 0: any). It polls GET /v1/functions/NAME, what
// `stratus get` shows, without starting a process each time.
func (s *server) waitInstances(name string, live, busy int) fnView {
	s.t.Helper()
	var v fnView
	eventually.Nil(s.t, 30*time.Second, fmt.Sprintf("%s to have %d live, %d busy instances", name, live, busy), func() error {
		resp, body := s.do("GET", "/v1/functions/"+name, nil, true)
		if resp.StatusCode != 200 {
			s.t.Fatalf("GET /v1/functions/%s: %d %s", name, resp.StatusCode, body)
		}
		v = decode[fnView](s.t, body)
		if v.Instances.Live == live && (busy < 0 || v.Instances.Busy == busy) {
			return nil
		}
		return fmt.Errorf("it has %+v", v.Instances)
	})
	return v
}

// procID identifies one process: a PID and its start time, so a reused PID is
// not mistaken for it.
type procID struct {
	PID   int
	start string
}

// procOf returns the running process pid; it fails the test if there is
// none.
func procOf(t *testing.T, pid int) procID {
	t.Helper()
	st := procStart(pid)
	if st == "" {
		t.Fatalf("process %d is not running", pid)
	}
	return procID{pid, st}
}

// procStart is field 22 of /proc/PID/stat, "" if the process is gone or a
// zombie.
func procStart(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

// Alive reports whether the process still runs.
func (p procID) Alive() bool { return procStart(p.PID) == p.start }

// waitGone waits until none of procs runs.
func waitGone(t *testing.T, what string, procs ...procID) {
	t.Helper()
	eventually.True(t, 30*time.Second, what+" to end", func() bool {
		for _, p := range procs {
			if p.Alive() {
				return false
			}
		}
		return true
	})
}

// TestScaleOutAndWarmReuse: N parallel slow calls start N instances; later
// calls reuse warm ones, most recently used first.
func TestScaleOutAndWarmReuse(t *testing.T) {
	const n = 5
	s := startServer(t)
	s.mustCLI("deploy", "echo", "--runtime", "provided.al2023", "--timeout", "30", fixture("goecho"))
	if v := s.getFn("echo"); v.Instances.Live != 0 {
		t.Fatalf("a new function has %d live instances, want 0 (scale from zero)", v.Instances.Live)
	}

	done := make(chan []callResult, 1)
	go func() { done <- s.invokeParallel(n, "echo", `{"sleep":3000}`) }()
	// While they run, every call holds an instance of its own.
	s.waitInstances("echo", n, n)
	if v := s.getFn("echo"); v.Instances.Live != n {
		t.Errorf("stratus get shows %d live instances during %d parallel calls, want %d", v.Instances.Live, n, n)
	}
	calls := <-done

	pids := map[int]bool{}
	for _, c := range calls {
		if c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
			t.Fatalf("parallel call: %s\nserver log:\n%s", c, s.Stderr())
		}
		if !c.Cold() {
			t.Errorf("parallel call on a function with no instance was warm: %s", c)
		}
		pids[pidOf(t, c)] = true
	}
	if len(pids) != n {
		t.Fatalf("%d parallel calls ran in %d processes %v, want %d", n, len(pids), pids, n)
	}
	v := s.waitInstances("echo", n, 0)
	if v.Instances.Idle != n {
		t.Errorf("after the calls: %+v, want %d idle", v.Instances, n)
	}

	// Sequential calls are warm, on the instances already running, and
	// all land on the most recently used one (a LIFO idle stack), not
	// spread round-robin.
	var seq []int
	for range 2 * n {
		c := s.mustInvoke("echo", `{}`)
		if c.Cold() {
			t.Errorf("sequential call with %d idle instances was a cold start: %s", n, c)
		}
		pid := pidOf(t, c)
		if !pids[pid] {
			t.Errorf("sequential call ran in process %d, not one of the warm instances %v", pid, pids)
		}
		seq = append(seq, pid)
	}
	if len(slices.Compact(slices.Clone(seq))) != 1 {
		t.Errorf("sequential calls ran in processes %v; want all on the most recently used instance", seq)
	}
	if v := s.getFn("echo"); v.Instances.Live != n {
		t.Errorf("after sequential calls: %d live instances, want %d (no new start)", v.Instances.Live, n)
	}

	// Two overlapping calls: the one that finds the most recent instance
	// busy takes the next most recent, never starts a new one.
	two := s.invokeParallel(2, "echo", `{"sleep":300}`)
	for _, c := range two {
		if c.Err != nil || c.Status != 200 || c.Cold() || !pids[pidOf(t, c)] {
			t.Errorf("overlapping warm call: %s", c)
		}
	}
	if v := s.getFn("echo"); v.Instances.Live != n {
		t.Errorf("after overlapping calls: %d live instances, want %d", v.Instances.Live, n)
	}
}

// TestConcurrencyCap: beyond --max-concurrency a call waits the server's
// throttle wait, then gets 429 TooManyRequestsException; with a longer
// wait it gets the first instance that frees up.
func TestConcurrencyCap(t *testing.T) {
	t.Run("throttled", func(t *testing.T) {
		s := startServer(t, "--throttle-wait", "200ms")
		s.mustCLI("deploy", "capped", "--runtime", "provided", "--max-concurrency", "2", "--timeout", "30", fixture("goecho"))
		a := s.invokeAsync("capped", `{"sleep":4000}`)
		b := s.invokeAsync("capped", `{"sleep":4000}`)
		s.waitInstances("capped", 2, 2)

		c := s.tryInvoke("capped", `{}`)
		if c.Err != nil || c.Status != http.StatusTooManyRequests {
			t.Fatalf("third call over max concurrency 2: %s, want 429", c)
		}
		e := decode[struct{ Code, Message string }](t, c.Body)
		if e.Code != "TooManyRequestsException" || e.Message == "" {
			t.Errorf("429 body = %s, want code TooManyRequestsException and a message", c.Body)
		}
		if c.Elapsed < 200*time.Millisecond {
			t.Errorf("429 came after %s, before the 200ms throttle wait", c.Elapsed)
		}
		if v := s.getFn("capped"); v.Instances.Live != 2 {
			t.Errorf("live instances = %d, want the cap 2", v.Instances.Live)
		}
		for _, ch := range []<-chan callResult{a, b} {
			if c := <-ch; c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
				t.Errorf("call under the cap: %s", c)
			}
		}
		// The cap does not outlive the load.
		s.mustInvoke("capped", `{}`)
	})

	t.Run("waits", func(t *testing.T) {
		s := startServer(t, "--throttle-wait", "30s")
		s.mustCLI("deploy", "capped", "--runtime", "provided", "--max-concurrency", "2", "--timeout", "30", fixture("goecho"))
		a := s.invokeAsync("capped", `{"sleep":2500}`)
		b := s.invokeAsync("capped", `{"sleep":2500}`)
		s.waitInstances("capped", 2, 2)
		c := s.tryInvoke("capped", `{}`)
		if c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
			t.Fatalf("third call with a 30s throttle wait: %s, want success once an instance frees up\nserver log:\n%s", c, s.Stderr())
		}
		first := []int{pidOf(t, <-a), pidOf(t, <-b)}
		if c.Cold() || !slices.Contains(first, pidOf(t, c)) {
			t.Errorf("waiting call: %s; want it warm on one of the first two instances %v", c, first)
		}
		if v := s.getFn("capped"); v.Instances.Live != 2 {
			t.Errorf("live instances = %d, want 2", v.Instances.Live)
		}
	})
}

// TestServerWideCap: with --max-instances 2 an idle instance of one
// function is stopped to start another's; when every instance is busy the
// call is throttled.
func TestServerWideCap(t *testing.T) {
	s := startServer(t, "--max-instances", "2", "--throttle-wait", "200ms")
	// Deploy with the default --max-concurrency: a function may not have
	// more than the server allows, but a small server must still take a
	// plain deploy.
	s.mustCLI("deploy", "a", "--runtime", "provided", "--timeout", "30", fixture("goecho"))
	s.mustCLI("deploy", "b", "--runtime", "provided", "--timeout", "30", fixture("goecho"))

	var aProcs []procID
	for _, c := range s.invokeParallel(2, "a", `{"sleep":1500}`) {
		if c.Err != nil || c.Status != 200 {
			t.Fatalf("call a: %s\nserver log:\n%s", c, s.Stderr())
		}
		aProcs = append(aProcs, procOf(t, pidOf(t, c)))
	}
	if aProcs[0].PID == aProcs[1].PID {
		t.Fatalf("two parallel calls of a ran in one process %d", aProcs[0].PID)
	}
	s.waitInstances("a", 2, 0)

	// The server is full of idle instances of a; b evicts one.
	c := s.mustInvoke("b", `{}`)
	if !c.Cold() {
		t.Errorf("first call of b was warm: %s", c)
	}
	s.waitInstances("a", 1, 0)
	s.waitInstances("b", 1, 0)
	eventually.True(t, 30*time.Second, "one instance of a to be stopped", func() bool {
		return aProcs[0].Alive() != aProcs[1].Alive()
	})

	// Both slots busy: a call of b can neither find nor start an instance.
	busyA := s.invokeAsync("a", `{"sleep":4000}`)
	busyB := s.invokeAsync("b", `{"sleep":4000}`)
	s.waitInstances("a", 1, 1)
	s.waitInstances("b", 1, 1)
	if c := s.tryInvoke("b", `{}`); c.Err != nil || c.Status != http.StatusTooManyRequests || !strings.Contains(string(c.Body), "TooManyRequestsException") {
		t.Errorf("call with every server slot busy: %s, want 429 TooManyRequestsException", c)
	}
	for _, ch := range []<-chan callResult{busyA, busyB} {
		if c := <-ch; c.Err != nil || c.Status != 200 || c.FunctionError() != "" {
			t.Errorf("busy call: %s", c)
		}
	}
	// Prepared sandboxes are not instances: --max-instances does not count
	// them.
	if n := startedUnder(s.Data); n > 2 {
		t.Errorf("%d instances run with --max-instances 2: %v", n, processesUnder(s.Data))
	}
}

// TestScaleToZero: idle instances stop after the function's or the
// server's idle timeout, and the next call is a cold start again.
func TestScaleToZero(t *testing.T) {
	t.Run("function idle timeout", func(t *testing.T) {
		s := startServer(t)
		s.mustCLI("deploy", "short", "--runtime", "provided", "--idle-timeout", "300ms", fixture("goecho"))
		s.mustCLI("deploy", "long", "--runtime", "provided", fixture("goecho"))
		first := s.mustInvoke("short", `{}`)
		if !first.Cold() {
			t.Errorf("first call was warm: %s", first)
		}
		p := procOf(t, pidOf(t, first))
		s.mustInvoke("long", `{}`)

		s.waitInstances("short", 0, 0)
		waitGone(t, "the idle instance of short", p)
		if v := s.getFn("long"); v.Instances.Live != 1 {
			t.Errorf("long (server default idle timeout of 5 minutes) has %d live instances, want 1", v.Instances.Live)
		}

		again := s.mustInvoke("short", `{}`)
		if !again.Cold() || again.Header.Get("X-Stratus-Init-Duration-Ms") == "" {
			t.Errorf("call after scale to zero: %s; want a cold start with an init duration", again)
		}
		if pidOf(t, again) == p.PID {
			t.Errorf("call after scale to zero ran in the stopped process %d", p.PID)
		}
		// Within the 300 ms idle timeout: the instance is still warm (the
		// log lookup below may take longer than that on a busy machine).
		warm := s.mustInvoke("short", `{}`)
		if warm.Cold() {
			t.Errorf("call right after a cold start was cold: %s", warm)
		}
		id := again.RequestID()
		var report string
		eventually.True(t, 10*time.Second, "the REPORT line of "+id, func() bool {
			for _, l := range strings.Split(s.mustCLI("logs", "short", "--request", id), "\n") {
				if strings.Contains(l, "REPORT RequestId: "+id) {
					report = l
					return true
				}
			}
			return false
		})
		if !strings.Contains(report, "Init Duration: ") {
			t.Errorf("REPORT of a cold start has no Init Duration: %q", report)
		}
	})

	t.Run("server idle timeout", func(t *testing.T) {
		s := startServer(t, "--idle-timeout", "300ms")
		s.mustCLI("deploy", "dflt", "--runtime", "provided", fixture("goecho"))
		s.mustCLI("deploy", "own", "--runtime", "provided", "--idle-timeout", "1h", fixture("goecho"))
		for _, c := range s.invokeParallel(2, "dflt", `{"sleep":200}`) {
			if c.Err != nil || c.Status != 200 {
				t.Fatalf("call: %s", c)
			}
		}
		s.mustInvoke("own", `{}`)
		s.waitInstances("dflt", 0, 0)
		if v := s.getFn("own"); v.Instances.Live != 1 {
			t.Errorf("a function with its own 1h idle timeout has %d live instances, want 1", v.Instances.Live)
		}
		if c := s.mustInvoke("dflt", `{}`); !c.Cold() {
			t.Errorf("call after scale to zero was warm: %s", c)
		}
	})
}

// TestMinInstances: --min-instances are started at deploy, serve the first
// call warm and survive the idle timeout.
func TestMinInstances(t *testing.T) {
	s := startServer(t)
	s.mustCLI("deploy", "warm", "--runtime", "provided", "--min-instances", "2", "--idle-timeout", "300ms", "--timeout", "30", fixture("goecho"))
	s.waitInstances("warm", 2, 0)
	if n := startedUnder(s.Data); n != 2 {
		t.Errorf("%d instances before any call, want 2: %v", n, processesUnder(s.Data))
	}

	if c := s.mustInvoke("warm", `{}`); c.Cold() {
		t.Errorf("first call on a provisioned instance was a cold start: %s", c)
	}

	// Three at once: two provisioned instances and one more.
	var cold int
	for _, c := range s.invokeParallel(3, "warm", `{"sleep":2000}`) {
		if c.Err != nil || c.Status != 200 {
			t.Fatalf("call: %s", c)
		}
		if c.Cold() {
			cold++
		}
	}
	if cold != 1 {
		t.Errorf("3 parallel calls with 2 provisioned instances made %d cold starts, want 1", cold)
	}
	// After the idle timeout the least recently used instance stops, and
	// the prepared sandbox too; two stay, however long they idle.
	s.waitInstances("warm", 2, 0)
	eventually.True(t, 30*time.Second, "2 instances after idling", func() bool { return instancesUnder(s.Data) == 2 })
	if c := s.mustInvoke("warm", `{}`); c.Cold() {
		t.Errorf("call after idling was a cold start: %s", c)
	}
}
