package httpevent

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	trusted := func(a netip.Addr) bool {
		return netip.MustParsePrefix("10.0.0.0/8").Contains(a) || a == netip.MustParseAddr("fd00::1")
	}
	tests := []struct {
		name   string
		remote string
		tls    bool
		host   string
		h      http.Header
		prefix string
		want   Forward
	}{{
		name: "an untrusted peer's headers are replaced", remote: "203.0.113.7:5000", host: "app.localhost:8080",
		h: http.Header{
			"X-Forwarded-For": {"1.1.1.1"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil"},
			"X-Forwarded-Port": {"1"}, "X-Forwarded-Prefix": {"/evil"}, "Forwarded": {"for=1.1.1.1"},
		},
		prefix: "/fn/app",
		want: Forward{
			Client: "203.0.113.7", For: "203.0.113.7", Proto: "http", Host: "app.localhost:8080", Port: "8080",
			Prefix: "/fn/app", Forwarded: `for=203.0.113.7;host="app.localhost:8080";proto=http`,
		},
	}, {
		name: "an untrusted IPv6 peer over TLS, no port in Host", remote: "[2001:db8::7]:5000", tls: true, host: "app.example",
		want: Forward{
			Client: "2001:db8::7", For: "2001:db8::7", Proto: "https", Host: "app.example", Port: "443",
			Forwarded: `for="[2001:db8::7]";host=app.example;proto=https`,
		},
	}, {
		name: "a trusted proxy's headers are kept and appended to", remote: "10.0.0.2:5000", host: "app.localhost:8080",
		h: http.Header{
			"X-Forwarded-For": {"203.0.113.7, 10.0.0.9"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example"},
			"X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/api/"}, "Forwarded": {`for=203.0.113.7;proto=https, for=10.0.0.9`},
		},
		prefix: "/svc/app",
		want: Forward{
			Client: "203.0.113.7", For: "203.0.113.7, 10.0.0.9, 10.0.0.2", Proto: "https", Host: "app.example", Port: "443",
			Prefix: "/api/svc/app", Forwarded: `for=203.0.113.7;proto=https, for=10.0.0.9, for=10.0.0.2;host="app.localhost:8080";proto=http`,
			Trusted: true,
		},
	}, {
		name: "a spoofed entry left of an untrusted one is not the client", remote: "10.0.0.2:5000", host: "h",
		h: http.Header{"X-Forwarded-For": {"6.6.6.6", "198.51.100.1"}},
		want: Forward{
			Client: "198.51.100.1", For: "6.6.6.6, 198.51.100.1, 10.0.0.2", Proto: "http", Host: "h", Port: "80",
			Forwarded: "for=10.0.0.2;host=h;proto=http", Trusted: true,
		},
	}, {
		name: "without X-Forwarded-For the Forwarded chain names the client", remote: "[fd00::1]:5000", host: "h",
		h: http.Header{"Forwarded": {`for="[2001:db8::9]:4711";proto=https`}},
		want: Forward{
			Client: "2001:db8::9", For: "2001:db8::9, fd00::1", Proto: "https", Host: "h", Port: "443",
			Forwarded: `for="[2001:db8::9]:4711";proto=https, for="[fd00::1]";host=h;proto=http`, Trusted: true,
		},
	}, {
		name: "a trusted proxy's proto without a port gives the proto's port", remote: "10.0.0.2:5000", host: "app.localhost:8080",
		h: http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}},
		want: Forward{
			Client: "203.0.113.7", For: "203.0.113.7, 10.0.0.2", Proto: "https", Host: "app.localhost:8080", Port: "443",
			Forwarded: `for=10.0.0.2;host="app.localhost:8080";proto=http`, Trusted: true,
		},
	}, {
		name: "a trusted proxy's host with a port gives that port", remote: "10.0.0.2:5000", host: "h:8080",
		h: http.Header{"X-Forwarded-For": {"203.0.113.7"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"app.example:8443"}},
		want: Forward{
			Client: "203.0.113.7", For: "203.0.113.7, 10.0.0.2", Proto: "https", Host: "app.example:8443", Port: "8443",
			Forwarded: `for=10.0.0.2;host="h:8080";proto=http`, Trusted: true,
		},
	}, {
		name: "Forwarded alone names client, proto and host, its last element's", remote: "10.0.0.2:5000", host: "h",
		h: http.Header{"Forwarded": {`for=6.6.6.6;proto=http;host=evil, for=198.51.100.9;proto=https;host=app.example`}},
		want: Forward{
			Client: "198.51.100.9", For: "6.6.6.6, 198.51.100.9, 10.0.0.2", Proto: "https", Host: "app.example", Port: "443",
			Forwarded: `for=6.6.6.6;proto=http;host=evil, for=198.51.100.9;proto=https;host=app.example, for=10.0.0.2;host=h;proto=http`, Trusted: true,
		},
	}, {
		name: "a client's X-Forwarded-For that disagrees with the proxy's Forwarded: neither is believed", remote: "10.0.0.2:5000", host: "h",
		h: http.Header{
			"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Proto": {"https"},
			"Forwarded": {`for=198.51.100.9;proto=https`},
		},
		want: Forward{
			Client: "10.0.0.2", For: "10.0.0.2", Proto: "http", Host: "h", Port: "80",
			Forwarded: `for=10.0.0.2;host=h;proto=http`,
		},
	}, {
		name: "a client's Forwarded that disagrees with the proxy's X-Forwarded-For: neither is believed", remote: "10.0.0.2:5000", host: "h",
		h: http.Header{
			"X-Forwarded-For": {"198.51.100.9"}, "Forwarded": {`for=6.6.6.6;proto=https`},
		},
		want: Forward{
			Client: "10.0.0.2", For: "10.0.0.2", Proto: "http", Host: "h", Port: "80",
			Forwarded: `for=10.0.0.2;host=h;proto=http`,
		},
	}, {
		name: "a trusted proxy alone is the client", remote: "10.1.2.3:1", host: "h",
		want: Forward{
			Client: "10.1.2.3", For: "10.1.2.3", Proto: "http", Host: "h", Port: "80",
			Forwarded: "for=10.1.2.3;host=h;proto=http", Trusted: true,
		},
	}, {
		name: "an obfuscated node is the client as the proxy says", remote: "10.1.2.3:1", host: "h",
		h: http.Header{"X-Forwarded-For": {"unknown"}},
		want: Forward{
			Client: "unknown", For: "unknown, 10.1.2.3", Proto: "http", Host: "h", Port: "80",
			Forwarded: "for=10.1.2.3;host=h;proto=http", Trusted: true,
		},
	}, {
		name: "a peer without an address", remote: "@", host: "h",
		h:    http.Header{"X-Forwarded-For": {"1.1.1.1"}},
		want: Forward{Proto: "http", Host: "h", Port: "80", Forwarded: "for=unknown;host=h;proto=http"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			r.RemoteAddr, r.Host = tt.remote, tt.host
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, vs := range tt.h {
				r.Header[k] = vs
			}
			got := Resolve(r, PeerOf(r), tt.prefix, trusted)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve (-want +got):\n%s", diff)
			}
			// Nobody trusted: the same as an untrusted peer.
			if got := Resolve(r, PeerOf(r), tt.prefix, nil); got.Trusted || got.Forwarded != "for="+forwardedNode(PeerOf(r).Addr)+";host="+forwardedValue(tt.host)+";proto="+got.Proto {
				t.Errorf("Resolve with nobody trusted: %+v", got)
			}
		})
	}
}

func TestForwardedFor(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"for=192.0.2.43", []string{"192.0.2.43"}},
		{`For="[2001:db8:cafe::17]:4711"`, []string{"[2001:db8:cafe::17]:4711"}},
		{"for=192.0.2.60;proto=http;by=203.0.113.43", []string{"192.0.2.60"}},
		{"for=192.0.2.43, for=198.51.100.17", []string{"192.0.2.43", "198.51.100.17"}},
		{"proto=https, for=_hidden ,for=unknown", []string{"", "_hidden", "unknown"}},
		{`for="a\"b,c";host=x, for=d`, []string{`a"b,c`, "d"}},
		{"for=1.2.3.4, garbage", []string{"1.2.3.4"}},
		{`for="unterminated`, nil},
		{"", nil},
	} {
		if got := ForwardedFor(tt.in); !cmp.Equal(got, tt.want) {
			t.Errorf("ForwardedFor(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzForwardedFor checks that the parser never panics, that the
// elements this package writes read back (the for= node is the node
// written), and that one appended to a value read up to its end is read
// too.
func FuzzForwardedFor(f *testing.F) {
	for _, s := range []string{
		"for=192.0.2.43", `for="[2001:db8::1]:80";proto=https, for=10.0.0.1`, `for="\"\\";host=x`,
		"for=a;;b=c", ",,for=x,,", `host="a:1";for=_x`, "for=1.2.3.4, garbage", `for="`, "=", ";",
	} {
		f.Add(s, "203.0.113.7", "app.example:8080")
	}
	f.Add("", "2001:db8::1", `we"ird\host`)
	f.Fuzz(func(t *testing.T, prior, addr, host string) {
		_ = ForwardedFor(prior)
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return
		}
		a = a.Unmap().WithZone("")
		elem := "for=" + forwardedNode(a) + ";host=" + forwardedValue(host) + ";proto=http"
		got := ForwardedFor(elem)
		want := a.String()
		if a.Is6() {
			want = "[" + want + "]"
		}
		if len(got) != 1 || got[0] != want {
			t.Fatalf("ForwardedFor(%q) = %q, want [%q]", elem, got, want)
		}
		n, ok := nodeAddr(got[0])
		if !ok || n != a {
			t.Fatalf("nodeAddr(%q) = %v, %v; want %v", got[0], n, ok, a)
		}
		// Appended to a value of well-formed elements, it is read last.
		const mark = "for=_m4rk"
		if p := ForwardedFor(prior + ", " + mark); len(p) > 0 && p[len(p)-1] == "_m4rk" && !strings.Contains(prior, "_m4rk") {
			if all := ForwardedFor(prior + ", " + elem); len(all) != len(p) || all[len(all)-1] != want {
				t.Fatalf("ForwardedFor(%q) = %q: the appended element is lost", prior+", "+elem, all)
			}
		}
	})
}

// FuzzResolve checks, for whatever a trusted peer sends, that Resolve
// never panics, that what it believes always ends with this hop (the
// peer last in X-Forwarded-For, this hop's element last in Forwarded),
// that a peer marked Untrusted is believed in nothing, and that a port
// is never left out.
func FuzzResolve(f *testing.F) {
	for _, s := range [][5]string{
		{"203.0.113.7", "", "https", "", ""},
		{"", `for=198.51.100.9;proto=https;host=app.example`, "", "", ""},
		{"6.6.6.6", `for=198.51.100.9;proto=https`, "https", "", ""},
		{"198.51.100.9", `for="198.51.100.9:80"`, "https, http", "app.example:8443", ""},
		{"unknown, 10.0.0.9", `for=_hidden, for=unknown`, "wss", "a,b", "1"},
		{"", `for="[2001:db8::9]:4711";proto=https`, "", "", ""},
		{"", `garbage`, "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	trusted := func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/8").Contains(a) }
	f.Fuzz(func(t *testing.T, xff, fwd, proto, host, port string) {
		r := httptest.NewRequest("GET", "/x", nil)
		r.RemoteAddr, r.Host = "10.0.0.2:5000", "h"
		for k, v := range map[string]string{"X-Forwarded-For": xff, "Forwarded": fwd, "X-Forwarded-Proto": proto, "X-Forwarded-Host": host, "X-Forwarded-Port": port} {
			if v != "" {
				r.Header[k] = []string{v}
			}
		}
		own := "for=10.0.0.2;host=h;proto=http"
		got := Resolve(r, PeerOf(r), "", trusted)
		if got.For != "10.0.0.2" && !strings.HasSuffix(got.For, ", 10.0.0.2") {
			t.Errorf("For = %q, not ending with the peer", got.For)
		}
		if got.Forwarded != own && !strings.HasSuffix(got.Forwarded, ", "+own) {
			t.Errorf("Forwarded = %q, not ending with this hop's", got.Forwarded)
		}
		if got.Port == "" || got.Proto == "" || got.Client == "" {
			t.Errorf("Resolve = %+v: a value left out", got)
		}
		p := PeerOf(r)
		p.Untrusted = true
		want := Forward{Client: "10.0.0.2", For: "10.0.0.2", Proto: "http", Host: "h", Port: "80", Forwarded: own}
		if diff := cmp.Diff(want, Resolve(r, p, "", trusted)); diff != "" {
			t.Errorf("Resolve of an Untrusted peer (-want +got):\n%s", diff)
		}
	})
}
