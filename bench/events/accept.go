package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// acceptResult is one run of async invokes at a fixed concurrency.
type acceptResult struct {
	Rate        float64       // 202s per second
	Accepted    int64         // 202s
	Failed      int64         // other answers or transport errors
	P50, P99    time.Duration // of one 202's round trip
	ServerCPUus float64       // server CPU (user+system) per 202, µs
	ClientCPUus float64       // this process's CPU per 202, µs
	FirstErr    string
}

// acceptRun has conc clients POST event as an async invoke of fn, back to
// back, for warmup (unmeasured) and then d.
func acceptRun(ctx context.Context, s *server, fn string, event []byte, conc int, warmup, d time.Duration) acceptResult {
	return postRun(ctx, s.base+"/v1/functions/"+fn+"/invoke", event, conc, warmup, d, s.pid())
}

// postRun has conc clients POST event to url as async invokes, back to
// back, for warmup (unmeasured) and then d, and counts the 202s. The
// server's CPU is that of process pid; the client's that of this process.
//
// Each client is one keep-alive HTTP/1.1 connection that writes a request
// prepared once and reads the answer's status, headers and sized body
// (rawClient), without net/http's client: on two cores the load
// generator's CPU is taken from the server it measures, and net/http's
// client costs several times as much per request (issue 10: 52–71 µs).
func postRun(ctx context.Context, url string, event []byte, conc int, warmup, d time.Duration, pid int) acceptResult {
	type worker struct {
		ok, bad int64
		lat     []time.Duration
		err     string
	}
	ws := make([]worker, conc)
	var wg sync.WaitGroup
	begin := time.Now()
	measureFrom := begin.Add(warmup)
	end := measureFrom.Add(d)
	var cpu0, self0 time.Duration
	self := os.Getpid()
	cpuOnce := sync.OnceFunc(func() { cpu0, self0 = procCPU(pid), procCPU(self) })
	req, addr, err := asyncRequest(url, event)
	if err != nil {
		return acceptResult{Failed: 1, FirstErr: err.Error()}
	}
	for i := range ws {
		w := &ws[i]
		wg.Go(func() {
			c := &rawClient{addr: addr, req: req}
			defer c.close()
			for {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				measured := !t0.Before(measureFrom)
				if measured {
					cpuOnce()
				}
				code, err := c.do()
				if !measured {
					continue
				}
				if code == http.StatusAccepted {
					w.ok++
					w.lat = append(w.lat, time.Since(t0))
				} else {
					w.bad++
					if w.err == "" {
						w.err = fmt.Sprintf("status %d err %v", code, err)
					}
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(measureFrom)
	cpu, selfCPU := procCPU(pid)-cpu0, procCPU(self)-self0
	var r acceptResult
	var lat []time.Duration
	for _, w := range ws {
		r.Accepted += w.ok
		r.Failed += w.bad
		lat = append(lat, w.lat...)
		if r.FirstErr == "" {
			r.FirstErr = w.err
		}
	}
	r.Rate = float64(r.Accepted) / el.Seconds()
	r.P50, r.P99 = pct(lat, 50), pct(lat, 99)
	if r.Accepted > 0 {
		r.ServerCPUus = float64(cpu.Microseconds()) / float64(r.Accepted)
		r.ClientCPUus = float64(selfCPU.Microseconds()) / float64(r.Accepted)
	}
	return r
}

// asyncRequest is the bytes of an async invoke (X-Invocation-Type: Event)
// of event to rawURL with the bench's token, and the host:port to send
// them to.
func asyncRequest(rawURL string, event []byte) (req []byte, addr string, err error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" {
		return nil, "", fmt.Errorf("load generator: %s: only http", rawURL)
	}
	head := "POST " + u.RequestURI() + " HTTP/1.1\r\n" +
		"Host: " + u.Host + "\r\n" +
		"Authorization: Bearer " + benchToken + "\r\n" +
		"Content-Type: application/json\r\n" +
		v1.HeaderInvocationType + ": " + v1.InvocationEvent + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(event)) + "\r\n\r\n"
	return append([]byte(head), event...), u.Host, nil
}

// rawClient sends one prepared request at a time on a keep-alive
// connection, dialling again when the connection fails or the server
// closes it.
type rawClient struct {
	addr string
	req  []byte
	conn net.Conn
	br   *bufio.Reader
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// do sends the request and reads the answer: its status code, its body
// discarded. Answers must have a Content-Length (not chunked).
func (c *rawClient) do() (int, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 4096)
		} else {
			c.br.Reset(conn)
		}
	}
	_ = c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	code, keep, err := c.roundTrip()
	if err != nil || !keep {
		c.close()
	}
	return code, err
}

func (c *rawClient) roundTrip() (code int, keep bool, err error) {
	if _, err := c.conn.Write(c.req); err != nil {
		return 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("load generator: bad status line %q", line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("load generator: bad status line %q", line)
	}
	length, keep := -1, true
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return code, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return code, false, fmt.Errorf("load generator: bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			keep = false
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return code, false, fmt.Errorf("load generator: a %s body", v)
		}
	}
	if length < 0 {
		return code, false, fmt.Errorf("load generator: an answer without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return code, false, err
	}
	return code, keep, nil
}

// pct is the p-th percentile of ds (nearest rank); it sorts ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// paddedEvent is a JSON object of exactly size bytes: fields, then a
// "pad" string filling the rest.
func paddedEvent(fields string, size int) []byte {
	head := `{` + fields + `,"pad":"`
	n := size - len(head) - len(`"}`)
	return []byte(head + string(bytes.Repeat([]byte("x"), max(n, 0))) + `"}`)
}
