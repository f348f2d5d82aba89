package services

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

// TestH2CProbeAndTransport: for an h2c service, the probes and the
// proxy's transport speak HTTP/2 without TLS to a server that speaks
// nothing else; an HTTP/1.1 service's do not.
func TestH2CProbeAndTransport(t *testing.T) {
	var only http.Protocols
	only.SetUnencryptedHTTP2(true)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	}))
	srv.Config.Protocols = &only
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ap := netip.MustParseAddrPort(u.Host)
	port := int(ap.Port())

	for _, h2c := range []bool{true, false} {
		p := newProber(ap.Addr(), port, "/healthz", h2c)
		err := p.check()
		p.close()
		if (err == nil) != h2c {
			t.Errorf("probe of an h2c-only server, h2c %v: %v", h2c, err)
		}
	}

	tr := newTransport(true)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+hostPort(ap.Addr(), port)+"/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/2.0" {
		t.Errorf("the h2c transport's request arrived as %q", b)
	}
	if _, err := newTransport(false).RoundTrip(req); err == nil {
		t.Error("an HTTP/1.1 transport's request to an h2c-only server succeeded")
	}
}

// TestProbeLooksLikeKubelet: an HTTP probe says it is one as the kubelet
// does, so a program written for Kubernetes that answers probes apart
// from traffic (as Knative's images do) becomes ready.
func TestProbeLooksLikeKubelet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("User-Agent"), "kube-probe/") || r.Header.Get("Accept") != "*/*" {
			http.Error(w, "not a probe", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ap := netip.MustParseAddrPort(u.Host)
	p := newProber(ap.Addr(), int(ap.Port()), "/healthz", false)
	defer p.close()
	if err := p.check(); err != nil {
		t.Errorf("probe: %v", err)
	}
}
