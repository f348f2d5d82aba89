package stratus

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
