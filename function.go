package stratus

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Runtime names accepted by deploy.
const (
	RuntimeProvided       = "provided"
	RuntimeProvidedAL2    = "provided.al2"
	RuntimeProvidedAL2023 = "provided.al2023"
	RuntimePython3        = "python3"
	RuntimeNodejs         = "nodejs"
	// RuntimeImage runs a container image whose entrypoint is a Runtime
	// API client, as Lambda's container images do.
	RuntimeImage = "image"
)

// Auth modes of a function's HTTP route. AuthSigned (a function URL's
// AWS_IAM) takes a request signed with AWS Signature Version 4 by one of
// the server's access keys, or the token.
const (
	AuthToken  = "token"
	AuthNone   = "none"
	AuthSigned = "signed"
)

// Limits of a function's configuration, as on Lambda.
const (
	MinMemoryMB         = 128
	MaxMemoryMB         = 10240
	DefaultMemoryMB     = 128
	MinTimeoutSec       = 1
	MaxTimeoutSec       = 900
	DefaultTimeoutSec   = 3
	DefaultMaxConc      = 100
	MaxEnvBytes         = 4096
	DefaultIdleTimeout  = 5 * time.Minute
	MaxMinInstances     = 100
	LatestVersion       = "$LATEST"
	MaxFunctionNameSize = 64
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidName reports whether s is a valid function or service name.
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("name %q: must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_': %w", s, ErrInvalid)
	}
	return nil
}

// FunctionConfig is what a user sets when deploying a function.
type FunctionConfig struct {
	Runtime string `json:"runtime"`
	// Image is the image reference of a function deployed from an image
	// (runtime "image"); its version's code digest is the image's.
	Image          string            `json:"image,omitempty"`
	Handler        string            `json:"handler,omitempty"`
	MemoryMB       int               `json:"memoryMB"`
	TimeoutSec     int               `json:"timeoutSec"`
	Env            map[string]string `json:"env,omitempty"`
	MaxConcurrency int               `json:"maxConcurrency"`
	MinInstances   int               `json:"minInstances"`
	// IdleTimeout is how long an idle instance lives; zero means the
	// server's default.
	IdleTimeout Duration `json:"idleTimeout,omitempty"`
	Auth        string   `json:"auth"`
	// Regions are the regions the function may run in (none: any): a
	// server runs its instances only when its own region is one of them,
	// and on Kubernetes they become the pods' node affinity on
	// topology.kubernetes.io/region. See ValidRegion.
	Regions []string `json:"regions,omitempty"`

	// Asynchronous invocations. MaxRetries is how often a failed event is
	// tried again (nil: DefaultMaxRetries); MaxEventAge how long an event
	// may wait in all (zero: DefaultMaxEventAge). OnSuccess and OnFailure
	// are destinations: "function:NAME" or "topic:NAME".
	MaxRetries  *int     `json:"maxRetries,omitempty"`
	MaxEventAge Duration `json:"maxEventAge,omitempty"`
	OnSuccess   string   `json:"onSuccess,omitempty"`
	OnFailure   string   `json:"onFailure,omitempty"`

	// Throttled, as Lambda's reserved concurrency of 0, refuses every
	// invocation of every version with ErrCapacity (MaxConcurrency is
	// kept for when it is lifted).
	Throttled bool `json:"throttled,omitempty"`
	// What a function made through the Lambda API carries and gets back,
	// kept but not used: the runtime's identifier as given ("python3.12";
	// Runtime is its family), the execution role's ARN and a description.
	LambdaRuntime string `json:"lambdaRuntime,omitempty"`
	Role          string `json:"role,omitempty"`
	Description   string `json:"description,omitempty"`
}

// Async defaults and bounds, as on Lambda.
const (
	DefaultMaxRetries  = 2
	DefaultMaxEventAge = 6 * time.Hour
	MinMaxEventAge     = time.Minute
)

// Limits are the server's bounds on a function's configuration.
type Limits struct {
	// MaxConcurrency is the server-wide instance cap.
	MaxConcurrency int
	// MaxRetries is the most async retries a function may ask for (2 on
	// Lambda; a server may allow more).
	MaxRetries int
}

// Retries is the function's async retry count.
func (c *FunctionConfig) Retries() int {
	if c.MaxRetries == nil {
		return DefaultMaxRetries
	}
	return *c.MaxRetries
}

// EventAge is the function's maximum async event age.
func (c *FunctionConfig) EventAge() time.Duration {
	if c.MaxEventAge == 0 {
		return DefaultMaxEventAge
	}
	return time.Duration(c.MaxEventAge)
}

// Destination kinds.
const (
	DestFunction = "function"
	DestTopic    = "topic"
)

// ParseDestination splits "function:NAME[:QUALIFIER]" or "topic:NAME".
func ParseDestination(s string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(s, ":")
	if !ok || (kind != DestFunction && kind != DestTopic) {
		return "", "", fmt.Errorf("destination %q: want function:NAME[:QUALIFIER] or topic:NAME: %w", s, ErrInvalid)
	}
	if kind == DestFunction {
		ref, err := ParseFunctionRef(name)
		if err != nil || strings.Count(name, ":") > 1 {
			if err == nil {
				err = fmt.Errorf("want NAME or NAME:QUALIFIER: %w", ErrInvalid)
			}
			return "", "", fmt.Errorf("destination %q: %w", s, err)
		}
		return kind, ref.String(), nil
	}
	if err := ValidName(name); err != nil {
		return "", "", fmt.Errorf("destination %q: %w", s, err)
	}
	return kind, name, nil
}

// Defaults fills the zero fields of c with Lambda's defaults.
func (c *FunctionConfig) Defaults() {
	if c.MemoryMB == 0 {
		c.MemoryMB = DefaultMemoryMB
	}
	if c.TimeoutSec == 0 {
		c.TimeoutSec = DefaultTimeoutSec
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = DefaultMaxConc
	}
	if c.Auth == "" {
		c.Auth = AuthToken
	}
	if c.Image != "" && c.Runtime == "" {
		c.Runtime = RuntimeImage
	}
}

// reservedEnv are the variables the platform sets; a function may not
// override them.
var reservedEnv = map[string]bool{
	"AWS_LAMBDA_RUNTIME_API": true, "AWS_LAMBDA_FUNCTION_NAME": true,
	"AWS_LAMBDA_FUNCTION_VERSION": true, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"LAMBDA_TASK_ROOT": true, "LAMBDA_RUNTIME_DIR": true, "_HANDLER": true,
	"AWS_LAMBDA_LOG_GROUP_NAME": true, "AWS_LAMBDA_LOG_STREAM_NAME": true,
	"AWS_LAMBDA_INITIALIZATION_TYPE": true, "AWS_EXECUTION_ENV": true,
}

var envKeyRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)

// Validate checks c after Defaults against the server's limits.
func (c *FunctionConfig) Validate(l Limits) error {
	maxConc := l.MaxConcurrency
	switch c.Runtime {
	case RuntimeProvided, RuntimeProvidedAL2, RuntimeProvidedAL2023:
	case RuntimePython3:
		if err := validHandler(c.Handler, "module.function"); err != nil {
			return err
		}
	case RuntimeNodejs:
		if err := validHandler(c.Handler, "file.function"); err != nil {
			return err
		}
	case RuntimeImage:
		if c.Image == "" {
			return fmt.Errorf("runtime image needs an image reference: %w", ErrInvalid)
		}
	case "":
		return fmt.Errorf("runtime is required (one of %s): %w", strings.Join(Runtimes(), ", "), ErrInvalid)
	default:
		return fmt.Errorf("unknown runtime %q (one of %s): %w", c.Runtime, strings.Join(Runtimes(), ", "), ErrInvalid)
	}
	if c.Image != "" && c.Runtime != RuntimeImage {
		return fmt.Errorf("a function from an image has runtime %q, not %q: %w", RuntimeImage, c.Runtime, ErrInvalid)
	}
	if c.MemoryMB < MinMemoryMB || c.MemoryMB > MaxMemoryMB {
		return fmt.Errorf("memory %d MB: must be between %d and %d: %w", c.MemoryMB, MinMemoryMB, MaxMemoryMB, ErrInvalid)
	}
	if c.TimeoutSec < MinTimeoutSec || c.TimeoutSec > MaxTimeoutSec {
		return fmt.Errorf("timeout %d s: must be between %d and %d: %w", c.TimeoutSec, MinTimeoutSec, MaxTimeoutSec, ErrInvalid)
	}
	if c.MaxConcurrency < 1 || c.MaxConcurrency > maxConc {
		return fmt.Errorf("max concurrency %d: must be between 1 and %d: %w", c.MaxConcurrency, maxConc, ErrInvalid)
	}
	if c.MinInstances < 0 || c.MinInstances > c.MaxConcurrency {
		return fmt.Errorf("min instances %d: must be between 0 and max concurrency (%d): %w", c.MinInstances, c.MaxConcurrency, ErrInvalid)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("idle timeout %s: must not be negative: %w", c.IdleTimeout, ErrInvalid)
	}
	if c.Auth != AuthToken && c.Auth != AuthNone && c.Auth != AuthSigned {
		return fmt.Errorf("auth %q: must be %q, %q or %q: %w", c.Auth, AuthToken, AuthNone, AuthSigned, ErrInvalid)
	}
	if err := validRegions(c.Regions); err != nil {
		return err
	}
	if r := c.Retries(); r < 0 || r > max(l.MaxRetries, DefaultMaxRetries) {
		return fmt.Errorf("max retries %d: must be between 0 and %d: %w", r, max(l.MaxRetries, DefaultMaxRetries), ErrInvalid)
	}
	if a := time.Duration(c.MaxEventAge); a != 0 && (a < MinMaxEventAge || a > DefaultMaxEventAge) {
		return fmt.Errorf("max event age %s: must be between %s and %s: %w", a, MinMaxEventAge, DefaultMaxEventAge, ErrInvalid)
	}
	for _, d := range []string{c.OnSuccess, c.OnFailure} {
		if d == "" {
			continue
		}
		if _, _, err := ParseDestination(d); err != nil {
			return err
		}
	}
	size := 0
	for k, v := range c.Env {
		if !envKeyRE.MatchString(k) {
			return fmt.Errorf("environment variable %q: names start with a letter and hold letters, digits and '_': %w", k, ErrInvalid)
		}
		if reservedEnv[k] {
			return fmt.Errorf("environment variable %q is reserved: %w", k, ErrInvalid)
		}
		size += len(k) + len(v)
	}
	if size > MaxEnvBytes {
		return fmt.Errorf("environment variables take %d bytes, more than %d: %w", size, MaxEnvBytes, ErrInvalid)
	}
	return nil
}

func validHandler(h, form string) error {
	if h == "" {
		return fmt.Errorf("handler is required (%s): %w", form, ErrInvalid)
	}
	i := strings.LastIndex(h, ".")
	if i <= 0 || i == len(h)-1 || strings.Contains(h, "..") || strings.HasPrefix(h, "/") {
		return fmt.Errorf("handler %q: must be %s: %w", h, form, ErrInvalid)
	}
	return nil
}

// Runtimes lists the accepted runtime names.
func Runtimes() []string {
	r := []string{RuntimeProvided, RuntimeProvidedAL2, RuntimeProvidedAL2023, RuntimePython3, RuntimeNodejs, RuntimeImage}
	sort.Strings(r)
	return r
}

// IsProvided reports whether runtime r runs a bootstrap from the code.
func IsProvided(r string) bool {
	return r == RuntimeProvided || r == RuntimeProvidedAL2 || r == RuntimeProvidedAL2023
}

// Function is a deployed function: its head ($LATEST) configuration.
type Function struct {
	Name string `json:"name"`
	// Version is the head's snapshot: every deploy makes a new one.
	Version int `json:"version"`
	// Published is the number of the newest published version (0: none).
	Published int            `json:"published,omitempty"`
	Config    FunctionConfig `json:"config"`
	CodeSHA   string         `json:"codeSha256"`
	CodeSize  int64          `json:"codeSize"`
	CreatedAt time.Time      `json:"createdAt"`
	UpdatedAt time.Time      `json:"updatedAt"`
}

// Version is an immutable snapshot of a function's code and
// configuration. Every deploy makes one (numbered by Version, a counter
// of the function's snapshots); publishing gives one a Number, Lambda's
// version number (1, 2, ... per function), which it keeps until the
// function is removed.
type Version struct {
	Function string `json:"function"`
	Version  int    `json:"version"`
	// Number is the published version's number; 0 for a snapshot that
	// was never published.
	Number    int            `json:"number,omitempty"`
	Config    FunctionConfig `json:"config"`
	CodeSHA   string         `json:"codeSha256"`
	CodeSize  int64          `json:"codeSize"`
	CreatedAt time.Time      `json:"createdAt"`
	// Description is the published version's own (PublishVersion's).
	Description string `json:"description,omitempty"`
	// Qualifier is what a copy handed to the pools runs as: empty or
	// LatestVersion for the head, the Number for a published version.
	// Each qualifier has instances of its own (see PoolKey).
	Qualifier string `json:"qualifier,omitempty"`
}

// Key names a snapshot in maps and logs: "name:version".
func (v *Version) Key() string { return fmt.Sprintf("%s:%d", v.Function, v.Version) }

// Ref is the function and qualifier v runs as.
func (v *Version) Ref() FunctionRef { return FunctionRef{Name: v.Function, Qualifier: v.Qualifier} }

// PoolKey names the instances of what v runs as: the function's name for
// its head, "NAME:N" for published version N.
func (v *Version) PoolKey() string {
	if r := v.Ref(); !r.Latest() {
		return r.String()
	}
	return v.Function
}

// RunsAs is the version name a copy of v reports (the environment's
// AWS_LAMBDA_FUNCTION_VERSION, records, X-Amz-Executed-Version):
// LatestVersion or the published number.
func (v *Version) RunsAs() string {
	if r := v.Ref(); !r.Latest() {
		return r.Qualifier
	}
	return LatestVersion
}

// Duration is a time.Duration that marshals as a Go duration string.
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, ErrInvalid)
	}
	*d = Duration(v)
	return nil
}
