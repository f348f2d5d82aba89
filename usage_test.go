package stratus_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

func TestParseWindow(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"7d", 7 * 24 * time.Hour}, {"1d", 24 * time.Hour}, {"90m", 90 * time.Minute},
		{"36h", 36 * time.Hour}, {"1m", time.Minute}, {"400d", stratus.MaxWindow},
	} {
		got, err := stratus.ParseWindow(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "0", "0d", "-1d", "-5m", "30s", "401d", "d", "7dd", "1.5d", "abc", "7 d", "1h30d", "+7d", "-0d", "7d "} {
		if got, err := stratus.ParseWindow(in); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ParseWindow(%q) = %v, %v; want ErrInvalid", in, got, err)
		}
	}
}

func FuzzParseWindow(f *testing.F) {
	for _, s := range []string{"7d", "90m", "-1d", "1.5d", "400d", "99999999999999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := stratus.ParseWindow(s)
		if err == nil && (d < time.Minute || d > stratus.MaxWindow) {
			t.Fatalf("ParseWindow(%q) = %v out of bounds", s, d)
		}
	})
}

func TestUsageAdd(t *testing.T) {
	var u stratus.Usage
	u.Add(stratus.Usage{Requests: 1, GBSeconds: 0.5, CostUSD: 1, EnergyWh: 2, CarbonG: 3, EnergySource: "model"})
	u.Add(stratus.Usage{Requests: 2, GBSeconds: 0.25, CostUSD: 1, EnergyWh: 1, CarbonG: 1, EnergySource: "model"})
	if u.Requests != 3 || u.GBSeconds != 0.75 || u.CostUSD != 2 || u.EnergyWh != 3 || u.CarbonG != 4 || u.EnergySource != "model" {
		t.Errorf("sum = %+v", u)
	}
}

func TestArchOf(t *testing.T) {
	for goarch, want := range map[string]string{"amd64": stratus.ArchX86, "arm64": stratus.ArchArm, "riscv64": "riscv64"} {
		if got := stratus.ArchOf(goarch); got != want {
			t.Errorf("ArchOf(%q) = %q, want %q", goarch, got, want)
		}
	}
}
