package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestCluster(t *testing.T) {
	pg := "postgres://stratus@db.example:5432/stratus"
	for _, tc := range []struct {
		name    string
		set     func(*Config)
		cluster bool
		err     string // "" for valid
	}{
		{"default", func(*Config) {}, false, ""},
		{"sqlite path", func(c *Config) { c.Store = "/var/lib/stratus/state.db" }, false, ""},
		{"postgres", func(c *Config) { c.Store, c.NatsURL, c.Token = pg, "nats://a:4222,nats://b:4222", "t" }, true, ""},
		{"postgresql scheme", func(c *Config) { c.Store, c.NatsURL, c.Token = "postgresql://u@h/db", "nats://a:4222", "t" }, true, ""},
		{"postgres without nats", func(c *Config) { c.Store, c.Token = pg, "t" }, true, "--nats-url"},
		{"postgres without token", func(c *Config) { c.Store, c.NatsURL = pg, "nats://a:4222" }, true, "--token"},
		{"postgres over a unix socket", func(c *Config) {
			c.Store, c.NatsURL, c.Token = "postgres://u@/db?host=/run/postgresql", "nats://a:4222", "t"
		}, true, ""},
		{"password in the query", func(c *Config) { c.Store, c.Token = "postgres://u@h/db?password=secret", "t" }, true, "--nats-url"},
		{"postgres without database", func(c *Config) { c.Store, c.NatsURL, c.Token = "postgres://u@h", "nats://a:4222", "t" }, true, "names a host and a database"},
		{"other scheme", func(c *Config) { c.Store = "mysql://u:secret@h/db" }, false, "a file path"},
		{"bad node name", func(c *Config) { c.NodeName = "a b" }, false, "node name"},
		{"node name too long", func(c *Config) { c.NodeName = strings.Repeat("n", 64) }, false, "node name"},
		{"advertise with path", func(c *Config) { c.Advertise = "http://h:8080/x" }, false, "advertise"},
		{"advertise not http", func(c *Config) { c.Advertise = "tcp://h:8080" }, false, "advertise"},
		{"advertise", func(c *Config) { c.Advertise = "https://h.example:8443/" }, false, ""},
		{"advertise nowhere", func(c *Config) { c.Advertise = "http://0.0.0.0:8080" }, false, "advertise"},
		{"cluster on a wildcard address", func(c *Config) {
			c.Store, c.NatsURL, c.Token, c.Listen = pg, "nats://a:4222", "t", "0.0.0.0:8080"
		}, true, "--advertise"},
		{"cluster on a wildcard address, advertised", func(c *Config) {
			c.Store, c.NatsURL, c.Token, c.Listen, c.Advertise = pg, "nats://a:4222", "t", "0.0.0.0:8080", "http://10.0.0.5:8080"
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.set(&c)
			if c.Cluster() != tc.cluster {
				t.Errorf("Cluster() = %v, want %v", c.Cluster(), tc.cluster)
			}
			err := c.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, stratus.ErrInvalid)):
				t.Fatalf("Validate = %v, want an invalid-config error saying %q", err, tc.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

func TestNodeAndAdvertise(t *testing.T) {
	c := Default()
	c.NodeName = "n1"
	if c.Node() != "n1" {
		t.Errorf("Node() = %q, want n1", c.Node())
	}
	c.NodeName = ""
	if !nodeName.MatchString(c.Node()) {
		t.Errorf("default Node() %q is not a valid node name", c.Node())
	}
	for listen, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"0.0.0.0:9000":   "http://127.0.0.1:9000",
		"[::]:9000":      "http://127.0.0.1:9000",
		"10.0.0.5:80":    "http://10.0.0.5:80",
	} {
		if got := c.AdvertiseURL(listen); got != want {
			t.Errorf("AdvertiseURL(%q) = %q, want %q", listen, got, want)
		}
	}
	c.Advertise = "https://a.example:8443/"
	if got := c.AdvertiseURL("127.0.0.1:1"); got != "https://a.example:8443" {
		t.Errorf("AdvertiseURL with --advertise = %q", got)
	}
}
