package gateway

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/stratus-run/stratus/internal/httpevent"
)

// proxies is the set of peers whose forwarding headers (X-Forwarded-*,
// Forwarded) the gateway believes; nil believes nobody.
type proxies []netip.Prefix

// trusts reports whether a is in one of p's prefixes.
func (p proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, pre := range p {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

type peerKey struct{}

// WithPeer returns ctx marked with the peer a request came from as
// another server of the cluster saw it (the request's TCP peer is that
// server): the gateway then applies its forwarding rule
// (httpevent.Resolve) to that peer, as if it had come here directly. Only
// a request whose relay is authenticated may carry it.
func WithPeer(ctx context.Context, p httpevent.Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerOf returns the peer r came from, whose forwarding headers the
// gateway judges: the one WithPeer marked, else its TCP peer.
func PeerOf(r *http.Request) httpevent.Peer {
	if p, ok := r.Context().Value(peerKey{}).(httpevent.Peer); ok {
		return p
	}
	return httpevent.PeerOf(r)
}
