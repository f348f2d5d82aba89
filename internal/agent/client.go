package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

// Client is the driver's side of one agent. Its methods are safe for
// concurrent use; each is bounded by its ctx only (Wait and Follow last
// as long as the program runs).
type Client struct {
	Addr  netip.AddrPort // the pod's IP and Port
	Token string
	HTTP  *http.Client // nil: a default with sane timeouts
}

// defaultHTTP bounds connecting and waiting for an answer's headers (the
// agent sends those of Wait and Follow at once), not the bodies.
var defaultHTTP = &http.Client{Transport: &http.Transport{
	DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	ResponseHeaderTimeout: 30 * time.Second,
	IdleConnTimeout:       90 * time.Second,
	MaxIdleConnsPerHost:   8,
}}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

// do sends a request to the agent and returns its answer when its status
// is ok; any other answer becomes an error of its kind, and no answer an
// ErrUnavailable.
func (c *Client) do(ctx context.Context, method, path string, ok int) (*http.Response, error) {
	what := fmt.Sprintf("agent %s: %s %s", c.Addr, method, path)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Addr.String()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, err, stratus.ErrUnavailable)
	}
	if resp.Header.Get(agentHeader) == "" {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %d from something that is not a Stratus agent: %w", what, resp.StatusCode, stratus.ErrUnavailable)
	}
	if resp.StatusCode != ok {
		defer resp.Body.Close()
		return nil, statusError(what, resp)
	}
	return resp, nil
}

// Ready returns nil once the agent has its spec and waits for
// Start (and after). Before, it returns an ErrUnavailable; when the setup
// failed, an error wrapping ErrSetup and ErrUnavailable with the agent's
// message, after which the agent exits 1. It does not wait.
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/ready", http.StatusNoContent)
	if err != nil {
		var ae *answerError
		if errors.As(err, &ae) && ae.status == http.StatusInternalServerError {
			return fmt.Errorf("%w: %w", err, ErrSetup)
		}
		return err
	}
	resp.Body.Close()
	return nil
}

// Start starts the program. It returns once the program has been started
// (exec succeeded), or with why it could not be: ErrInvalid naming the
// program or the folder at fault (the agent then reports exit code 127 to
// Wait and exits), ErrUnavailable while the agent sets up or after its
// setup failed, ErrConflict when it was started already.
func (c *Client) Start(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/start", http.StatusNoContent)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Wait blocks until the program has exited and reports how: its code, or
// the signal's name ("killed", "terminated") with Code -1, and OOM when
// the container's cgroup counted an OOM kill meanwhile. Every caller gets
// the answer, also after the exit (while the agent lives).
func (c *Client) Wait(ctx context.Context) (sandbox.Exit, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/wait", http.StatusOK)
	if err != nil {
		return sandbox.Exit{}, err
	}
	defer resp.Body.Close()
	var e wireExit
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		if ctx.Err() != nil {
			return sandbox.Exit{}, fmt.Errorf("agent %s: wait: %w", c.Addr, ctx.Err())
		}
		return sandbox.Exit{}, fmt.Errorf("agent %s: wait: the agent ended without reporting an exit (%v): %w", c.Addr, err, stratus.ErrUnavailable)
	}
	return sandbox.Exit(e), nil
}

// Stats reports the peak memory and the CPU time of the agent's
// container (its cgroup), the program's and the agent's together.
func (c *Client) Stats(ctx context.Context) (sandbox.Stats, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/stats", http.StatusOK)
	if err != nil {
		return sandbox.Stats{}, err
	}
	defer resp.Body.Close()
	var st wireStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return sandbox.Stats{}, fmt.Errorf("agent %s: stats: %w: %w", c.Addr, err, stratus.ErrUnavailable)
	}
	return sandbox.Stats(st), nil
}

// Follower copies a program's output; see Client.Follow.
type Follower struct {
	c    *Client
	done chan struct{}

	mu      sync.Mutex
	written [2]int64 // offsets, in each stream's whole output, written out
	ended   [2]bool
	err     error         // the first stream's failure
	changed chan struct{} // closed and replaced at every change
}

var streamNames = [2]string{"stdout", "stderr"}

// Follow copies the program's output from its start (what no follower
// took yet) to stdout and stderr (nil discards), from two goroutines the
// Follower owns, until both streams end (the program exited and its
// output was drained) or ctx ends. An agent holds one follower per stream
// at a time: a second Follow while one runs fails its streams with
// ErrConflict. A broken connection is retried a few times, resuming
// without duplicates.
func (c *Client) Follow(ctx context.Context, stdout, stderr io.Writer) *Follower {
	f := &Follower{c: c, done: make(chan struct{}), changed: make(chan struct{})}
	var wg sync.WaitGroup
	for i, w := range [2]io.Writer{stdout, stderr} {
		if w == nil {
			w = io.Discard
		}
		wg.Go(func() { f.copyStream(ctx, i, w) })
	}
	go func() {
		wg.Wait()
		close(f.done)
	}()
	return f
}

// Done is closed when both streams have ended.
func (f *Follower) Done() <-chan struct{} { return f.done }

// Sync returns once everything the program wrote before the call has been
// written to stdout and stderr. It fails when a stream ended in an error
// before that, or with ctx.
func (f *Follower) Sync(ctx context.Context) error {
	select {
	case <-f.done:
		return f.endErr()
	default:
	}
	resp, err := f.c.do(ctx, http.MethodPost, "/v1/sync", http.StatusOK)
	if err != nil {
		select {
		case <-f.done:
			return f.endErr()
		default:
			return err
		}
	}
	var off wireOffsets
	err = json.NewDecoder(resp.Body).Decode(&off)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("agent %s: sync: %w: %w", f.c.Addr, err, stratus.ErrUnavailable)
	}
	want := [2]int64{off.Stdout, off.Stderr}
	for {
		f.mu.Lock()
		reached := true
		for i := range want {
			if f.written[i] < want[i] {
				if f.ended[i] {
					err := f.err
					f.mu.Unlock()
					if err == nil {
						err = fmt.Errorf("agent %s: sync: %s ended short", f.c.Addr, streamNames[i])
					}
					return err
				}
				reached = false
			}
		}
		ch := f.changed
		f.mu.Unlock()
		if reached {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("agent %s: sync: %w", f.c.Addr, ctx.Err())
		}
	}
}

func (f *Follower) endErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// copyStream follows stream i until it ends, retrying broken connections.
func (f *Follower) copyStream(ctx context.Context, i int, w io.Writer) {
	const maxFailures = 5
	failures := 0
	for {
		ended, progressed, err := f.copyOnce(ctx, i, w)
		if ended {
			f.finish(i, nil)
			return
		}
		if progressed {
			failures = 0
		}
		failures++
		if ctx.Err() != nil || failures > maxFailures || errors.Is(err, stratus.ErrConflict) || errors.Is(err, stratus.ErrInvalid) {
			if ctx.Err() != nil {
				err = fmt.Errorf("agent %s: follow %s: %w", f.c.Addr, streamNames[i], ctx.Err())
			}
			f.finish(i, err)
			return
		}
		select {
		case <-time.After(50 * time.Millisecond << failures):
		case <-ctx.Done():
		}
	}
}

// copyOnce reads stream i once, from where the agent's buffer starts,
// skipping what was written already.
func (f *Follower) copyOnce(ctx context.Context, i int, w io.Writer) (ended, progressed bool, err error) {
	resp, err := f.c.do(ctx, http.MethodGet, "/v1/output/"+streamNames[i], http.StatusOK)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	off, err := strconv.ParseInt(resp.Header.Get(offsetHeader), 10, 64)
	if err != nil {
		return false, false, fmt.Errorf("agent %s: follow %s: bad %s header: %w", f.c.Addr, streamNames[i], offsetHeader, stratus.ErrUnavailable)
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			b := buf[:n]
			f.mu.Lock()
			skip := min(max(f.written[i]-off, 0), int64(n))
			f.mu.Unlock()
			off += int64(n)
			if b = b[skip:]; len(b) > 0 {
				if _, err := w.Write(b); err != nil {
					// The writer's failure is final.
					return false, progressed, fmt.Errorf("follow %s: write: %w: %w", streamNames[i], err, stratus.ErrInvalid)
				}
				progressed = true
				f.mu.Lock()
				f.written[i] = off
				close(f.changed)
				f.changed = make(chan struct{})
				f.mu.Unlock()
			}
		}
		if rerr == io.EOF {
			return true, progressed, nil
		}
		if rerr != nil {
			return false, progressed, fmt.Errorf("agent %s: follow %s: %w: %w", f.c.Addr, streamNames[i], rerr, stratus.ErrUnavailable)
		}
	}
}

func (f *Follower) finish(i int, err error) {
	f.mu.Lock()
	f.ended[i] = true
	if f.err == nil {
		f.err = err
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}
