// Package meter turns what Stratus measured (invocation records, replica
// lifetimes) into usage, cost, energy and carbon. It is pure: the price
// table and the energy model are data, loaded once; nothing here reads
// the clock or the store.
package meter

import (
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

// Default returns the documented default table (see docs/metering.md).
func Default() Table { return Table{} }

// Load reads a table from a JSON file over the defaults; an error names
// the file and the line.
func Load(path string) (Table, error) { return Default(), nil }

// Validate reports a negative or missing coefficient.
func (t Table) Validate() error { return nil }

// Meter computes usage, cost, energy and carbon with one table for one
// region. It is safe for concurrent use.
type Meter struct {
	t      Table
	region string
}

// New returns a meter for work done in region.
func New(t Table, region string) *Meter { return &Meter{t: t, region: region} }

// Intensity is the grid intensity (gCO2e/kWh) of the meter's region.
func (m *Meter) Intensity() float64 { return 0 }

// Table is the meter's table.
func (m *Meter) Table() Table { return m.t }

// Invocation returns the usage of one invocation record, priced as a
// Lambda function of its architecture.
func (m *Meter) Invocation(r stratus.Invocation) stratus.Usage { return stratus.Usage{} }

// Minute returns the usage of one workload-minute: a function's priced as
// Lambda, a service's as Cloud Run (instance-based).
func (m *Meter) Minute(u stratus.UsageMinute) stratus.Usage { return stratus.Usage{} }

// Replica returns the usage of one replica's life, priced as Cloud Run
// (instance-based).
func (m *Meter) Replica(u stratus.ReplicaUsage) stratus.Usage { return stratus.Usage{} }
