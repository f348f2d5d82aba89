package cluster

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stratus-run/stratus/internal/httpevent"
)

// TestPeerSeal checks that the client a server relays to another is
// read back only under the cluster's token, unaltered.
func TestPeerSeal(t *testing.T) {
	a := &Cluster{cfg: Config{Token: "secret-one"}}
	b := &Cluster{cfg: Config{Token: "secret-one"}}
	other := &Cluster{cfg: Config{Token: "secret-two"}}
	for _, p := range []httpevent.Peer{
		{Addr: netip.MustParseAddr("203.0.113.7")},
		{Addr: netip.MustParseAddr("2001:db8::1"), TLS: true},
	} {
		v := a.sealPeer(p)
		got, ok := b.openPeer(v)
		if !ok || got != p {
			t.Errorf("open(seal(%v)) = %v, %v", p, got, ok)
		}
		if _, ok := other.openPeer(v); ok {
			t.Errorf("%q opened under another token", v)
		}
		// Another address under the same MAC.
		forged := strings.Replace(v, p.Addr.String(), "198.51.100.1", 1)
		if _, ok := b.openPeer(forged); ok {
			t.Errorf("forged %q opened", forged)
		}
	}
	for _, v := range []string{"", "1.2.3.4", "1.2.3.4 http", "1.2.3.4 http zz", "x http " + strings.Repeat("0", 64)} {
		if _, ok := b.openPeer(v); ok {
			t.Errorf("%q opened", v)
		}
	}
	if v := (&Cluster{}).sealPeer(httpevent.Peer{Addr: netip.MustParseAddr("203.0.113.7")}); v != "" {
		t.Errorf("sealed without a token: %q", v)
	}
}
