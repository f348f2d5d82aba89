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

// probeUserAgent is the User-Agent of HTTP probes: the kubelet's form, by
// whose prefix "kube-probe/" programs written for Kubernetes and Knative
// (Knative's own images among them) tell a probe from traffic.
const probeUserAgent = "kube-probe/1.35"

// describeProbe says why a probe of path (a TCP connect when "") of a
// replica on port failed.
func describeProbe(path string, port int, err error) string {
	if path != "" {
		return fmt.Sprintf("GET %s: %v", path, err)
	}
	return fmt.Sprintf("port %d does not accept connections: %v", port, err)
}

// newTransport keeps the connections to one replica: HTTP/1.1, or with
// h2c HTTP/2 without TLS by prior knowledge (see h2cOnly).
func newTransport(h2c bool) *http.Transport {
	t := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// Replies pass on as the container compressed them, or not.
		DisableCompression: true,
	}
	if h2c {
		t.Protocols = h2cOnly()
	}
	return t
}

// h2cOnly is the protocols of a transport to an h2c replica: HTTP/2
// without TLS and nothing else, which net/http's Transport speaks with
// prior knowledge (no Upgrade: h2c round trip first) to http:// URLs. A
// replica's connection then carries many requests at once, as many as
// its SETTINGS_MAX_CONCURRENT_STREAMS allows; a request beyond that waits
// for a stream, and the service's concurrency bounds them anyway.
func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// prober checks a replica: HTTP GET on the health path (any 2xx or 3xx
// passes), else a TCP connect.
type prober struct {
	addr   string
	url    string
	client *http.Client
}

// newProber returns the prober of path (a TCP connect when "") on port
// of the replica at a; h2c: its HTTP probes speak HTTP/2 without TLS, as
// its requests do, each on a new connection.
func newProber(a netip.Addr, port int, path string, h2c bool) *prober {
	p := &prober{addr: hostPort(a, port)}
	if path != "" {
		p.url = "http://" + p.addr + path
		t := &http.Transport{
			DialContext:       (&net.Dialer{Timeout: probeTimeout}).DialContext,
			DisableKeepAlives: true,
		}
		if h2c {
			t.Protocols = h2cOnly()
		}
		p.client = &http.Client{
			Timeout:       probeTimeout,
			Transport:     t,
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
	req, err := http.NewRequest(http.MethodGet, p.url, nil)
	if err != nil {
		return err
	}
	// As the kubelet sends them.
	req.Header.Set("User-Agent", probeUserAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := p.client.Do(req)
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
