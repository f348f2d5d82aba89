package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/stratus-run/stratus"
)

// Cluster reports whether c makes this server one node of several: its
// store is PostgreSQL (Store is a postgres:// or postgresql:// URL).
func (c *Config) Cluster() bool {
	return strings.HasPrefix(c.Store, "postgres://") || strings.HasPrefix(c.Store, "postgresql://")
}

// nodeName is what a node's name may be: a host name's characters.
var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Node is this server's node name: NodeName, else the host name, else
// "stratus".
func (c *Config) Node() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	if h, err := os.Hostname(); err == nil && nodeName.MatchString(h) {
		return h
	}
	return "stratus"
}

// AdvertiseURL is the base URL other servers reach this one at:
// Advertise, else http:// and the listen address (a wildcard host
// becomes 127.0.0.1: on one server the address is only shown; a cluster
// node with a wildcard listen address must be given Advertise).
func (c *Config) AdvertiseURL(listen string) string {
	if c.Advertise != "" {
		return strings.TrimSuffix(c.Advertise, "/")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if unspecified(host) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// unspecified reports whether host names no one address: empty, 0.0.0.0
// or ::.
func unspecified(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}

// validateCluster checks the store, node name and advertised URL, and
// that a cluster node has what every node must share: an external NATS
// cluster and the token.
func (c *Config) validateCluster() error {
	if c.NodeName != "" && !nodeName.MatchString(c.NodeName) {
		return fmt.Errorf("node name %q: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit: %w", c.NodeName, stratus.ErrInvalid)
	}
	if c.Advertise != "" {
		u, err := url.Parse(c.Advertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || unspecified(u.Hostname()) ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("advertise %q: must be a base URL such as http://10.0.0.5:8080: %w", c.Advertise, stratus.ErrInvalid)
		}
	}
	if !c.Cluster() {
		if strings.Contains(c.Store, "://") {
			return fmt.Errorf("store %q: a file path (SQLite) or a postgres:// URL (PostgreSQL): %w", stratus.RedactURL(c.Store), stratus.ErrInvalid)
		}
		return nil
	}
	u, err := url.Parse(c.Store)
	// The host may be a unix socket's folder: postgres://USER@/DB?host=/run/postgresql.
	if err != nil || (u.Host == "" && !strings.HasPrefix(u.Query().Get("host"), "/")) || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("store %q: a PostgreSQL URL names a host and a database: postgres://USER@HOST[:PORT]/DB: %w", stratus.RedactURL(c.Store), stratus.ErrInvalid)
	}
	if c.Advertise == "" {
		if host, _, err := net.SplitHostPort(c.Listen); err == nil && unspecified(host) {
			return fmt.Errorf("listen address %s: the other servers of a cluster need an address to reach this one at: give --advertise http://HOST:PORT: %w", c.Listen, stratus.ErrInvalid)
		}
	}
	if c.NatsURL == "" {
		return fmt.Errorf("a server on PostgreSQL is one of several: give --nats-url, the NATS cluster they share (the embedded NATS serves one server only): %w", stratus.ErrInvalid)
	}
	if c.Token == "" {
		return fmt.Errorf("a server on PostgreSQL is one of several: give the same --token (or STRATUS_TOKEN) to every server, so that a token works on each: %w", stratus.ErrInvalid)
	}
	return nil
}
