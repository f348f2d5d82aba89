package gateway

import (
	"errors"
	"net"
	"testing"
	"time"
)

func TestLimitListener(t *testing.T) {
	base, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(base, 2)
	accepted := make(chan net.Conn, 3)
	acceptDone := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptDone <- err
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", base.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	var open []net.Conn
	for range 2 {
		select {
		case c := <-accepted:
			open = append(open, c)
		case <-time.After(10 * time.Second):
			t.Fatal("two connections not accepted")
		}
	}
	// The third waits while two are open.
	select {
	case <-accepted:
		t.Fatal("a third connection accepted while two are open")
	case <-time.After(200 * time.Millisecond):
	}
	// Connections keep CloseWrite, for net/http's half-close.
	if _, ok := open[0].(interface{ CloseWrite() error }); !ok {
		t.Errorf("accepted connection %T has no CloseWrite", open[0])
	}
	open[0].Close()
	open[0].Close() // gives its place back once only
	select {
	case c := <-accepted:
		open[0] = c
	case <-time.After(10 * time.Second):
		t.Fatal("the third connection not accepted after one closed")
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	// Accept returns at Close, even while at the limit.
	select {
	case err := <-acceptDone:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
	for _, c := range open {
		c.Close()
	}
}
