package services

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// livenessFailures in a row restart a replica.
const livenessFailures = 3

// probeTimeout bounds one probe.
const probeTimeout = time.Second

// describeProbe says why a probe of path (a TCP connect when "") of a
// replica on port failed.
func describeProbe(path string, port int, err error) string {
	if path != "" {
		return fmt.Sprintf("GET %s: %v", path, err)
	}
	return fmt.Sprintf("port %d does not accept connections: %v", port, err)
}

// newTransport keeps the connections to one replica.
func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// Replies pass on as the container compressed them, or not.
		DisableCompression: true,
	}
}

// prober checks a replica: HTTP GET on the health path (any 2xx or 3xx
// passes), else a TCP connect.
type prober struct {
	addr   string
	url    string
	client *http.Client
}

func newProber(a netip.Addr, port int, path string) *prober {
	p := &prober{addr: hostPort(a, port)}
	if path != "" {
		p.url = "http://" + p.addr + path
		p.client = &http.Client{
			Timeout: probeTimeout,
			Transport: &http.Transport{
				DialContext:       (&net.Dialer{Timeout: probeTimeout}).DialContext,
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return p
}

func (p *prober) check() error {
	if p.client == nil {
		c, err := net.DialTimeout("tcp", p.addr, probeTimeout)
		if err != nil {
			return err
		}
		return c.Close()
	}
	resp, err := p.client.Get(p.url)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return uerr.Err
		}
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (p *prober) close() {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}
