package stratus_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"hello-world_2", true},
		{"ABC", true},
		{strings.Repeat("x", stratus.MaxFunctionNameSize), true},
		{"", false},
		{strings.Repeat("x", stratus.MaxFunctionNameSize+1), false},
		{"a.b", false},
		{"a/b", false},
		{"a b", false},
		{"a:1", false},
		{"$LATEST", false},
		{"é", false},
		{"a\n", false},
	} {
		err := stratus.ValidName(tc.name)
		if tc.ok && err != nil {
			t.Errorf("ValidName(%q) = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// FuzzValidName checks ValidName against its rule, spelled out another
// way: 1 to 64 bytes, each an ASCII letter, digit, '-' or '_'.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"a", "fn-1_x", "", "a.b", "../x", "a\x00", "é", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := len(s) >= 1 && len(s) <= stratus.MaxFunctionNameSize
		for _, c := range []byte(s) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				want = false
			}
		}
		err := stratus.ValidName(s)
		if want && err != nil {
			t.Fatalf("ValidName(%q) = %v, want nil", s, err)
		}
		if !want && !errors.Is(err, stratus.ErrInvalid) {
			t.Fatalf("ValidName(%q) = %v, want ErrInvalid", s, err)
		}
	})
}

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in         string
		kind, name string // "" when refused
	}{
		{"function:fn", stratus.DestFunction, "fn"},
		{"topic:orders-1", stratus.DestTopic, "orders-1"},
		{"function:a:b:c", "", ""},
		{"queue:fn", "", ""},
		{"fn", "", ""},
		{"function:", "", ""},
		{":fn", "", ""},
		{"Function:fn", "", ""},
		{"topic:a/b", "", ""},
		{"", "", ""},
	} {
		kind, name, err := stratus.ParseDestination(tc.in)
		if tc.kind == "" {
			if !errors.Is(err, stratus.ErrInvalid) || kind != "" || name != "" {
				t.Errorf("ParseDestination(%q) = %q, %q, %v; want ErrInvalid", tc.in, kind, name, err)
			}
			continue
		}
		if err != nil || kind != tc.kind || name != tc.name {
			t.Errorf("ParseDestination(%q) = %q, %q, %v; want %q, %q", tc.in, kind, name, err, tc.kind, tc.name)
		}
	}
}

// FuzzParseDestination: what parses is KIND:NAME with a known kind and a
// valid name, and reads back as the input; everything else is ErrInvalid.
func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{"function:fn", "topic:t", "function:", "queue:x", "topic:a:b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, name, err := stratus.ParseDestination(s)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("ParseDestination(%q) = %v, want ErrInvalid", s, err)
			}
			return
		}
		if kind != stratus.DestFunction && kind != stratus.DestTopic {
			t.Fatalf("ParseDestination(%q): kind %q", s, kind)
		}
		if kind+":"+name != s || stratus.ValidName(name) != nil {
			t.Fatalf("ParseDestination(%q) = %q, %q", s, kind, name)
		}
	})
}

func TestFunctionConfigDefaults(t *testing.T) {
	var c stratus.FunctionConfig
	c.Defaults()
	want := stratus.FunctionConfig{
		MemoryMB:       stratus.DefaultMemoryMB,
		TimeoutSec:     stratus.DefaultTimeoutSec,
		MaxConcurrency: stratus.DefaultMaxConc,
		Auth:           stratus.AuthToken,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Defaults of the zero config (-want +got):\n%s", diff)
	}
	if c.Retries() != stratus.DefaultMaxRetries || c.EventAge() != stratus.DefaultMaxEventAge {
		t.Errorf("zero config: %d retries, event age %s; want the defaults", c.Retries(), c.EventAge())
	}

	// What is set stays; an image makes the runtime "image".
	zero := 0
	c = stratus.FunctionConfig{Image: "example.com/fn:v1", MemoryMB: 512, TimeoutSec: 60, MaxConcurrency: 3,
		Auth: stratus.AuthNone, MaxRetries: &zero, MaxEventAge: stratus.Duration(time.Hour)}
	want = c
	want.Runtime = stratus.RuntimeImage
	c.Defaults()
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Defaults of a set config (-want +got):\n%s", diff)
	}
	if c.Retries() != 0 || c.EventAge() != time.Hour {
		t.Errorf("set config: %d retries, event age %s; want 0 and 1h", c.Retries(), c.EventAge())
	}
}

// validFunction is a configuration that passes Validate; each case of
// TestFunctionConfigValidate changes one thing.
func validFunction() stratus.FunctionConfig {
	c := stratus.FunctionConfig{Runtime: stratus.RuntimePython3, Handler: "app.handler"}
	c.Defaults()
	return c
}

func TestFunctionConfigValidate(t *testing.T) {
	limits := stratus.Limits{MaxConcurrency: 200, MaxRetries: 5}
	for _, tc := range []struct {
		name string
		edit func(c *stratus.FunctionConfig)
		// err is a pattern of the error's message; "" when it passes.
		err string
	}{
		{"valid", func(c *stratus.FunctionConfig) {}, ""},

		// Runtime and handler.
		{"provided", func(c *stratus.FunctionConfig) { c.Runtime, c.Handler = stratus.RuntimeProvided, "" }, ""},
		{"provided.al2", func(c *stratus.FunctionConfig) { c.Runtime = stratus.RuntimeProvidedAL2 }, ""},
		{"provided.al2023", func(c *stratus.FunctionConfig) { c.Runtime = stratus.RuntimeProvidedAL2023 }, ""},
		{"nodejs", func(c *stratus.FunctionConfig) { c.Runtime, c.Handler = stratus.RuntimeNodejs, "index.handler" }, ""},
		{"nested handler", func(c *stratus.FunctionConfig) { c.Handler = "pkg.mod.handler" }, ""},
		{"image", func(c *stratus.FunctionConfig) { c.Runtime, c.Image = stratus.RuntimeImage, "example.com/fn:v1" }, ""},
		{"no runtime", func(c *stratus.FunctionConfig) { c.Runtime = "" }, `^runtime is required \(one of image, nodejs, `},
		{"unknown runtime", func(c *stratus.FunctionConfig) { c.Runtime = "java21" }, `^unknown runtime "java21"`},
		{"python without handler", func(c *stratus.FunctionConfig) { c.Handler = "" }, `^handler is required \(module.function\)`},
		{"nodejs without handler", func(c *stratus.FunctionConfig) { c.Runtime, c.Handler = stratus.RuntimeNodejs, "" }, `^handler is required \(file.function\)`},
		{"handler without dot", func(c *stratus.FunctionConfig) { c.Handler = "handler" }, `^handler "handler": must be module.function`},
		{"handler starting with dot", func(c *stratus.FunctionConfig) { c.Handler = ".handler" }, `^handler ".handler"`},
		{"handler ending with dot", func(c *stratus.FunctionConfig) { c.Handler = "app." }, `^handler "app."`},
		{"handler with ..", func(c *stratus.FunctionConfig) { c.Handler = "a..b.handler" }, `^handler "a..b.handler"`},
		{"absolute handler", func(c *stratus.FunctionConfig) { c.Handler = "/etc/app.handler" }, `^handler "/etc/app.handler"`},
		{"image runtime without image", func(c *stratus.FunctionConfig) { c.Runtime = stratus.RuntimeImage }, `^runtime image needs an image reference`},
		{"image with another runtime", func(c *stratus.FunctionConfig) { c.Image = "example.com/fn:v1" }, `^a function from an image has runtime "image", not "python3"`},

		// Memory, timeout, concurrency, instances.
		{"memory min", func(c *stratus.FunctionConfig) { c.MemoryMB = stratus.MinMemoryMB }, ""},
		{"memory max", func(c *stratus.FunctionConfig) { c.MemoryMB = stratus.MaxMemoryMB }, ""},
		{"memory too small", func(c *stratus.FunctionConfig) { c.MemoryMB = stratus.MinMemoryMB - 1 }, `^memory 127 MB: must be between 128 and 10240`},
		{"memory too large", func(c *stratus.FunctionConfig) { c.MemoryMB = stratus.MaxMemoryMB + 1 }, `^memory 10241 MB`},
		{"timeout min", func(c *stratus.FunctionConfig) { c.TimeoutSec = stratus.MinTimeoutSec }, ""},
		{"timeout max", func(c *stratus.FunctionConfig) { c.TimeoutSec = stratus.MaxTimeoutSec }, ""},
		{"timeout zero", func(c *stratus.FunctionConfig) { c.TimeoutSec = 0 }, `^timeout 0 s: must be between 1 and 900`},
		{"timeout too long", func(c *stratus.FunctionConfig) { c.TimeoutSec = stratus.MaxTimeoutSec + 1 }, `^timeout 901 s`},
		{"concurrency at the server's cap", func(c *stratus.FunctionConfig) { c.MaxConcurrency = 200 }, ""},
		{"concurrency over the server's cap", func(c *stratus.FunctionConfig) { c.MaxConcurrency = 201 }, `^max concurrency 201: must be between 1 and 200`},
		{"concurrency zero", func(c *stratus.FunctionConfig) { c.MaxConcurrency = 0 }, `^max concurrency 0`},
		{"min instances at max concurrency", func(c *stratus.FunctionConfig) { c.MaxConcurrency, c.MinInstances = 4, 4 }, ""},
		{"min instances over max concurrency", func(c *stratus.FunctionConfig) { c.MaxConcurrency, c.MinInstances = 4, 5 }, `^min instances 5: must be between 0 and max concurrency \(4\)`},
		{"negative min instances", func(c *stratus.FunctionConfig) { c.MinInstances = -1 }, `^min instances -1`},
		{"idle timeout", func(c *stratus.FunctionConfig) { c.IdleTimeout = stratus.Duration(time.Minute) }, ""},
		{"negative idle timeout", func(c *stratus.FunctionConfig) { c.IdleTimeout = stratus.Duration(-time.Second) }, `^idle timeout -1s: must not be negative`},

		// Auth.
		{"auth none", func(c *stratus.FunctionConfig) { c.Auth = stratus.AuthNone }, ""},
		{"auth unknown", func(c *stratus.FunctionConfig) { c.Auth = "iam" }, `^auth "iam": must be "token", "none" or "signed"`},

		// Async.
		{"no retries", func(c *stratus.FunctionConfig) { c.MaxRetries = ptr(0) }, ""},
		{"retries up to the server's bound", func(c *stratus.FunctionConfig) { c.MaxRetries = ptr(5) }, ""},
		{"retries over the server's bound", func(c *stratus.FunctionConfig) { c.MaxRetries = ptr(6) }, `^max retries 6: must be between 0 and 5`},
		{"negative retries", func(c *stratus.FunctionConfig) { c.MaxRetries = ptr(-1) }, `^max retries -1`},
		{"event age min", func(c *stratus.FunctionConfig) { c.MaxEventAge = stratus.Duration(stratus.MinMaxEventAge) }, ""},
		{"event age max", func(c *stratus.FunctionConfig) { c.MaxEventAge = stratus.Duration(stratus.DefaultMaxEventAge) }, ""},
		{"event age too short", func(c *stratus.FunctionConfig) { c.MaxEventAge = stratus.Duration(59 * time.Second) }, `^max event age 59s: must be between 1m0s and 6h0m0s`},
		{"event age too long", func(c *stratus.FunctionConfig) { c.MaxEventAge = stratus.Duration(7 * time.Hour) }, `^max event age 7h0m0s`},
		{"destinations", func(c *stratus.FunctionConfig) { c.OnSuccess, c.OnFailure = "topic:done", "function:dlq" }, ""},
		{"bad success destination", func(c *stratus.FunctionConfig) { c.OnSuccess = "queue:x" }, `^destination "queue:x": want function:NAME\[:QUALIFIER\] or topic:NAME`},
		{"bad failure destination", func(c *stratus.FunctionConfig) { c.OnFailure = "function:a b" }, `^destination "function:a b": name "a b"`},

		// Environment.
		{"env", func(c *stratus.FunctionConfig) { c.Env = map[string]string{"A": "1", "b_2": "x"} }, ""},
		{"env name with a digit first", func(c *stratus.FunctionConfig) { c.Env = map[string]string{"1A": ""} }, `^environment variable "1A": names start with a letter`},
		{"env name with a dash", func(c *stratus.FunctionConfig) { c.Env = map[string]string{"A-B": ""} }, `^environment variable "A-B"`},
		{"reserved env", func(c *stratus.FunctionConfig) { c.Env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x"} }, `^environment variable "AWS_LAMBDA_RUNTIME_API" is reserved`},
		{"reserved handler env", func(c *stratus.FunctionConfig) { c.Env = map[string]string{"_HANDLER": "x"} }, `^environment variable "_HANDLER"`},
		{"env at its bound", func(c *stratus.FunctionConfig) {
			c.Env = map[string]string{"A": strings.Repeat("x", stratus.MaxEnvBytes-1)}
		}, ""},
		{"env over its bound", func(c *stratus.FunctionConfig) {
			c.Env = map[string]string{"A": strings.Repeat("x", stratus.MaxEnvBytes)}
		}, `^environment variables take 4097 bytes, more than 4096`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validFunction()
			tc.edit(&c)
			checkErr(t, c.Validate(limits), tc.err)
		})
	}
}

// TestFunctionConfigValidateRetriesBound: a function may ask for up to
// the server's Limits.MaxRetries retries, and always for Lambda's
// default (DefaultMaxRetries), even on a server that allows fewer or sets
// no bound.
func TestFunctionConfigValidateRetriesBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		serverMax int // Limits.MaxRetries
		bound     int // the most a function may ask for
	}{
		{"no server bound", 0, stratus.DefaultMaxRetries},
		{"a server allowing fewer", stratus.DefaultMaxRetries - 1, stratus.DefaultMaxRetries},
		{"a server allowing the default", stratus.DefaultMaxRetries, stratus.DefaultMaxRetries},
		{"a server allowing more", stratus.DefaultMaxRetries + 3, stratus.DefaultMaxRetries + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limits := stratus.Limits{MaxConcurrency: stratus.DefaultMaxConc, MaxRetries: tc.serverMax}
			c := validFunction()
			c.MaxRetries = nil // the default
			if err := c.Validate(limits); err != nil {
				t.Errorf("the default retries: %v", err)
			}
			for _, n := range []int{0, stratus.DefaultMaxRetries, tc.bound} {
				c.MaxRetries = ptr(n)
				if err := c.Validate(limits); err != nil {
					t.Errorf("%d retries: %v", n, err)
				}
			}
			c.MaxRetries = ptr(tc.bound + 1)
			checkErr(t, c.Validate(limits), fmt.Sprintf(`^max retries %d: must be between 0 and %d`, tc.bound+1, tc.bound))
		})
	}
}

func TestRuntimes(t *testing.T) {
	want := []string{"image", "nodejs", "provided", "provided.al2", "provided.al2023", "python3"}
	if diff := cmp.Diff(want, stratus.Runtimes()); diff != "" {
		t.Errorf("Runtimes (-want +got):\n%s", diff)
	}
	for _, r := range stratus.Runtimes() {
		if got, want := stratus.IsProvided(r), strings.HasPrefix(r, "provided"); got != want {
			t.Errorf("IsProvided(%q) = %v, want %v", r, got, want)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d stratus.Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d != stratus.Duration(90*time.Second) {
		t.Fatalf("UnmarshalText(1m30s) = %v, %v", d, err)
	}
	if b, err := d.MarshalText(); err != nil || string(b) != "1m30s" {
		t.Errorf("MarshalText = %q, %v; want 1m30s", b, err)
	}
	for _, bad := range []string{"", "90", "1 minute", "-"} {
		if err := d.UnmarshalText([]byte(bad)); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("UnmarshalText(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

// checkErr fails t unless err is nil when pattern is "", else an
// ErrInvalid whose message matches pattern.
func checkErr(t *testing.T, err error, pattern string) {
	t.Helper()
	if pattern == "" {
		if err != nil {
			t.Errorf("err = %v, want nil", err)
		}
		return
	}
	if !errors.Is(err, stratus.ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if !regexp.MustCompile(pattern).MatchString(err.Error()) {
		t.Errorf("err = %q, want it to match %q", err, pattern)
	}
}

func ptr[T any](v T) *T { return &v }
