package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// RawRun is a run of PostRaw.
type RawRun struct {
	Rate        float64       // answers with the wanted status per second
	OK          int64         // answers with the wanted status
	Failed      int64         // other answers or transport errors
	P50, P99    time.Duration // of one wanted answer's round trip
	ServerCPUus float64       // the server's CPU (user + system) per wanted answer, µs
	ClientCPUus float64       // this process's CPU per wanted answer, µs
	FirstErr    string
}

// PostRaw has conc clients POST body (application/json, with header) to
// url back to back, for warmup (unmeasured) and then d, and counts the
// answers with status want. The server's CPU is that of process pid; the
// client's that of this process.
//
// Each client is one keep-alive HTTP/1.1 connection that writes a request
// prepared once and reads the answer's status, headers and sized body,
// without net/http's client: on two cores the load generator's CPU is
// taken from the server it measures, and net/http's client costs several
// times as much per request (52–71 µs against 21–27 µs for this one).
func PostRaw(ctx context.Context, url string, header map[string]string, body []byte, want, conc int, warmup, d time.Duration, pid int) RawRun {
	type worker struct {
		ok, bad int64
		lat     []time.Duration
		err     string
	}
	req, addr, err := rawRequest(url, header, body)
	if err != nil {
		return RawRun{Failed: 1, FirstErr: err.Error()}
	}
	ws := make([]worker, conc)
	var wg sync.WaitGroup
	measureFrom := time.Now().Add(warmup)
	end := measureFrom.Add(d)
	var cpu0, self0 time.Duration
	self := os.Getpid()
	cpuOnce := sync.OnceFunc(func() { cpu0, self0 = ProcCPU(pid), ProcCPU(self) })
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
				if code == want {
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
	cpu, selfCPU := ProcCPU(pid)-cpu0, ProcCPU(self)-self0
	var r RawRun
	var lat []time.Duration
	for _, w := range ws {
		r.OK += w.ok
		r.Failed += w.bad
		lat = append(lat, w.lat...)
		if r.FirstErr == "" {
			r.FirstErr = w.err
		}
	}
	r.Rate = float64(r.OK) / el.Seconds()
	slices.Sort(lat)
	r.P50, r.P99 = Rank(lat, 0.50), Rank(lat, 0.99)
	if r.OK > 0 {
		r.ServerCPUus = float64(cpu.Microseconds()) / float64(r.OK)
		r.ClientCPUus = float64(selfCPU.Microseconds()) / float64(r.OK)
	}
	return r
}

// rawRequest is the bytes of a POST of body to rawURL with header (in
// key order), and the host:port to send them to.
func rawRequest(rawURL string, header map[string]string, body []byte) (req []byte, addr string, err error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" {
		return nil, "", fmt.Errorf("load generator: %s: only http", rawURL)
	}
	var b bytes.Buffer
	b.WriteString("POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nContent-Type: application/json\r\n")
	keys := make([]string, 0, len(header))
	for k := range header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(k + ": " + header[k] + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes(), u.Host, nil
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
