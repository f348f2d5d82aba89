// Package config holds the server's configuration: defaults, an optional
// JSON file, STRATUS_* environment variables, then flags (applied by the
// CLI), in that order. Nothing else in Stratus reads the environment.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/trace"
)

// Config is the server's configuration.
type Config struct {
	// Listen is the address (host:port) of the API, the gateway and the
	// console.
	Listen string `json:"listen"`
	// DataDir is the folder the server keeps its state in.
	DataDir string `json:"data"`
	// Token is the bearer token of the control endpoints; empty: the one
	// kept in the data dir, made at the first start.
	Token string `json:"token,omitempty"`
	// Region is this server's region.
	Region string `json:"region"`
	// AccountID is the account in the ARNs the server writes (12 digits).
	AccountID string `json:"accountId"`
	// Store is where the state is kept: "" for the SQLite file
	// DATA/stratus.db, a file path for another SQLite file, or a
	// postgres:// (postgresql://) URL for PostgreSQL, which makes this
	// server one node of a cluster (see Cluster).
	Store string `json:"store,omitempty"`
	// NodeName names this server among the servers sharing a store
	// (default: the host name); Advertise is the base URL the other
	// servers reach it at (default: http:// and the listen address).
	NodeName  string `json:"nodeName,omitempty"`
	Advertise string `json:"advertise,omitempty"`
	// Sandbox is the sandbox driver: "runc", "process", "kube" (pods of a
	// Kubernetes cluster), or "auto" (runc when runc is on PATH and
	// usable, rootless when the server is not root; else process).
	Sandbox string `json:"sandbox"`
	// Kubeconfig is the kubeconfig file of the Kubernetes cluster the
	// kube sandbox driver places workloads on; empty: the in-cluster
	// configuration of the pod the server runs in.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Namespace is the Kubernetes namespace the kube sandbox driver works
	// in; empty: the server pod's own namespace, else "default".
	Namespace string `json:"namespace,omitempty"`
	// AgentImage is the image of the pods the kube sandbox driver makes
	// for function instances: it holds the stratus binary, whose "agent"
	// command the pods run.
	AgentImage string `json:"agentImage,omitempty"`
	// KubeAddress is the address at which pods reach this server (its
	// pod's IP; the Helm chart sets it); empty: the first non-loopback
	// address of the host.
	KubeAddress string `json:"kubeAddress,omitempty"`
	// PodName and PodUID name the pod this server runs in (the Helm chart
	// sets them): the kube sandbox driver makes it the owner of the pods
	// it makes, so that Kubernetes deletes them with it.
	PodName string `json:"podName,omitempty"`
	PodUID  string `json:"podUID,omitempty"`

	// MaxInstances caps live instances across all functions.
	MaxInstances int `json:"maxInstances"`
	// MaxPrepared caps prepared function instances (create-ahead: a
	// sandbox made ahead so that a cold start only starts the program; at
	// most one per function) across the server; 0 turns create-ahead off.
	// Prepared instances do not count against MaxInstances.
	MaxPrepared int `json:"maxPrepared"`
	// FunctionCPU is how a function's CPU share (in proportion to its
	// memory, a core at 1,769 MB) applies: "weight" (under contention
	// only; an instance may use up to a core while CPUs are free) or
	// "quota" (a hard limit at all times, as on Lambda).
	FunctionCPU string `json:"functionCPU"`
	// MaxCreating caps the function sandboxes being made at once (cold
	// starts without a prepared sandbox, and prepares); 0 means half the
	// CPUs, at least one.
	MaxCreating int `json:"maxCreating"`
	// IdleTimeout is how long an idle instance lives by default.
	IdleTimeout stratus.Duration `json:"idleTimeout"`
	// ThrottleWait bounds how long an invocation waits for a free instance
	// before it gets 429.
	ThrottleWait stratus.Duration `json:"throttleWait"`
	// InitTimeout bounds a runtime's initialisation.
	InitTimeout stratus.Duration `json:"initTimeout"`
	// StopGrace is what a stopping instance gets between SIGTERM and SIGKILL.
	StopGrace stratus.Duration `json:"stopGrace"`

	// MaxZipBytes bounds a function's code upload, MaxUnzippedBytes its
	// extracted files, MaxEventBytes the event of a synchronous
	// invocation.
	MaxZipBytes      int64 `json:"maxZipBytes"`
	MaxUnzippedBytes int64 `json:"maxUnzippedBytes"`
	MaxEventBytes    int64 `json:"maxEventBytes"`

	// Retention of invocation records and log lines, per function.
	RetainInvocations int              `json:"retainInvocations"`
	RetainLogLines    int              `json:"retainLogLines"`
	RetainAge         stratus.Duration `json:"retainAge"`
	// PruneInterval is how often records and lines beyond the retention
	// are deleted.
	PruneInterval stratus.Duration `json:"pruneInterval"`

	// LogLevel is the least level logged: debug, info, warn or error.
	LogLevel string `json:"logLevel"`
	// LogFormat is the server log's format: "text" (key=value lines) or
	// "json" (one JSON object per line).
	LogFormat string `json:"logFormat"`
	// MetricsPublic serves /metrics without the token.
	MetricsPublic bool `json:"metricsPublic,omitempty"`
	// Console serves the web console at / (signed in with the token,
	// kept in a session cookie); false leaves it and its sessions out.
	Console bool `json:"console"`
	// OTLPEndpoint, when set, is where spans are exported (OTLP over HTTP:
	// http:// or https://; over gRPC: grpc:// or grpcs://). Empty: no
	// span leaves the server.
	OTLPEndpoint string `json:"otlpEndpoint,omitempty"`
	// MeterFile is a JSON file of prices and energy coefficients over the
	// meter's defaults (see docs/metering.md).
	MeterFile string `json:"meterFile,omitempty"`

	// The event system. NatsListen exposes the embedded NATS server on a
	// TCP address (empty: no port); NatsURL uses an external NATS server
	// or cluster instead of the embedded one. NatsSyncAlways fsyncs every
	// accepted event (else JetStream syncs on its interval).
	NatsListen     string `json:"natsListen,omitempty"`
	NatsURL        string `json:"natsURL,omitempty"`
	NatsSyncAlways bool   `json:"natsSyncAlways,omitempty"`
	// With NatsURL (whose URLs may carry user:password@ or token@):
	// NatsCreds is a .creds file (user JWT and nkey seed) and NatsNkey an
	// nkey seed file to authenticate with, at most one of them; NatsCA
	// holds the CA certificates of the servers' TLS certificates, NatsCert
	// and NatsKey a client certificate and its key. Any TLS file requires
	// TLS, as tls:// URLs do.
	NatsCreds string `json:"natsCreds,omitempty"`
	NatsNkey  string `json:"natsNkey,omitempty"`
	NatsCA    string `json:"natsCA,omitempty"`
	NatsCert  string `json:"natsCert,omitempty"`
	NatsKey   string `json:"natsKey,omitempty"`
	// MaxAsyncEventBytes bounds an asynchronous event (256 KB on Lambda).
	MaxAsyncEventBytes int64 `json:"maxAsyncEventBytes"`
	// MaxRetries is the most async retries a function may ask for.
	MaxRetries int `json:"maxRetries"`

	// Services. Domain is the domain of host routes (NAME.<Domain>).
	Domain string `json:"domain"`
	// TrustedProxies are the peers (CIDR prefixes or single IP addresses)
	// whose forwarding headers (X-Forwarded-For, -Proto, -Host, -Port,
	// -Prefix and Forwarded) the gateway believes and appends to; from any
	// other peer it replaces them. Empty: it believes nobody.
	TrustedProxies []string `json:"trustedProxies,omitempty"`
	// MaxReplicas caps the replicas of all services together.
	MaxReplicas int `json:"maxReplicas"`
	// ServiceReadyTimeout bounds how long a new replica may take to be
	// ready, and how long a request waits for a replica.
	ServiceReadyTimeout stratus.Duration `json:"serviceReadyTimeout"`
	// ServiceProbeInterval is the period of the liveness probe.
	ServiceProbeInterval stratus.Duration `json:"serviceProbeInterval"`
	// The autoscaler: its period, its stable and panic windows, and how
	// long a service with no traffic waits before it scales to zero.
	AutoscaleTick    stratus.Duration `json:"autoscaleTick"`
	StableWindow     stratus.Duration `json:"stableWindow"`
	PanicWindow      stratus.Duration `json:"panicWindow"`
	ScaleToZeroGrace stratus.Duration `json:"scaleToZeroGrace"`
	// ServiceStopGrace is how long a stopping replica gets after SIGTERM;
	// when the server stops, replicas also drain their requests for at
	// most this long.
	ServiceStopGrace stratus.Duration `json:"serviceStopGrace"`
	// ServiceQueueSize bounds the requests waiting for a replica, per
	// service; more are refused with 429.
	ServiceQueueSize int `json:"serviceQueueSize"`

	// Bounds on what clients and workloads can make the server hold.
	//
	// MaxOutputBytes is the output (stdout and stderr) stored per
	// invocation of a function; OutputRate the bytes per second stored
	// per function or service. Beyond either, lines are dropped and one
	// platform line says how many. LogQueueBytes bounds the lines,
	// records and statuses waiting to be stored.
	MaxOutputBytes int64 `json:"maxOutputBytes"`
	OutputRate     int64 `json:"outputRate"`
	LogQueueBytes  int64 `json:"logQueueBytes"`
	// ReadTimeout bounds the reading of a request's body; MaxHeaderBytes
	// its header; MaxRequestBytes a body sent to a service (a function's
	// is MaxEventBytes). MaxConnections bounds open client connections.
	ReadTimeout     stratus.Duration `json:"readTimeout"`
	MaxHeaderBytes  int              `json:"maxHeaderBytes"`
	MaxRequestBytes int64            `json:"maxRequestBytes"`
	MaxConnections  int              `json:"maxConnections"`
	// FunctionQueueSize bounds the invocations of one function waiting
	// for an instance (beyond it: 429).
	FunctionQueueSize int `json:"functionQueueSize"`
	// KeepVersions is how many versions of a function are kept; older
	// ones, and their code, go once nothing uses them.
	KeepVersions int `json:"keepVersions"`
	// MaxImageBytes bounds an image's unpacked size (its layers
	// decompressed); ImageStoreBytes everything the image store keeps.
	MaxImageBytes   int64 `json:"maxImageBytes"`
	ImageStoreBytes int64 `json:"imageStoreBytes"`
	// MinFreeBytes is the free space on the data volume below which the
	// server does not start, and, while it runs, refuses async accepts and
	// topic publishes (507) and answers /readyz with 503.
	MinFreeBytes int64 `json:"minFreeBytes"`
}

// Default returns the embedded defaults.
func Default() Config {
	return Config{
		Listen:            "127.0.0.1:8080",
		DataDir:           ".stratus",
		Region:            "local",
		AccountID:         stratus.DefaultAccountID,
		Sandbox:           "auto",
		MaxInstances:      stratus.DefaultMaxConc,
		MaxPrepared:       20,
		FunctionCPU:       "weight",
		IdleTimeout:       stratus.Duration(stratus.DefaultIdleTimeout),
		ThrottleWait:      stratus.Duration(time.Second),
		InitTimeout:       stratus.Duration(10 * time.Second),
		StopGrace:         stratus.Duration(500 * time.Millisecond),
		MaxZipBytes:       50 << 20,
		MaxUnzippedBytes:  250 << 20,
		MaxEventBytes:     6 << 20,
		RetainInvocations: 10000,
		RetainLogLines:    100000,
		RetainAge:         stratus.Duration(7 * 24 * time.Hour),
		PruneInterval:     stratus.Duration(time.Minute),
		LogLevel:          "info",
		LogFormat:         "text",
		Console:           true,

		MaxAsyncEventBytes: 256 << 10,
		MaxRetries:         stratus.DefaultMaxRetries,

		Domain:               "localhost",
		MaxReplicas:          1000,
		ServiceReadyTimeout:  stratus.Duration(time.Minute),
		ServiceProbeInterval: stratus.Duration(5 * time.Second),
		AutoscaleTick:        stratus.Duration(time.Second),
		StableWindow:         stratus.Duration(time.Minute),
		PanicWindow:          stratus.Duration(6 * time.Second),
		ScaleToZeroGrace:     stratus.Duration(30 * time.Second),
		ServiceStopGrace:     stratus.Duration(10 * time.Second),
		ServiceQueueSize:     1000,

		MaxOutputBytes:    8 << 20,
		OutputRate:        1 << 20,
		LogQueueBytes:     64 << 20,
		ReadTimeout:       stratus.Duration(30 * time.Second),
		MaxHeaderBytes:    64 << 10,
		MaxRequestBytes:   32 << 20,
		MaxConnections:    4096,
		FunctionQueueSize: 1000,
		KeepVersions:      10,
		MaxImageBytes:     10 << 30,
		ImageStoreBytes:   20 << 30,
		MinFreeBytes:      32 << 20,
	}
}

// Load returns the defaults overlaid with the JSON file at path (if path is
// not empty) and the STRATUS_* variables of environ ("K=V" entries).
func Load(path string, environ []string) (Config, error) {
	c := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("read config: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return c, fmt.Errorf("config %s: %v: %w", path, err, stratus.ErrInvalid)
		}
	}
	env := Env(environ)
	str := map[string]*string{
		"STRATUS_LISTEN": &c.Listen, "STRATUS_DATA": &c.DataDir, "STRATUS_TOKEN": &c.Token,
		"STRATUS_REGION": &c.Region, "STRATUS_ACCOUNT_ID": &c.AccountID, "STRATUS_SANDBOX": &c.Sandbox, "STRATUS_LOG_LEVEL": &c.LogLevel,
		"STRATUS_LOG_FORMAT": &c.LogFormat, "STRATUS_OTLP_ENDPOINT": &c.OTLPEndpoint, "STRATUS_METER_FILE": &c.MeterFile,
		"STRATUS_NATS_LISTEN": &c.NatsListen, "STRATUS_NATS_URL": &c.NatsURL,
		"STRATUS_NATS_CREDS": &c.NatsCreds, "STRATUS_NATS_NKEY": &c.NatsNkey,
		"STRATUS_NATS_CA": &c.NatsCA, "STRATUS_NATS_CERT": &c.NatsCert, "STRATUS_NATS_KEY": &c.NatsKey,
		"STRATUS_STORE": &c.Store, "STRATUS_NODE_NAME": &c.NodeName, "STRATUS_ADVERTISE": &c.Advertise,
		"STRATUS_KUBECONFIG": &c.Kubeconfig, "STRATUS_NAMESPACE": &c.Namespace,
		"STRATUS_AGENT_IMAGE": &c.AgentImage, "STRATUS_KUBE_ADDRESS": &c.KubeAddress,
		"STRATUS_POD_NAME": &c.PodName, "STRATUS_POD_UID": &c.PodUID,
	}
	for k, p := range str {
		if v, ok := env[k]; ok && v != "" {
			*p = v
		}
	}
	if v, ok := env["STRATUS_TRUSTED_PROXIES"]; ok && v != "" {
		c.TrustedProxies = SplitList(v)
	}
	if v := env["STRATUS_MAX_INSTANCES"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return c, fmt.Errorf("STRATUS_MAX_INSTANCES %q: not a number: %w", v, stratus.ErrInvalid)
		}
		c.MaxInstances = n
	}
	if v := env["STRATUS_METRICS_PUBLIC"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("STRATUS_METRICS_PUBLIC %q: not true or false: %w", v, stratus.ErrInvalid)
		}
		c.MetricsPublic = b
	}
	if v := env["STRATUS_CONSOLE"]; v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("STRATUS_CONSOLE %q: not true or false: %w", v, stratus.ErrInvalid)
		}
		c.Console = b
	}
	if v := env["STRATUS_IDLE_TIMEOUT"]; v != "" {
		if err := c.IdleTimeout.UnmarshalText([]byte(v)); err != nil {
			return c, fmt.Errorf("STRATUS_IDLE_TIMEOUT: %w", err)
		}
	}
	return c, nil
}

// SplitList splits a comma-separated list (a flag's or a variable's
// value), trimming spaces around each entry; empty entries are kept, so
// that ParseTrustedProxies can name them.
func SplitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// ParseTrustedProxies parses the entries of Config.TrustedProxies: each a
// CIDR prefix (10.0.0.0/8, fd00::/8) or an IP address (a prefix of its
// own). A prefix with host bits set (10.0.0.1/8) is refused, as is a zone
// (fe80::1%eth0); an IPv4-mapped IPv6 address stands for its IPv4 form.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		p, err := parseTrusted(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %v: %w", s, err, stratus.ErrInvalid)
		}
		out = append(out, p)
	}
	return out, nil
}

func parseTrusted(s string) (netip.Prefix, error) {
	switch {
	case s == "":
		return netip.Prefix{}, errors.New("an empty entry in the comma-separated list")
	case strings.Contains(s, "%"):
		return netip.Prefix{}, errors.New("zones are not allowed")
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not a CIDR prefix such as 10.0.0.0/8 or fd00::/8")
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("host bits set: did you mean %s?", p.Masked())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p, nil
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errors.New("not an IP address or a CIDR prefix such as 10.0.0.0/8")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
}

// Env turns "K=V" entries into a map; later entries win.
func Env(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Validate checks c.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen address %q: %v: %w", c.Listen, err, stratus.ErrInvalid)
	}
	if c.DataDir == "" {
		return fmt.Errorf("data dir is empty: %w", stratus.ErrInvalid)
	}
	if err := stratus.ValidRegion(c.Region); err != nil {
		return err
	}
	if err := stratus.ValidAccountID(c.AccountID); err != nil {
		return err
	}
	switch c.Sandbox {
	case "auto", "runc", "process":
	case "kube":
		if c.AgentImage == "" {
			return fmt.Errorf("sandbox driver kube: needs the image of function pods (--agent-image, STRATUS_AGENT_IMAGE): %w", stratus.ErrInvalid)
		}
		if c.KubeAddress != "" {
			if a, err := netip.ParseAddr(c.KubeAddress); err != nil || a.IsLoopback() || a.IsUnspecified() || a.Zone() != "" {
				return fmt.Errorf("kube address %q: must be an IP address of this server that pods can reach (not loopback, unspecified or scoped): %w", c.KubeAddress, stratus.ErrInvalid)
			}
		}
	default:
		return fmt.Errorf("sandbox driver %q: one of auto, runc, process, kube: %w", c.Sandbox, stratus.ErrInvalid)
	}
	if c.MaxInstances < 1 || c.MaxInstances > 10000 {
		return fmt.Errorf("max instances %d: must be between 1 and 10000: %w", c.MaxInstances, stratus.ErrInvalid)
	}
	if c.MaxPrepared < 0 || c.MaxPrepared > 10000 {
		return fmt.Errorf("max prepared %d: must be between 0 and 10000: %w", c.MaxPrepared, stratus.ErrInvalid)
	}
	if c.FunctionCPU != "weight" && c.FunctionCPU != "quota" {
		return fmt.Errorf("function cpu %q: must be weight or quota: %w", c.FunctionCPU, stratus.ErrInvalid)
	}
	if c.MaxCreating < 0 || c.MaxCreating > 1000 {
		return fmt.Errorf("max creating %d: must be between 0 (half the CPUs) and 1000: %w", c.MaxCreating, stratus.ErrInvalid)
	}
	for name, d := range map[string]stratus.Duration{"idle timeout": c.IdleTimeout, "init timeout": c.InitTimeout, "prune interval": c.PruneInterval} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive: %w", name, d, stratus.ErrInvalid)
		}
	}
	if c.ThrottleWait < 0 || c.StopGrace < 0 {
		return fmt.Errorf("throttle wait and stop grace must not be negative: %w", stratus.ErrInvalid)
	}
	if c.MaxZipBytes < 1 || c.MaxUnzippedBytes < 1 || c.MaxEventBytes < 1 {
		return fmt.Errorf("size limits must be positive: %w", stratus.ErrInvalid)
	}
	if c.RetainInvocations < 1 || c.RetainLogLines < 1 {
		return fmt.Errorf("retention counts must be positive: %w", stratus.ErrInvalid)
	}
	if c.NatsListen != "" && c.NatsURL != "" {
		return fmt.Errorf("nats listen and nats url exclude each other: the first exposes the embedded server, the second replaces it: %w", stratus.ErrInvalid)
	}
	if c.NatsListen != "" {
		if _, _, err := net.SplitHostPort(c.NatsListen); err != nil {
			return fmt.Errorf("nats listen address %q: %v: %w", c.NatsListen, err, stratus.ErrInvalid)
		}
	}
	if err := c.validateNatsURL(); err != nil {
		return err
	}
	if c.MaxAsyncEventBytes < 1 || c.MaxAsyncEventBytes > c.MaxEventBytes {
		return fmt.Errorf("max async event size %d: must be between 1 and the max event size %d: %w", c.MaxAsyncEventBytes, c.MaxEventBytes, stratus.ErrInvalid)
	}
	if c.MaxRetries < 0 || c.MaxRetries > 100 {
		return fmt.Errorf("max retries %d: must be between 0 and 100: %w", c.MaxRetries, stratus.ErrInvalid)
	}
	if err := c.validateServices(); err != nil {
		return err
	}
	if err := c.validateCluster(); err != nil {
		return err
	}
	if err := c.validateBounds(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log level %q: one of debug, info, warn, error: %w", c.LogLevel, stratus.ErrInvalid)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log format %q: text or json: %w", c.LogFormat, stratus.ErrInvalid)
	}
	if c.OTLPEndpoint != "" {
		if err := trace.ParseEndpoint(c.OTLPEndpoint); err != nil {
			return fmt.Errorf("otlp endpoint: %w", err)
		}
	}
	return nil
}

// validateNatsURL checks the external NATS URLs and the credentials and
// TLS files that go with them.
func (c *Config) validateNatsURL() error {
	files := []struct{ flag, path string }{
		{"nats-creds", c.NatsCreds}, {"nats-nkey", c.NatsNkey},
		{"nats-ca", c.NatsCA}, {"nats-cert", c.NatsCert}, {"nats-key", c.NatsKey},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if c.NatsURL == "" {
			return fmt.Errorf("--%s is for an external NATS server: give --nats-url too: %w", f.flag, stratus.ErrInvalid)
		}
		fi, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("--%s: %w: %w", f.flag, err, stratus.ErrInvalid)
		}
		if fi.IsDir() {
			return fmt.Errorf("--%s %s: a directory, not a file: %w", f.flag, f.path, stratus.ErrInvalid)
		}
	}
	if c.NatsCreds != "" && c.NatsNkey != "" {
		return fmt.Errorf("--nats-creds and --nats-nkey exclude each other (a creds file holds its own nkey seed): %w", stratus.ErrInvalid)
	}
	if (c.NatsCert == "") != (c.NatsKey == "") {
		return fmt.Errorf("--nats-cert and --nats-key go together (a client certificate and its key): %w", stratus.ErrInvalid)
	}
	if c.NatsURL != "" {
		for u := range strings.SplitSeq(c.NatsURL, ",") {
			if strings.TrimSpace(u) == "" {
				return fmt.Errorf("nats url: an empty URL in the comma-separated list: %w", stratus.ErrInvalid)
			}
		}
	}
	return nil
}

func (c *Config) validateServices() error {
	if c.Domain == "" || strings.ContainsAny(c.Domain, " /:") || strings.HasPrefix(c.Domain, ".") {
		return fmt.Errorf("domain %q: must be a host name such as localhost or apps.example.com: %w", c.Domain, stratus.ErrInvalid)
	}
	if _, err := ParseTrustedProxies(c.TrustedProxies); err != nil {
		return err
	}
	if c.MaxReplicas < 1 || c.MaxReplicas > 100000 {
		return fmt.Errorf("max replicas %d: must be between 1 and 100000: %w", c.MaxReplicas, stratus.ErrInvalid)
	}
	if c.ServiceQueueSize < 1 {
		return fmt.Errorf("service queue size %d: must be positive: %w", c.ServiceQueueSize, stratus.ErrInvalid)
	}
	for name, d := range map[string]stratus.Duration{
		"service ready timeout": c.ServiceReadyTimeout, "service probe interval": c.ServiceProbeInterval,
		"autoscale tick": c.AutoscaleTick, "stable window": c.StableWindow, "panic window": c.PanicWindow,
	} {
		if d <= 0 {
			return fmt.Errorf("%s %s: must be positive: %w", name, d, stratus.ErrInvalid)
		}
	}
	if c.PanicWindow > c.StableWindow {
		return fmt.Errorf("panic window %s: must not be longer than the stable window %s: %w", c.PanicWindow, c.StableWindow, stratus.ErrInvalid)
	}
	if c.ScaleToZeroGrace < 0 || c.ServiceStopGrace < 0 {
		return fmt.Errorf("scale-to-zero grace and service stop grace must not be negative: %w", stratus.ErrInvalid)
	}
	return nil
}

// validateBounds checks the bounds on what clients and workloads can make
// the server hold.
func (c *Config) validateBounds() error {
	positive := []struct {
		flag string
		n    int64
	}{
		{"max-output-bytes", c.MaxOutputBytes}, {"output-rate", c.OutputRate},
		{"log-queue-bytes", c.LogQueueBytes}, {"max-header-bytes", int64(c.MaxHeaderBytes)},
		{"max-request-bytes", c.MaxRequestBytes}, {"max-connections", int64(c.MaxConnections)},
		{"function-queue-size", int64(c.FunctionQueueSize)}, {"keep-versions", int64(c.KeepVersions)},
		{"max-image-bytes", c.MaxImageBytes}, {"image-store-bytes", c.ImageStoreBytes},
		{"read-timeout", int64(c.ReadTimeout)},
	}
	for _, p := range positive {
		if p.n < 1 {
			return fmt.Errorf("--%s %d: must be positive: %w", p.flag, p.n, stratus.ErrInvalid)
		}
	}
	if c.LogQueueBytes < 1<<20 {
		return fmt.Errorf("--log-queue-bytes %d: must be at least 1 MiB: %w", c.LogQueueBytes, stratus.ErrInvalid)
	}
	if c.MaxImageBytes > c.ImageStoreBytes {
		return fmt.Errorf("--max-image-bytes %d: must not be more than --image-store-bytes %d: %w", c.MaxImageBytes, c.ImageStoreBytes, stratus.ErrInvalid)
	}
	if c.MinFreeBytes < 0 {
		return fmt.Errorf("--min-free-bytes %d: must not be negative: %w", c.MinFreeBytes, stratus.ErrInvalid)
	}
	return nil
}
