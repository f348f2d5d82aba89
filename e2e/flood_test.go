package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/eventually"
)

// floodApp prints lines of 256 KiB as fast as it can for the event's
// seconds.
const floodApp = `import sys
import time


def handler(event, context):
    line = "x" * (256 * 1024 - 1) + "\n"
    end = time.time() + event.get("seconds", 10)
    n = 0
    out = sys.stdout
    while time.time() < end:
        out.write(line)
        n += 1
    out.flush()
    return {"lines": n}
`

// Bounds of the flood test, with the README's default flags; the README
// states them ("Bounds") with the figures measured.
const (
	floodMaxOutput = 8 << 20 // --max-output-bytes
	floodMaxLine   = 256 << 10
	// floodRSSBound is the server's resident memory at most, its peak
	// (VmHWM) included, while a function floods its output.
	floodRSSBound = 200 << 20
	// floodP99Bound is the 99th percentile of another function's
	// invocations at most during the flood.
	floodP99Bound = 2 * time.Second
)

// TestOutputFlood: a function prints 256 KiB lines as fast as it can for
// 10 s while another function is invoked in a loop. The server's memory
// stays under floodRSSBound, the other function keeps answering (p99 under
// floodP99Bound), the flooding invocation stores at most --max-output-bytes
// of output, and platform lines in `stratus logs` say how many lines were
// dropped and why.
func TestOutputFlood(t *testing.T) {
	needTool(t, "python3")
	s := startServer(t)
	code := writeFiles(t, map[string]string{"app.py": floodApp})
	s.mustCLI("deploy", "flood", "--runtime", "python3", "--handler", "app.handler", "--timeout", "30", code)
	s.mustCLI("deploy", "quiet", "--runtime", "provided", fixture("goecho"))
	resp, body := s.invoke("quiet", `{}`)
	wantOK(t, resp, body)
	pid := s.cmd.Process.Pid
	before := procStatusKB(t, pid, "VmRSS")

	// The flood, and the quiet function in a loop until it ends.
	type floodResult struct {
		status int
		id     string
		body   []byte
		err    error
	}
	floodDone := make(chan floodResult, 1)
	go func() {
		resp, body, err := post(s, "/v1/functions/flood/invoke", `{"seconds": 10}`)
		if err != nil {
			floodDone <- floodResult{err: err}
			return
		}
		floodDone <- floodResult{status: resp.StatusCode, id: resp.Header.Get("X-Amzn-Requestid"), body: body}
	}()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		failures  []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			resp, body, err := post(s, "/v1/functions/quiet/invoke", `{"echo":"still here"}`)
			d := time.Since(t0)
			mu.Lock()
			switch {
			case err != nil:
				failures = append(failures, err.Error())
			case resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("still here")):
				failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
			default:
				latencies = append(latencies, d)
			}
			mu.Unlock()
		}
	})
	var maxRSS int64
	var fr floodResult
	sample := time.NewTicker(50 * time.Millisecond)
	defer sample.Stop()
wait:
	for {
		select {
		case fr = <-floodDone:
			break wait
		case <-sample.C:
			maxRSS = max(maxRSS, procStatusKB(t, pid, "VmRSS"))
		case <-time.After(40 * time.Second):
			t.Fatal("the flooding invocation did not end within 40 s")
		}
	}
	close(stop)
	wg.Wait()
	hwm := procStatusKB(t, pid, "VmHWM")
	if fr.err != nil || fr.status != http.StatusOK {
		t.Fatalf("invoke flood: %d %s %v", fr.status, fr.body, fr.err)
	}
	slices.Sort(latencies)
	if len(latencies) == 0 {
		t.Fatalf("the quiet function never answered during the flood: %q", failures)
	}
	p := func(q float64) time.Duration { return latencies[min(len(latencies)-1, int(q*float64(len(latencies))))] }
	t.Logf("flood: %s; server RSS %d MiB before, %d MiB at most sampled, VmHWM %d MiB; quiet: %d calls, p50 %s, p99 %s, max %s",
		fr.body, before>>10, maxRSS>>10, hwm>>10, len(latencies), p(0.5), p(0.99), latencies[len(latencies)-1])
	if len(failures) > 0 {
		t.Errorf("%d calls of the quiet function failed during the flood: %q", len(failures), failures[:min(len(failures), 5)])
	}
	if p99 := p(0.99); p99 > floodP99Bound {
		t.Errorf("quiet function p99 %s during the flood, want under %s", p99, floodP99Bound)
	}
	if hwm<<10 > floodRSSBound || maxRSS<<10 > floodRSSBound {
		t.Errorf("server peak RSS %d MiB (sampled %d MiB), want under %d MiB", hwm>>10, maxRSS>>10, floodRSSBound>>20)
	}

	// What the flooding invocation stored: at most --max-output-bytes of
	// its output, and platform lines saying how many were dropped.
	var stored int64
	var platform []string
	eventually.True(t, 20*time.Second, "the flood's REPORT line", func() bool {
		stored, platform = 0, nil
		resp, body := s.do("GET", "/v1/functions/flood/logs?limit=10000&request="+fr.id, nil, true)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET logs: %d %s", resp.StatusCode, body)
		}
		report := false
		for _, l := range decode[struct {
			Lines []logLineJSON `json:"lines"`
		}](t, body).Lines {
			switch l.Stream {
			case "stdout", "stderr":
				stored += int64(len(l.Text)) + 1
			case "platform":
				platform = append(platform, l.Text)
				report = report || strings.HasPrefix(l.Text, "REPORT ")
			}
		}
		return report
	})
	t.Logf("stored %d bytes of output; platform lines: %q", stored, platform)
	if stored > floodMaxOutput+floodMaxLine {
		t.Errorf("%d bytes of output stored for one invocation, want at most %d", stored, floodMaxOutput+floodMaxLine)
	}
	inv := 0
	for _, l := range platform {
		if strings.HasPrefix(l, "Output dropped: ") && strings.Contains(l, "--max-output-bytes") {
			inv++
		}
	}
	if inv != 1 {
		t.Errorf("%d platform lines about the output stored per invocation, want 1: %q", inv, platform)
	}
	if n := len(platform); n > 20 {
		t.Errorf("%d platform lines for one invocation, want a few", n)
	}
	out := s.mustCLI("logs", "flood", "--request", fr.id)
	if !strings.Contains(out, "Output dropped: ") {
		t.Errorf("`stratus logs flood` shows no line about dropped output")
	}
	resp, body = s.do("GET", "/metrics", nil, true)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`stratus_output_lines_dropped_total{reason="invocation_limit"}`)) {
		t.Errorf("GET /metrics: %d, no count of lines dropped per invocation", resp.StatusCode)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "stratus_output_lines_dropped_total") || strings.HasPrefix(l, "stratus_log_") {
			t.Log(l)
		}
	}
}

// post sends an authorized POST without failing the test, for goroutines.
func post(s *server, path, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("POST", s.URL+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// procStatusKB reads a field (VmRSS, VmHWM) of /proc/PID/status, in KiB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
