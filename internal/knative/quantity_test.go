package knative

import (
	"strings"
	"testing"
)

func TestParseMemory(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		err  string
	}{
		{in: "512Mi", want: 512},
		{in: "1Gi", want: 1024},
		{in: "1.5Gi", want: 1536},
		{in: "0.5Gi", want: 512},
		{in: "131072Ki", want: 128},
		{in: "1Ti", want: 1 << 20},
		{in: "268435456", want: 256},
		{in: "268435457", want: 257}, // a byte over: rounded up
		{in: "1G", want: 954},
		{in: "500M", want: 477},
		{in: "128e6", want: 123},
		{in: "1E", err: "memory too large"},
		{in: "+64Mi", want: 64},
		{in: "1k", want: 1},
		{in: "", err: "empty quantity"},
		{in: "Mi", err: "is not a quantity"},
		{in: "1..2Mi", err: "is not a quantity"},
		{in: "1.2.3", err: "is not a quantity"},
		{in: "12 Mi", err: `unknown suffix " Mi"`},
		{in: "1mi", err: `unknown suffix "mi"`},
		{in: "1e", err: "bad exponent"},
		{in: "1e99", err: "exponent 99 out of range"},
		{in: "0", err: "must be more than 0"},
		{in: "-1Gi", err: "must be more than 0"},
		{in: "1Pi", want: 1 << 30},
		{in: "9999999999Ei", err: "memory too large"},
		{in: strings.Repeat("9", 70), err: "more than 64"},
	} {
		got, err := parseMemory(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseMemory(%q) = %d, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseMemory(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		err  string
	}{
		{in: "1", want: 1},
		{in: "500m", want: 0.5},
		{in: "0.5", want: 0.5},
		{in: ".25", want: 0.25},
		{in: "2.", want: 2},
		{in: "100m", want: 0.1},
		{in: "1500m", want: 1.5},
		{in: "250000u", want: 0.25},
		{in: "5e-1", want: 0.5},
		{in: "2E0", want: 2},
		{in: "1k", want: 1000},
		{in: "x", err: "is not a quantity"},
		{in: "0m", err: "must be more than 0"},
		{in: "1Q", err: "unknown suffix"},
	} {
		got, err := parseCPU(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseCPU(%q) = %g, %v; want error %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("parseCPU(%q) = %g, %v; want %g", tt.in, got, err, tt.want)
		}
	}
}

func TestFormatQuantities(t *testing.T) {
	for mib, want := range map[int]string{64: "64Mi", 1024: "1Gi", 1536: "1536Mi", 32768: "32Gi"} {
		if got := formatMemory(mib); got != want {
			t.Errorf("formatMemory(%d) = %q, want %q", mib, got, want)
		}
	}
	for c, want := range map[float64]string{1: "1", 0.5: "500m", 0.1: "100m", 2.25: "2250m", 64: "64", 0.0125: "0.0125", 1.0 / 3: "0.3333333333333333"} {
		got := formatCPU(c)
		if got != want {
			t.Errorf("formatCPU(%g) = %q, want %q", c, got, want)
		}
		if back, err := parseCPU(got); err != nil || back != c {
			t.Errorf("parseCPU(formatCPU(%g)) = %g, %v", c, back, err)
		}
	}
}
