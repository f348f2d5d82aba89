package stratus

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Usage is what some work (one invocation, a replica's life, a workload
// over a window) used and what it cost: in requests, time, resources,
// money at list prices, energy and carbon.
type Usage struct {
	Requests    int64   `json:"requests"`
	DurationMs  float64 `json:"durationMs"`
	BilledMs    float64 `json:"billedDurationMs"`
	GBSeconds   float64 `json:"gbSeconds"`   // memory allocated × billed time
	VCPUSeconds float64 `json:"vcpuSeconds"` // CPU allocated × time
	CPUSeconds  float64 `json:"cpuSeconds"`  // CPU time used
	CostUSD     float64 `json:"costUSD"`
	EnergyWh    float64 `json:"energyWh"`
	// CarbonG is grams CO2e: operational (energy × grid intensity) plus
	// embodied (the hardware's share), as the Green Software
	// Foundation's SCI adds them.
	CarbonG float64 `json:"carbonG"`
	// EnergySource says where the CPU energy came from: "model" (the
	// configured coefficients) or "rapl" (measured by the host).
	EnergySource string `json:"energySource,omitempty"`
}

// Add adds o to u.
func (u *Usage) Add(o Usage) {
	u.Requests += o.Requests
	u.DurationMs += o.DurationMs
	u.BilledMs += o.BilledMs
	u.GBSeconds += o.GBSeconds
	u.VCPUSeconds += o.VCPUSeconds
	u.CPUSeconds += o.CPUSeconds
	u.CostUSD += o.CostUSD
	u.EnergyWh += o.EnergyWh
	u.CarbonG += o.CarbonG
	if u.EnergySource == "" {
		u.EnergySource = o.EnergySource
	}
}

// MaxWindow is the longest window usage and advice read: the usage
// history kept (35 days by default) fits in it.
const MaxWindow = 400 * 24 * time.Hour

// ParseWindow parses a window of time back from now: a Go duration
// ("90m", "36h") or a whole number of days ("7d"). It must be at least a
// minute and at most MaxWindow; anything else is ErrInvalid with what was
// wrong.
func ParseWindow(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, fmt.Errorf("window %q: want a duration such as 90m, 36h or 7d: %w", s, ErrInvalid)
		}
		if days < 0 || days > int(MaxWindow/(24*time.Hour)) {
			return 0, fmt.Errorf("window %q: must be between 1m and %dd: %w", s, MaxWindow/(24*time.Hour), ErrInvalid)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("window %q: want a duration such as 90m, 36h or 7d: %w", s, ErrInvalid)
		}
		d = v
	}
	if d < time.Minute || d > MaxWindow {
		return 0, fmt.Errorf("window %q: must be between 1m and %dd: %w", s, MaxWindow/(24*time.Hour), ErrInvalid)
	}
	return d, nil
}
