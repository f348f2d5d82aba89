package stratus

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Limits and defaults of a service's configuration, close to Cloud Run's.
const (
	DefaultServicePort        = 8080
	DefaultServiceMemoryMB    = 512
	MinServiceMemoryMB        = 64
	MaxServiceMemoryMB        = 32768
	DefaultServiceCPU         = 1.0
	MinServiceCPU             = 0.01
	MaxServiceCPU             = 64
	DefaultServiceConcurrency = 80
	MaxServiceConcurrency     = 1000
	DefaultServiceMaxScale    = 10
	MaxServiceScale           = 1000
	DefaultServiceTimeoutSec  = 300
	MaxServiceTimeoutSec      = 3600
	MinServiceWindow          = 6 * time.Second
	MaxServiceWindow          = time.Hour
	MinServiceTarget          = 0.01
)

// ServiceConfig is what a user sets when deploying a service.
type ServiceConfig struct {
	// Image is the image reference as the user gave it.
	Image string `json:"image"`
	// Port is the port the container listens on; it gets it as $PORT.
	Port int               `json:"port"`
	Env  map[string]string `json:"env,omitempty"`
	// MinScale and MaxScale bound the replica count; MinScale 0 lets the
	// service scale to zero.
	MinScale int `json:"minScale"`
	MaxScale int `json:"maxScale"`
	// Concurrency is the most requests a replica takes at once; 0 means
	// no limit.
	Concurrency int `json:"concurrency"`
	MemoryMB    int `json:"memoryMB"`
	// CPU is a replica's CPU limit in cores (a quota it cannot exceed).
	CPU float64 `json:"cpu"`
	// CPURequest is the replica's CPU request in cores: its share of the
	// CPUs under contention, as a Kubernetes pod's requests.cpu is (1,024
	// cpu.shares a core). 0: the same as CPU. It must not exceed CPU.
	CPURequest float64 `json:"cpuRequest,omitempty"`
	// HealthPath, when set, is probed with HTTP GET for readiness and,
	// without a LivenessPath, for liveness; otherwise a TCP connect to the
	// port is.
	HealthPath string `json:"healthPath,omitempty"`
	// Command replaces the image's entrypoint and command when set, as a
	// container's command does; Args, when set, follow the command (the
	// given one, else the image's entrypoint) in place of the image's
	// command, as a container's args do.
	Command []string `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Auth    string   `json:"auth"`

	// What Knative's Service sets beside the above (zero: the default).
	//
	// LivenessPath, when set, is probed with HTTP GET for liveness while
	// a replica serves (three failures in a row restart it); HealthPath
	// then serves readiness only.
	//
	// TimeoutSec bounds a request at the proxy, from the moment it has a
	// replica to the end of its answer (Knative's timeoutSeconds; 0:
	// DefaultServiceTimeoutSec): a request without an answer by then gets
	// 504, one whose answer has begun is cut off.
	//
	// Target is the autoscaler's target of in-flight requests per replica
	// (autoscaling.knative.dev/target; 0: 70% of Concurrency, or 100
	// without a limit); with a Concurrency limit it is capped at it.
	//
	// InitialScale is how many replicas a new revision starts, and waits
	// for, before it takes traffic (initial-scale; nil: 1, MinScale when
	// more, or as many as the previous revision has ready when more); the
	// revision starts at least MinScale whatever it says. 0 (allowed
	// only with MinScale 0) makes the revision take traffic at once, its
	// first request starting a replica.
	//
	// Window is the autoscaler's stable window for this service's
	// revisions (window; between MinServiceWindow and MaxServiceWindow;
	// 0: the server's); their panic window keeps the server's ratio to
	// it.
	LivenessPath string   `json:"livenessPath,omitempty"`
	TimeoutSec   int      `json:"timeoutSec,omitempty"`
	Target       float64  `json:"target,omitempty"`
	InitialScale *int     `json:"initialScale,omitempty"`
	Window       Duration `json:"window,omitempty"`

	// H2C makes the proxy and the HTTP probes speak HTTP/2 without TLS,
	// with prior knowledge, to the container (as Knative does for a port
	// named h2c), which gRPC servers need; otherwise they speak HTTP/1.1.
	// Clients may use either protocol whatever it is.
	H2C bool `json:"h2c,omitempty"`

	// Regions are the regions the service may run in (none: any), as a
	// function's FunctionConfig.Regions are.
	Regions []string `json:"regions,omitempty"`
}

// Defaults fills the zero fields of c. Concurrency stays as given: 0
// means no limit, so the CLI and API send the default themselves.
func (c *ServiceConfig) Defaults() {
	if c.Port == 0 {
		c.Port = DefaultServicePort
	}
	if c.MaxScale == 0 {
		c.MaxScale = max(DefaultServiceMaxScale, c.MinScale)
		if c.InitialScale != nil {
			c.MaxScale = max(c.MaxScale, *c.InitialScale)
		}
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = DefaultServiceMemoryMB
	}
	if c.CPU == 0 {
		c.CPU = max(DefaultServiceCPU, c.CPURequest) // a request alone is no limit
	}
	if c.Auth == "" {
		c.Auth = AuthToken
	}
}

// serviceEnv are the variables the platform sets for a replica.
var serviceEnv = map[string]bool{"PORT": true, "K_SERVICE": true, "K_REVISION": true, "K_CONFIGURATION": true}

// Validate checks c after Defaults.
func (c *ServiceConfig) Validate() error {
	if strings.TrimSpace(c.Image) == "" {
		return fmt.Errorf("image is required: %w", ErrInvalid)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d: must be between 1 and 65535: %w", c.Port, ErrInvalid)
	}
	if c.MinScale < 0 || c.MinScale > MaxServiceScale {
		return fmt.Errorf("min %d: must be between 0 and %d: %w", c.MinScale, MaxServiceScale, ErrInvalid)
	}
	if c.MaxScale < 1 || c.MaxScale > MaxServiceScale || c.MaxScale < c.MinScale {
		return fmt.Errorf("max %d: must be between max(1, min) and %d: %w", c.MaxScale, MaxServiceScale, ErrInvalid)
	}
	if c.Concurrency < 0 || c.Concurrency > MaxServiceConcurrency {
		return fmt.Errorf("concurrency %d: must be between 0 (no limit) and %d: %w", c.Concurrency, MaxServiceConcurrency, ErrInvalid)
	}
	if c.MemoryMB < MinServiceMemoryMB || c.MemoryMB > MaxServiceMemoryMB {
		return fmt.Errorf("memory %d MB: must be between %d and %d: %w", c.MemoryMB, MinServiceMemoryMB, MaxServiceMemoryMB, ErrInvalid)
	}
	if c.CPU < MinServiceCPU || c.CPU > MaxServiceCPU {
		return fmt.Errorf("cpu %g: must be between %g and %d: %w", c.CPU, MinServiceCPU, MaxServiceCPU, ErrInvalid)
	}
	if c.CPURequest != 0 && !(c.CPURequest >= MinServiceCPU && c.CPURequest <= c.CPU) {
		return fmt.Errorf("cpu request %g: must be between %g and the cpu limit, %g (0: the limit): %w", c.CPURequest, MinServiceCPU, c.CPU, ErrInvalid)
	}
	if c.HealthPath != "" && (!strings.HasPrefix(c.HealthPath, "/") || strings.ContainsAny(c.HealthPath, " \t\r\n")) {
		return fmt.Errorf("health path %q: must start with / and hold no spaces: %w", c.HealthPath, ErrInvalid)
	}
	if len(c.Command) > 0 && c.Command[0] == "" {
		return fmt.Errorf("command: the program must not be empty: %w", ErrInvalid)
	}
	for _, a := range append(slices.Clip(c.Command), c.Args...) {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("command and args: %q holds a NUL byte: %w", a, ErrInvalid)
		}
	}
	if c.LivenessPath != "" && (!strings.HasPrefix(c.LivenessPath, "/") || strings.ContainsAny(c.LivenessPath, " \t\r\n")) {
		return fmt.Errorf("liveness path %q: must start with / and hold no spaces: %w", c.LivenessPath, ErrInvalid)
	}
	if c.TimeoutSec < 0 || c.TimeoutSec > MaxServiceTimeoutSec {
		return fmt.Errorf("timeout %d s: must be between 0 (the default, %d) and %d: %w", c.TimeoutSec, DefaultServiceTimeoutSec, MaxServiceTimeoutSec, ErrInvalid)
	}
	if c.Target != 0 && !(c.Target >= MinServiceTarget && c.Target <= MaxServiceConcurrency) {
		return fmt.Errorf("target %g: must be between %g and %d in-flight requests per replica (0: derived from the concurrency): %w", c.Target, MinServiceTarget, MaxServiceConcurrency, ErrInvalid)
	}
	if n := c.InitialScale; n != nil {
		switch {
		case *n < 0 || *n > c.MaxScale:
			return fmt.Errorf("initial scale %d: must be between 0 and the max scale, %d: %w", *n, c.MaxScale, ErrInvalid)
		case *n == 0 && c.MinScale > 0:
			return fmt.Errorf("initial scale 0: allowed only with min scale 0, not %d: %w", c.MinScale, ErrInvalid)
		}
	}
	if w := time.Duration(c.Window); w != 0 && (w < MinServiceWindow || w > MaxServiceWindow) {
		return fmt.Errorf("window %s: must be between %s and %s (0: the server's): %w", w, MinServiceWindow, MaxServiceWindow, ErrInvalid)
	}
	if c.Auth != AuthToken && c.Auth != AuthNone {
		return fmt.Errorf("auth %q: must be %q or %q: %w", c.Auth, AuthToken, AuthNone, ErrInvalid)
	}
	if err := validRegions(c.Regions); err != nil {
		return err
	}
	size := 0
	for k, v := range c.Env {
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("environment variable %q: names start with a letter and hold letters, digits and '_': %w", k, ErrInvalid)
		}
		if serviceEnv[k] {
			return fmt.Errorf("environment variable %q is reserved: %w", k, ErrInvalid)
		}
		size += len(k) + len(v)
	}
	if size > 32*MaxEnvBytes {
		return fmt.Errorf("environment variables take %d bytes, more than %d: %w", size, 32*MaxEnvBytes, ErrInvalid)
	}
	return nil
}

// Service is a deployed service at its latest ready revision.
type Service struct {
	Name string `json:"name"`
	// Revision is the latest ready revision; Config and Digest are its.
	Revision int `json:"revision"`
	// Traffic splits requests between revisions; empty, the latest
	// ready revision takes them all.
	Traffic   []TrafficTarget `json:"traffic,omitempty"`
	Config    ServiceConfig   `json:"config"`
	Digest    string          `json:"imageDigest"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// Revision is an immutable snapshot of a service's image and
// configuration.
type Revision struct {
	Service   string        `json:"service"`
	Number    int           `json:"number"`
	Config    ServiceConfig `json:"config"`
	Digest    string        `json:"imageDigest"`
	CreatedAt time.Time     `json:"createdAt"`
}

// Name is the revision's name, as Knative forms it: "svc-00002".
func (r *Revision) Name() string { return fmt.Sprintf("%s-%05d", r.Service, r.Number) }

// ServiceLogKey is the name under which a service's log lines are kept
// beside functions' (a function name cannot hold '/').
func ServiceLogKey(name string) string { return "svc/" + name }

// TrafficTarget gives a share of a service's requests to one revision (or
// to its latest ready revision, Latest) and, with Tag, a route of its
// own: /svc/NAME@TAG and TAG-NAME.<domain>, as Knative's tags do.
type TrafficTarget struct {
	Revision int    `json:"revision,omitempty"`
	Latest   bool   `json:"latest,omitempty"`
	Percent  int    `json:"percent"`
	Tag      string `json:"tag,omitempty"`
}

// ValidateTraffic checks a split: each target names a revision number or
// Latest (not both), percents between 0 and 100 summing to 100, tags
// valid names (lower-case DNS labels, so that TAG-NAME is a host) and
// unique. Whether the revisions exist and are ready is the caller's to
// check. An empty split is valid: the latest revision takes all.
func ValidateTraffic(t []TrafficTarget) error {
	if len(t) == 0 {
		return nil
	}
	sum := 0
	tags := map[string]bool{}
	for _, x := range t {
		switch {
		case x.Latest && x.Revision != 0:
			return fmt.Errorf("traffic: a target names a revision (%d) or the latest, not both: %w", x.Revision, ErrInvalid)
		case !x.Latest && x.Revision < 1:
			return fmt.Errorf("traffic: a target needs a revision number or the latest: %w", ErrInvalid)
		case x.Percent < 0 || x.Percent > 100:
			return fmt.Errorf("traffic: percent %d: must be between 0 and 100: %w", x.Percent, ErrInvalid)
		}
		if x.Tag != "" {
			if !tagRE.MatchString(x.Tag) {
				return fmt.Errorf("traffic: tag %q: must be 1-32 characters of a-z, 0-9 or '-', starting with a letter: %w", x.Tag, ErrInvalid)
			}
			if tags[x.Tag] {
				return fmt.Errorf("traffic: tag %q is given twice: %w", x.Tag, ErrInvalid)
			}
			tags[x.Tag] = true
		}
		sum += x.Percent
	}
	if sum != 100 {
		return fmt.Errorf("traffic: percents sum to %d, not 100: %w", sum, ErrInvalid)
	}
	return nil
}

var tagRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$`)
