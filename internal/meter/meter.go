// Package meter turns what Stratus measured (invocation records, replica
// lifetimes) into usage, cost, energy and carbon. It is pure: the price
// table and the energy model are data, loaded once; nothing here reads
// the clock or the store. The one exception is Power (rapl.go), which
// reads the host's energy counters and CPU time when its owner samples
// it. docs/metering.md gives the formulas and the defaults' sources.
package meter

import (
	"sync/atomic"

	"github.com/stratus-run/stratus"
)

// Table is the price table and the energy model, as the server's
// --meter-file gives them over the defaults.
type Table struct {
	Prices Prices `json:"prices"`
	Energy Model  `json:"energy"`
}

// Prices are public list prices in USD, dated.
type Prices struct {
	// AsOf is the date the prices were read (YYYY-MM-DD); Source where.
	AsOf   string `json:"asOf"`
	Source string `json:"source"`
	// Lambda: per GB-second by architecture, per million requests.
	LambdaGBSecondX86    float64 `json:"lambdaGBSecondX86"`
	LambdaGBSecondArm    float64 `json:"lambdaGBSecondArm"`
	LambdaPerMillionReqs float64 `json:"lambdaPerMillionRequests"`
	// Cloud Run, request-based billing (CPU allocated while serving).
	RunRequestVCPUSecond float64 `json:"cloudRunRequestVCPUSecond"`
	RunRequestGiBSecond  float64 `json:"cloudRunRequestGiBSecond"`
	RunPerMillionReqs    float64 `json:"cloudRunPerMillionRequests"`
	// Cloud Run, instance-based billing (CPU always allocated).
	RunInstanceVCPUSecond float64 `json:"cloudRunInstanceVCPUSecond"`
	RunInstanceGiBSecond  float64 `json:"cloudRunInstanceGiBSecond"`
}

// Model is the energy and carbon model.
type Model struct {
	// CPU watts per vCPU at idle and at full use; a vCPU's power is
	// interpolated between them by its measured utilisation.
	MinWattsPerVCPU float64 `json:"minWattsPerVCPU"`
	MaxWattsPerVCPU float64 `json:"maxWattsPerVCPU"`
	// MemoryWattsPerGB is memory's power per GB allocated.
	MemoryWattsPerGB float64 `json:"memoryWattsPerGB"`
	// PUE is the data centre's power usage effectiveness (≥ 1).
	PUE float64 `json:"pue"`
	// GridIntensity is gCO2e per kWh by region; DefaultIntensity serves a
	// region not in it.
	GridIntensity    map[string]float64 `json:"gridIntensity"`
	DefaultIntensity float64            `json:"defaultIntensity"`
	// EmbodiedGPerVCPUHour is the server's embodied emissions (SCI's M)
	// per vCPU-hour allocated.
	EmbodiedGPerVCPUHour float64 `json:"embodiedGPerVCPUHour"`
}

// Meter computes usage, cost, energy and carbon with one table for one
// region. It is safe for concurrent use.
type Meter struct {
	t      Table
	region string
	power  atomic.Pointer[Power]
}

// New returns a meter for work done in region. It keeps its own copy of
// t's map.
func New(t Table, region string) *Meter {
	if t.Energy.GridIntensity != nil {
		g := make(map[string]float64, len(t.Energy.GridIntensity))
		for k, v := range t.Energy.GridIntensity {
			g[k] = v
		}
		t.Energy.GridIntensity = g
	}
	return &Meter{t: t, region: region}
}

// SetPower makes the meter take the CPU part of energy from p's measured
// joules per CPU-second once p has one (EnergySource "rapl"); nil goes
// back to the model.
func (m *Meter) SetPower(p *Power) { m.power.Store(p) }

// Intensity is the grid intensity (gCO2e/kWh) of the meter's region:
// the table's entry for it, else the table's DefaultIntensity.
func (m *Meter) Intensity() float64 {
	if v, ok := m.t.Energy.GridIntensity[m.region]; ok {
		return v
	}
	return m.t.Energy.DefaultIntensity
}

// Table is the meter's table. Its map is the meter's: do not change it.
func (m *Meter) Table() Table { return m.t }

// Invocation returns the usage of one invocation record, priced as a
// Lambda function of its architecture.
func (m *Meter) Invocation(r stratus.Invocation) stratus.Usage {
	return m.Minute(stratus.MinuteOf(r))
}

// Minute returns the usage of one workload-minute: a function's priced as
// Lambda, a service's as Cloud Run (instance-based).
func (m *Meter) Minute(u stratus.UsageMinute) stratus.Usage {
	mem := float64(u.MemoryMB)
	out := stratus.Usage{
		Requests:    u.Requests,
		DurationMs:  u.DurationMs,
		BilledMs:    u.BilledMs,
		GBSeconds:   u.GBSeconds,
		VCPUSeconds: u.VCPUSeconds,
		CPUSeconds:  u.CPUMs / 1000,
	}
	if u.Kind == stratus.KindService {
		if out.GBSeconds == 0 {
			out.GBSeconds = mem / 1024 * u.Replicas * 60
		}
		if out.VCPUSeconds == 0 {
			out.VCPUSeconds = u.VCPU * u.Replicas * 60
		}
		out.CostUSD = m.runInstance(out.VCPUSeconds, out.GBSeconds)
	} else {
		if out.GBSeconds == 0 {
			out.GBSeconds = mem / 1024 * u.BilledMs / 1000
		}
		if out.VCPUSeconds == 0 {
			out.VCPUSeconds = mem / LambdaMBPerVCPU * (u.DurationMs + u.InitMs) / 1000
		}
		out.CostUSD = out.GBSeconds*m.lambdaGBSecond(u.Arch) + float64(u.Requests)*m.t.Prices.LambdaPerMillionReqs/1e6
	}
	m.energy(&out)
	return out
}

// Replica returns the usage of one replica's life, priced as Cloud Run
// (instance-based): its allocation for its whole life, its CPU time
// used. BilledMs is the life; DurationMs (the requests' time) is not
// known here and is left 0.
func (m *Meter) Replica(u stratus.ReplicaUsage) stratus.Usage {
	life := max(0, u.End.Sub(u.Start).Seconds())
	out := stratus.Usage{
		Requests:    u.Requests,
		BilledMs:    life * 1000,
		GBSeconds:   float64(u.MemoryMB) / 1024 * life,
		VCPUSeconds: u.CPU * life,
		CPUSeconds:  u.CPUMs / 1000,
	}
	out.CostUSD = m.runInstance(out.VCPUSeconds, out.GBSeconds)
	m.energy(&out)
	return out
}

func (m *Meter) lambdaGBSecond(arch string) float64 {
	if arch == stratus.ArchArm {
		return m.t.Prices.LambdaGBSecondArm
	}
	return m.t.Prices.LambdaGBSecondX86
}

// runInstance is Cloud Run's instance-based price of vcpuS vCPU-seconds
// and gibS GiB-seconds. Instance-based billing has no request fee.
func (m *Meter) runInstance(vcpuS, gibS float64) float64 {
	return vcpuS*m.t.Prices.RunInstanceVCPUSecond + gibS*m.t.Prices.RunInstanceGiBSecond
}

// energy sets u's EnergyWh, CarbonG and EnergySource from its
// VCPUSeconds, CPUSeconds and GBSeconds:
//
//	E (Wh) = PUE × [cpu + MemoryW/GB × GB-s] / 3600
//	cpu (J) = MinW × vCPU-s + (MaxW − MinW) × CPU-s    (model)
//	        = CPU-s × measured J per CPU-second         (rapl)
//	C (g)  = E/1000 × intensity + M per vCPU-hour × vCPU-s / 3600
func (m *Meter) energy(u *stratus.Usage) {
	e := m.t.Energy
	cpuJ := e.MinWattsPerVCPU*u.VCPUSeconds + (e.MaxWattsPerVCPU-e.MinWattsPerVCPU)*u.CPUSeconds
	u.EnergySource = "model"
	if p := m.power.Load(); p != nil {
		if rate, ok := p.Rate(); ok {
			cpuJ = u.CPUSeconds * rate
			u.EnergySource = "rapl"
		}
	}
	u.EnergyWh = e.PUE * (cpuJ + e.MemoryWattsPerGB*u.GBSeconds) / 3600
	u.CarbonG = u.EnergyWh/1000*m.Intensity() + e.EmbodiedGPerVCPUHour*u.VCPUSeconds/3600
}
