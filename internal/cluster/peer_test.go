package cluster

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/gateway"
	"github.com/stratus-run/stratus/internal/httpevent"
)

// TestPeerSeal checks that the client a server relays to another is
// read back only under the cluster's token, unaltered, and only within
// peerWindow of when it was sealed.
func TestPeerSeal(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := &Cluster{cfg: Config{Token: "secret-one"}}
	b := &Cluster{cfg: Config{Token: "secret-one"}}
	other := &Cluster{cfg: Config{Token: "secret-two"}}
	for _, p := range []httpevent.Peer{
		{Addr: netip.MustParseAddr("203.0.113.7")},
		{Addr: netip.MustParseAddr("2001:db8::1"), TLS: true},
	} {
		v := a.sealPeer(p, now)
		got, ok := b.openPeer(v, now.Add(time.Second))
		if !ok || got != p {
			t.Errorf("open(seal(%v)) = %v, %v", p, got, ok)
		}
		for _, d := range []time.Duration{peerWindow - time.Second, -peerWindow + time.Second} {
			if _, ok := b.openPeer(v, now.Add(d)); !ok {
				t.Errorf("%q not opened %v later", v, d)
			}
		}
		for _, d := range []time.Duration{peerWindow + time.Second, -peerWindow - time.Second, 24 * time.Hour} {
			if _, ok := b.openPeer(v, now.Add(d)); ok {
				t.Errorf("%q opened %v later: replayed", v, d)
			}
		}
		// Another time under the same MAC.
		if redated := strings.Replace(v, " 1800000000 ", " 1800000100 ", 1); redated == v {
			t.Errorf("%q: no time in the seal", v)
		} else if _, ok := b.openPeer(redated, now.Add(100*time.Second)); ok {
			t.Errorf("redated %q opened", redated)
		}
		if _, ok := other.openPeer(v, now); ok {
			t.Errorf("%q opened under another token", v)
		}
		// Another address under the same MAC.
		forged := strings.Replace(v, p.Addr.String(), "198.51.100.1", 1)
		if _, ok := b.openPeer(forged, now); ok {
			t.Errorf("forged %q opened", forged)
		}
	}
	for _, v := range []string{"", "1.2.3.4", "1.2.3.4 http", "1.2.3.4 http zz", "x http 1 " + strings.Repeat("0", 64)} {
		if _, ok := b.openPeer(v, now); ok {
			t.Errorf("%q opened", v)
		}
	}
	if v := (&Cluster{}).sealPeer(httpevent.Peer{Addr: netip.MustParseAddr("203.0.113.7")}, now); v != "" {
		t.Errorf("sealed without a token: %q", v)
	}
}

// TestForwardedPeer: a request that says another server forwarded it is
// judged by the client its seal names; without a seal that holds (none,
// another token's, a stale one) as from an untrusted peer, whatever the
// sender's address; the seal never goes on to the gateway.
func TestForwardedPeer(t *testing.T) {
	c := &Cluster{cfg: Config{Token: "secret"}}
	var got httpevent.Peer
	var sawSeal bool
	f := &forwarder{c: c, next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, sawSeal = gateway.PeerOf(r), r.Header.Get(headerPeer) != ""
	})}
	client := httpevent.Peer{Addr: netip.MustParseAddr("203.0.113.7"), TLS: true}
	sender := httpevent.Peer{Addr: netip.MustParseAddr("10.0.0.2")}
	now := time.Now()
	for _, tc := range []struct {
		name      string
		forwarded bool
		seal      string
		want      httpevent.Peer
	}{
		{"sealed", true, c.sealPeer(client, now), client},
		{"no seal", true, "", httpevent.Peer{Addr: sender.Addr, Untrusted: true}},
		{"another cluster's seal", true, (&Cluster{cfg: Config{Token: "other"}}).sealPeer(client, now), httpevent.Peer{Addr: sender.Addr, Untrusted: true}},
		{"a stale seal", true, c.sealPeer(client, now.Add(-2*peerWindow)), httpevent.Peer{Addr: sender.Addr, Untrusted: true}},
		{"a client's copy of a seal", false, c.sealPeer(client, now), sender},
	} {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr = "10.0.0.2:4000"
		if tc.forwarded {
			r.Header.Set(HeaderForwardedBy, "a")
		}
		if tc.seal != "" {
			r.Header.Set(headerPeer, tc.seal)
		}
		f.ServeHTTP(httptest.NewRecorder(), r)
		if got != tc.want || sawSeal {
			t.Errorf("%s: the gateway judges %+v (seal passed: %v), want %+v", tc.name, got, sawSeal, tc.want)
		}
	}
}
