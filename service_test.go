package stratus_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stratus-run/stratus"
)

func TestServiceConfigDefaults(t *testing.T) {
	c := stratus.ServiceConfig{Image: "example.com/app:v1"}
	c.Defaults()
	want := stratus.ServiceConfig{
		Image:    "example.com/app:v1",
		Port:     stratus.DefaultServicePort,
		MaxScale: stratus.DefaultServiceMaxScale,
		MemoryMB: stratus.DefaultServiceMemoryMB,
		CPU:      stratus.DefaultServiceCPU,
		Auth:     stratus.AuthToken,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Defaults (-want +got):\n%s", diff)
	}

	// Concurrency 0 (no limit) stays; a min scale above the default max
	// raises the max to it.
	c = stratus.ServiceConfig{Image: "x", MinScale: 20}
	c.Defaults()
	if c.MaxScale != 20 || c.Concurrency != 0 {
		t.Errorf("min scale 20: max scale %d, concurrency %d; want 20 and 0", c.MaxScale, c.Concurrency)
	}

	// An initial scale above the default max raises the max to it.
	c = stratus.ServiceConfig{Image: "x", InitialScale: intp(15)}
	c.Defaults()
	if c.MaxScale != 15 {
		t.Errorf("initial scale 15: max scale %d, want 15", c.MaxScale)
	}

	// A CPU request without a limit above the default limit raises the
	// limit to it; below it, the default limit stays.
	for _, tc := range []struct{ req, cpu float64 }{{4, 4}, {0.25, stratus.DefaultServiceCPU}} {
		c = stratus.ServiceConfig{Image: "x", CPURequest: tc.req}
		c.Defaults()
		if c.CPU != tc.cpu || c.CPURequest != tc.req {
			t.Errorf("cpu request %g alone: cpu %g, request %g; want %g and %g", tc.req, c.CPU, c.CPURequest, tc.cpu, tc.req)
		}
	}

	// What is set stays.
	c = stratus.ServiceConfig{Image: "x", Port: 9000, MaxScale: 3, MemoryMB: 256, CPU: 0.5, Auth: stratus.AuthNone}
	want = c
	c.Defaults()
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("Defaults of a set config (-want +got):\n%s", diff)
	}
}

func TestServiceConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *stratus.ServiceConfig)
		err  string // a pattern of the error's message; "" when it passes
	}{
		{"valid", func(c *stratus.ServiceConfig) {}, ""},

		{"no image", func(c *stratus.ServiceConfig) { c.Image = "" }, `^image is required`},
		{"blank image", func(c *stratus.ServiceConfig) { c.Image = " \t" }, `^image is required`},

		{"port 1", func(c *stratus.ServiceConfig) { c.Port = 1 }, ""},
		{"port 65535", func(c *stratus.ServiceConfig) { c.Port = 65535 }, ""},
		{"port 0", func(c *stratus.ServiceConfig) { c.Port = 0 }, `^port 0: must be between 1 and 65535`},
		{"port too large", func(c *stratus.ServiceConfig) { c.Port = 65536 }, `^port 65536`},

		{"scale to zero", func(c *stratus.ServiceConfig) { c.MinScale = 0 }, ""},
		{"min equals max", func(c *stratus.ServiceConfig) { c.MinScale, c.MaxScale = 3, 3 }, ""},
		{"max scale bound", func(c *stratus.ServiceConfig) { c.MaxScale = stratus.MaxServiceScale }, ""},
		{"negative min", func(c *stratus.ServiceConfig) { c.MinScale = -1 }, `^min -1: must be between 0 and 1000`},
		{"min over the bound", func(c *stratus.ServiceConfig) { c.MinScale, c.MaxScale = 1001, 1001 }, `^min 1001`},
		{"max zero", func(c *stratus.ServiceConfig) { c.MaxScale = 0 }, `^max 0: must be between max\(1, min\) and 1000`},
		{"max below min", func(c *stratus.ServiceConfig) { c.MinScale, c.MaxScale = 4, 3 }, `^max 3`},
		{"max over the bound", func(c *stratus.ServiceConfig) { c.MaxScale = 1001 }, `^max 1001`},

		{"no concurrency limit", func(c *stratus.ServiceConfig) { c.Concurrency = 0 }, ""},
		{"concurrency bound", func(c *stratus.ServiceConfig) { c.Concurrency = stratus.MaxServiceConcurrency }, ""},
		{"negative concurrency", func(c *stratus.ServiceConfig) { c.Concurrency = -1 }, `^concurrency -1: must be between 0 \(no limit\) and 1000`},
		{"concurrency over the bound", func(c *stratus.ServiceConfig) { c.Concurrency = 1001 }, `^concurrency 1001`},

		{"memory min", func(c *stratus.ServiceConfig) { c.MemoryMB = stratus.MinServiceMemoryMB }, ""},
		{"memory max", func(c *stratus.ServiceConfig) { c.MemoryMB = stratus.MaxServiceMemoryMB }, ""},
		{"memory too small", func(c *stratus.ServiceConfig) { c.MemoryMB = 63 }, `^memory 63 MB: must be between 64 and 32768`},
		{"memory too large", func(c *stratus.ServiceConfig) { c.MemoryMB = 32769 }, `^memory 32769 MB`},

		{"cpu min", func(c *stratus.ServiceConfig) { c.CPU = stratus.MinServiceCPU }, ""},
		{"cpu max", func(c *stratus.ServiceConfig) { c.CPU = stratus.MaxServiceCPU }, ""},
		{"cpu too small", func(c *stratus.ServiceConfig) { c.CPU = 0.001 }, `^cpu 0.001: must be between 0.01 and 64`},
		{"cpu too large", func(c *stratus.ServiceConfig) { c.CPU = 65 }, `^cpu 65`},
		{"cpu request", func(c *stratus.ServiceConfig) { c.CPU, c.CPURequest = 1, 0.125 }, ""},
		{"cpu request at the limit", func(c *stratus.ServiceConfig) { c.CPU, c.CPURequest = 2, 2 }, ""},
		{"cpu request over the limit", func(c *stratus.ServiceConfig) { c.CPU, c.CPURequest = 0.5, 1 },
			`^cpu request 1: must be between 0.01 and the cpu limit, 0.5 \(0: the limit\)`},
		{"cpu request too small", func(c *stratus.ServiceConfig) { c.CPURequest = 0.001 }, `^cpu request 0.001`},
		{"negative cpu request", func(c *stratus.ServiceConfig) { c.CPURequest = -1 }, `^cpu request -1`},

		{"health path", func(c *stratus.ServiceConfig) { c.HealthPath = "/healthz?full=1" }, ""},
		{"relative health path", func(c *stratus.ServiceConfig) { c.HealthPath = "healthz" }, `^health path "healthz": must start with / and hold no spaces`},
		{"health path with a space", func(c *stratus.ServiceConfig) { c.HealthPath = "/a b" }, `^health path "/a b"`},
		{"health path with a newline", func(c *stratus.ServiceConfig) { c.HealthPath = "/a\n" }, `^health path`},

		{"command", func(c *stratus.ServiceConfig) { c.Command = []string{"/server", ""} }, ""},
		{"empty program", func(c *stratus.ServiceConfig) { c.Command = []string{""} }, `^command: the program must not be empty`},

		{"args", func(c *stratus.ServiceConfig) { c.Args = []string{"", "-v"} }, ""},
		{"command with NUL", func(c *stratus.ServiceConfig) { c.Command = []string{"/a\x00b"} }, `^command and args: "/a\\x00b" holds a NUL byte`},
		{"args with NUL", func(c *stratus.ServiceConfig) { c.Args = []string{"\x00"} }, `^command and args: .* holds a NUL byte`},

		{"liveness path", func(c *stratus.ServiceConfig) { c.LivenessPath = "/alive" }, ""},
		{"relative liveness path", func(c *stratus.ServiceConfig) { c.LivenessPath = "alive" }, `^liveness path "alive": must start with / and hold no spaces`},
		{"liveness path with a tab", func(c *stratus.ServiceConfig) { c.LivenessPath = "/a\tb" }, `^liveness path`},

		{"timeout", func(c *stratus.ServiceConfig) { c.TimeoutSec = stratus.MaxServiceTimeoutSec }, ""},
		{"negative timeout", func(c *stratus.ServiceConfig) { c.TimeoutSec = -1 }, `^timeout -1 s: must be between 0 \(the default, 300\) and 3600`},
		{"timeout over the bound", func(c *stratus.ServiceConfig) { c.TimeoutSec = 3601 }, `^timeout 3601 s`},

		{"target", func(c *stratus.ServiceConfig) { c.Target = stratus.MinServiceTarget }, ""},
		{"target at the bound", func(c *stratus.ServiceConfig) { c.Target = stratus.MaxServiceConcurrency }, ""},
		{"target too small", func(c *stratus.ServiceConfig) { c.Target = 0.001 }, `^target 0.001: must be between 0.01 and 1000`},
		{"negative target", func(c *stratus.ServiceConfig) { c.Target = -1 }, `^target -1`},
		{"target over the bound", func(c *stratus.ServiceConfig) { c.Target = 1001 }, `^target 1001`},

		{"initial scale", func(c *stratus.ServiceConfig) { c.InitialScale = intp(3) }, ""},
		{"initial scale 0 with min 0", func(c *stratus.ServiceConfig) { c.InitialScale = intp(0) }, ""},
		{"initial scale 0 with min 1", func(c *stratus.ServiceConfig) { c.MinScale, c.InitialScale = 1, intp(0) }, `^initial scale 0: allowed only with min scale 0, not 1`},
		{"negative initial scale", func(c *stratus.ServiceConfig) { c.InitialScale = intp(-1) }, `^initial scale -1: must be between 0 and the max scale, 10`},
		{"initial scale over the max", func(c *stratus.ServiceConfig) { c.InitialScale = intp(11) }, `^initial scale 11`},

		{"window", func(c *stratus.ServiceConfig) { c.Window = stratus.Duration(stratus.MinServiceWindow) }, ""},
		{"window max", func(c *stratus.ServiceConfig) { c.Window = stratus.Duration(stratus.MaxServiceWindow) }, ""},
		{"window too short", func(c *stratus.ServiceConfig) { c.Window = stratus.Duration(5 * time.Second) }, `^window 5s: must be between 6s and 1h0m0s`},
		{"window too long", func(c *stratus.ServiceConfig) { c.Window = stratus.Duration(2 * time.Hour) }, `^window 2h0m0s`},
		{"negative window", func(c *stratus.ServiceConfig) { c.Window = -1 }, `^window -1ns`},

		{"auth none", func(c *stratus.ServiceConfig) { c.Auth = stratus.AuthNone }, ""},
		{"auth unknown", func(c *stratus.ServiceConfig) { c.Auth = "" }, `^auth "": must be "token" or "none"`},

		{"env", func(c *stratus.ServiceConfig) { c.Env = map[string]string{"LOG_LEVEL": "debug"} }, ""},
		{"env that functions may not set", func(c *stratus.ServiceConfig) { c.Env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x"} }, ""},
		{"bad env name", func(c *stratus.ServiceConfig) { c.Env = map[string]string{"_A": ""} }, `^environment variable "_A": names start with a letter`},
		{"reserved PORT", func(c *stratus.ServiceConfig) { c.Env = map[string]string{"PORT": "1"} }, `^environment variable "PORT" is reserved`},
		{"reserved K_SERVICE", func(c *stratus.ServiceConfig) { c.Env = map[string]string{"K_SERVICE": "x"} }, `^environment variable "K_SERVICE" is reserved`},
		{"env at its bound", func(c *stratus.ServiceConfig) {
			c.Env = map[string]string{"A": strings.Repeat("x", 32*stratus.MaxEnvBytes-1)}
		}, ""},
		{"env over its bound", func(c *stratus.ServiceConfig) {
			c.Env = map[string]string{"A": strings.Repeat("x", 32*stratus.MaxEnvBytes)}
		}, `^environment variables take 131073 bytes, more than 131072`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := stratus.ServiceConfig{Image: "example.com/app:v1"}
			c.Defaults()
			tc.edit(&c)
			checkErr(t, c.Validate(), tc.err)
		})
	}
}

func TestRevisionName(t *testing.T) {
	r := stratus.Revision{Service: "web", Number: 2}
	if got := r.Name(); got != "web-00002" {
		t.Errorf("Name = %q, want web-00002", got)
	}
	if got := stratus.ServiceLogKey("web"); got != "svc/web" || stratus.ValidName(got) == nil {
		t.Errorf("ServiceLogKey = %q, want svc/web, which no function can be named", got)
	}
}

func intp(n int) *int { return &n }

func TestValidateTraffic(t *testing.T) {
	type tt = stratus.TrafficTarget
	for _, tc := range []struct {
		name  string
		split []tt
		err   string
	}{
		{"none", nil, ""},
		{"latest", []tt{{Latest: true, Percent: 100}}, ""},
		{"split", []tt{{Revision: 1, Percent: 90}, {Latest: true, Percent: 10, Tag: "canary"}}, ""},
		{"tag at 0%", []tt{{Revision: 2, Percent: 100}, {Revision: 1, Tag: "old-1"}}, ""},
		{"a revision twice", []tt{{Revision: 2, Percent: 50, Tag: "a"}, {Revision: 2, Percent: 50, Tag: "b"}}, ""},
		{"sum 90", []tt{{Revision: 1, Percent: 90}}, `^traffic: percents sum to 90, not 100`},
		{"sum 110", []tt{{Revision: 1, Percent: 60}, {Latest: true, Percent: 50}}, `sum to 110`},
		{"negative", []tt{{Revision: 1, Percent: -10}, {Latest: true, Percent: 110}}, `percent -10: must be between 0 and 100`},
		{"no revision", []tt{{Percent: 100}}, `needs a revision number or the latest`},
		{"revision 0", []tt{{Revision: 0, Percent: 100}}, `needs a revision number`},
		{"both", []tt{{Revision: 1, Latest: true, Percent: 100}}, `not both`},
		{"tag upper case", []tt{{Latest: true, Percent: 100, Tag: "Canary"}}, `tag "Canary": must be 1-32 characters`},
		{"tag with a dot", []tt{{Latest: true, Percent: 100, Tag: "a.b"}}, `tag "a.b"`},
		{"tag ends with a dash", []tt{{Latest: true, Percent: 100, Tag: "a-"}}, `tag "a-"`},
		{"tag too long", []tt{{Latest: true, Percent: 100, Tag: strings.Repeat("a", 33)}}, `tag "a{33}"`},
		{"tag twice", []tt{{Revision: 1, Percent: 50, Tag: "x"}, {Latest: true, Percent: 50, Tag: "x"}}, `tag "x" is given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkErr(t, stratus.ValidateTraffic(tc.split), tc.err) })
	}
}
