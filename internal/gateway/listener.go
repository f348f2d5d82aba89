package gateway

import (
	"net"
	"sync"
)

// LimitListener returns a listener that has at most n connections of ln
// open at once: Accept waits while n are open (further clients wait in
// the listen backlog). It is netutil.LimitListener, except that its
// connections keep CloseWrite: net/http half-closes a connection on which
// it refuses a request (431, or after a 408 or 413 with the body unread)
// and waits a little before closing it, so that the client reads the
// answer rather than a reset.
func LimitListener(ln net.Listener, n int) net.Listener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{} // a token per open connection
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	lc := &limitConn{Conn: c, release: func() { <-l.sem }}
	if cw, ok := c.(closeWriter); ok {
		return &limitConnCW{limitConn: lc, cw: cw}, nil
	}
	return lc, nil
}

func (l *limitListener) Close() error {
	err := l.Listener.Close()
	l.closeOnce.Do(func() { close(l.done) })
	return err
}

type closeWriter interface{ CloseWrite() error }

// limitConn gives its token back once closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// limitConnCW is a limitConn of a connection that can half-close.
type limitConnCW struct {
	*limitConn
	cw closeWriter
}

func (c *limitConnCW) CloseWrite() error { return c.cw.CloseWrite() }
