package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// FreeAddr returns a loopback address whose port no one listens on, on
// any address: a server that listens on all of them (gosvc), or the
// Stratus server's Runtime API listeners on the sandboxes' bridge, could
// hold a port 127.0.0.1 shares. There is a small race until the caller
// binds it.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)), nil
}

// PollDial connects to addr every 100 µs until it accepts or deadline.
func PollDial(addr string, deadline time.Time) (net.Conn, error) {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s does not accept connections: %w", addr, err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

var getReq = []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")

// FirstAnswer sends one GET / on conn and reads the whole answer, which
// must be 200, within 10 s.
func FirstAnswer(conn net.Conn) error {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(getReq); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// GetOK sends GET url on c and reads the whole answer, which must be 200.
func GetOK(ctx context.Context, c *http.Client, url string, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, bytes.TrimSpace(b))
	}
	return err
}

// WaitAnswer sends GET url on c every 20 ms, up to 100 times, until it
// gets any answer; it opens c's connection to the server.
func WaitAnswer(ctx context.Context, c *http.Client, url string) error {
	for range 100 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer", url)
}

// WaitOK sends t's request every 20 ms until it answers 200 or ctx ends
// (to each of its URLs in turn, until each has answered).
func WaitOK(ctx context.Context, t *Target) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for i := 0; ; {
		if do(ctx, c, t, t.URLFor(i)).ok {
			if i++; i >= max(1, len(t.URLs)) {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", t.URLFor(i), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Invoked is the answer to one invoke of a function.
type Invoked struct {
	D    time.Duration // from sending the request to the answer's last byte
	Cold bool          // X-Stratus-Cold-Start: true
	Init time.Duration // X-Stratus-Init-Duration-Ms, 0 if none
}

// Invoke sends t's request once on c and reads the whole answer, which
// must be 200.
func Invoke(ctx context.Context, c *http.Client, t *Target) (Invoked, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return Invoked{}, err
	}
	req.Header["Content-Type"] = []string{"application/json"}
	for k, v := range t.Header {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return Invoked{}, fmt.Errorf("invoke %s: %w", t.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		return Invoked{}, fmt.Errorf("invoke %s: %d %s %v", t.URL, resp.StatusCode, b, err)
	}
	in := Invoked{D: d, Cold: resp.Header.Get(v1.HeaderColdStart) == "true"}
	if ms, err := strconv.ParseFloat(resp.Header.Get(v1.HeaderInitDuration), 64); err == nil {
		in.Init = time.Duration(ms * float64(time.Millisecond))
	}
	return in, nil
}

// Parallel calls fn for each item with workers goroutines; it returns the
// first error, and stops feeding items then.
func Parallel(ctx context.Context, items []string, workers int, fn func(string) error) error {
	ch := make(chan string)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for it := range ch {
				if err := fn(it); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}
