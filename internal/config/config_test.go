package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestSandbox(t *testing.T) {
	if d := Default().Sandbox; d != "auto" {
		t.Errorf("default sandbox %q, want auto", d)
	}
	for _, tc := range []struct {
		sandbox string
		ok      bool
	}{
		{"auto", true}, {"runc", true}, {"process", true}, {"", false}, {"docker", false}, {"RUNC", false},
	} {
		c := Default()
		c.Sandbox = tc.sandbox
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("sandbox %q: %v", tc.sandbox, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("sandbox %q: err = %v, want ErrInvalid", tc.sandbox, err)
		}
	}
	c, err := Load("", []string{"STRATUS_SANDBOX=process"})
	if err != nil || c.Sandbox != "process" {
		t.Errorf("Load with STRATUS_SANDBOX=process: %q, %v", c.Sandbox, err)
	}
	// kube needs the image of its pods.
	c, err = Load("", []string{"STRATUS_SANDBOX=kube", "STRATUS_NAMESPACE=fns", "STRATUS_KUBECONFIG=/k", "STRATUS_KUBE_ADDRESS=10.1.2.3"})
	if err != nil || c.Sandbox != "kube" || c.Namespace != "fns" || c.Kubeconfig != "/k" || c.KubeAddress != "10.1.2.3" {
		t.Errorf("Load with the kube variables: %+v, %v", c, err)
	}
	if err := c.Validate(); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "--agent-image") {
		t.Errorf("kube without an agent image: %v; want ErrInvalid naming --agent-image", err)
	}
	c.AgentImage = "registry.example/stratus:1"
	if err := c.Validate(); err != nil {
		t.Errorf("kube with an agent image: %v", err)
	}
	// The address pods reach the server at is checked before the driver
	// starts.
	for _, bad := range []string{"stratus.local", "127.0.0.1", "0.0.0.0", "::", "fe80::1%eth0", "10.1.2.3:8080"} {
		c.KubeAddress = bad
		if err := c.Validate(); !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), "kube address") {
			t.Errorf("kube address %q: %v; want ErrInvalid naming the kube address", bad, err)
		}
	}
}

func TestMetricsPublic(t *testing.T) {
	if Default().MetricsPublic {
		t.Error("metrics are public by default")
	}
	c, err := Load("", []string{"STRATUS_METRICS_PUBLIC=true"})
	if err != nil || !c.MetricsPublic {
		t.Errorf("Load with STRATUS_METRICS_PUBLIC=true: %v, %v", c.MetricsPublic, err)
	}
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, []byte(`{"metricsPublic": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(file, []string{"STRATUS_METRICS_PUBLIC=0"})
	if err != nil || c.MetricsPublic {
		t.Errorf("Load with metricsPublic in the file and STRATUS_METRICS_PUBLIC=0: %v, %v", c.MetricsPublic, err)
	}
	if _, err := Load("", []string{"STRATUS_METRICS_PUBLIC=maybe"}); !errors.Is(err, stratus.ErrInvalid) {
		t.Errorf("STRATUS_METRICS_PUBLIC=maybe: err = %v, want ErrInvalid", err)
	}
}

func TestNatsURLFiles(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	url := "nats://u:p@a:4222,tls://tok@b:4222"
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		ok   bool
	}{
		{"url with credentials", func(c *Config) { c.NatsURL = url }, true},
		{"creds", func(c *Config) { c.NatsURL, c.NatsCreds = url, file }, true},
		{"nkey and tls", func(c *Config) { c.NatsURL, c.NatsNkey, c.NatsCA, c.NatsCert, c.NatsKey = url, file, file, file, file }, true},
		{"creds without url", func(c *Config) { c.NatsCreds = file }, false},
		{"ca with listen", func(c *Config) { c.NatsListen, c.NatsCA = "127.0.0.1:4222", file }, false},
		{"missing creds", func(c *Config) { c.NatsURL, c.NatsCreds = url, missing }, false},
		{"missing ca", func(c *Config) { c.NatsURL, c.NatsCA = url, missing }, false},
		{"a directory", func(c *Config) { c.NatsURL, c.NatsNkey = url, dir }, false},
		{"creds and nkey", func(c *Config) { c.NatsURL, c.NatsCreds, c.NatsNkey = url, file, file }, false},
		{"cert without key", func(c *Config) { c.NatsURL, c.NatsCert = url, file }, false},
		{"key without cert", func(c *Config) { c.NatsURL, c.NatsKey = url, file }, false},
		{"empty url in list", func(c *Config) { c.NatsURL = "nats://a:4222,,nats://b:4222" }, false},
	} {
		c := Default()
		tc.set(&c)
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
	c, err := Load("", []string{"STRATUS_NATS_URL=" + url, "STRATUS_NATS_CREDS=" + file})
	if err != nil || c.NatsCreds != file || c.Validate() != nil {
		t.Errorf("Load with STRATUS_NATS_CREDS: %q, %v", c.NatsCreds, err)
	}
}

func TestObservability(t *testing.T) {
	for _, tc := range []struct {
		format, otlp string
		ok           bool
	}{
		{"text", "", true}, {"json", "", true}, {"xml", "", false}, {"", "", false},
		{"text", "http://127.0.0.1:4318", true}, {"text", "grpc://collector:4317", true},
		{"text", "https://otel.example/v1/traces", true}, {"text", "grpcs://c:4317", true},
		{"text", "localhost:4318", false}, {"text", "ftp://x:1", false}, {"text", "grpc://nohost", false},
	} {
		c := Default()
		c.LogFormat, c.OTLPEndpoint = tc.format, tc.otlp
		err := c.Validate()
		if tc.ok != (err == nil) || !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("log format %q, otlp %q: err = %v, want ok %v", tc.format, tc.otlp, err, tc.ok)
		}
	}
	c, err := Load("", []string{"STRATUS_LOG_FORMAT=json", "STRATUS_OTLP_ENDPOINT=http://h:4318", "STRATUS_METER_FILE=/m.json"})
	if err != nil || c.LogFormat != "json" || c.OTLPEndpoint != "http://h:4318" || c.MeterFile != "/m.json" {
		t.Errorf("from the environment: %+v, %v", c, err)
	}
}

func TestTrustedProxies(t *testing.T) {
	if Default().TrustedProxies != nil {
		t.Error("proxies are trusted by default")
	}
	good, err := ParseTrustedProxies([]string{"10.0.0.0/8", "127.0.0.1", "fd00::/8", "::1", "::ffff:192.0.2.1", "::ffff:192.0.2.0/120"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0/8", "127.0.0.1/32", "fd00::/8", "::1/128", "192.0.2.1/32", "192.0.2.0/24"}
	for i, p := range good {
		if p.String() != want[i] {
			t.Errorf("entry %d: %s, want %s", i, p, want[i])
		}
	}
	for _, tc := range []struct{ entry, msg string }{
		{"", "an empty entry"},
		{"10.0.0.1/8", "host bits set: did you mean 10.0.0.0/8?"},
		{"10.0.0.0/33", "not a CIDR prefix"},
		{"example.com", "not an IP address"},
		{"fe80::1%eth0", "zones are not allowed"},
		{"1.2.3.4:80", "not an IP address"},
	} {
		_, err := ParseTrustedProxies([]string{"127.0.0.1", tc.entry})
		if !errors.Is(err, stratus.ErrInvalid) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "trusted proxy") {
			t.Errorf("%q: %v, want ErrInvalid saying %q", tc.entry, err, tc.msg)
		}
		c := Default()
		c.TrustedProxies = []string{tc.entry}
		if err := c.Validate(); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("Validate with %q: %v", tc.entry, err)
		}
	}
	c, err := Load("", []string{"STRATUS_TRUSTED_PROXIES= 10.0.0.0/8 , 192.0.2.7"})
	if err != nil || !slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8", "192.0.2.7"}) || c.Validate() != nil {
		t.Errorf("Load with STRATUS_TRUSTED_PROXIES: %q, %v, %v", c.TrustedProxies, err, c.Validate())
	}
	c, err = Load("", []string{"STRATUS_TRUSTED_PROXIES=10.0.0.0/8,,1.2.3.4"})
	if err != nil || c.Validate() == nil || !strings.Contains(c.Validate().Error(), "empty entry") {
		t.Errorf("an empty entry in the list: %v", c.Validate())
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "c.json")
	if err := os.WriteFile(file, []byte(`{"trustedProxies":["10.0.0.0/8"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(file, nil)
	if err != nil || !slices.Equal(c.TrustedProxies, []string{"10.0.0.0/8"}) {
		t.Errorf("from a file: %q, %v", c.TrustedProxies, err)
	}
	if SplitList("  ") != nil {
		t.Error("a blank list is not empty")
	}
}
