package v1

import (
	"time"

	"github.com/stratus-run/stratus"
)

// InvocationRecord is one invocation's record with its usage: GB-s, CPU-s,
// cost, energy and carbon, as the server's meter computes them.
type InvocationRecord struct {
	stratus.Invocation
	Usage stratus.Usage `json:"usage"`
}

// Groupings of GET /v1/usage (?by=).
const (
	ByFunction = "function"
	ByService  = "service"
	ByReplica  = "replica" // one row per life of a service's replica
	ByDay      = "day"
)

// UsageRow is the usage of one workload (by function or service), of one
// life of a service's replica (by replica: Key is the replica's id) or of
// one day (by day: Key is YYYY-MM-DD in UTC).
type UsageRow struct {
	Key  string `json:"key"`
	Kind string `json:"kind,omitempty"` // "function" or "service", by workload or replica
	// Service, Revision, Start and End are set by replica: the replica's
	// service and revision, and when its life began and ended (or was
	// last reported, while it runs). A life's figures are whole: those of
	// a life that began before the window or ends after it are not cut
	// at the window's edges.
	Service  string    `json:"service,omitempty"`
	Revision int       `json:"revision,omitempty"`
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	stratus.Usage
}

// UsageReport answers GET /v1/usage?since=D&by=function|service|replica|day.
type UsageReport struct {
	Since time.Time     `json:"since"`
	Until time.Time     `json:"until"`
	By    string        `json:"by"`
	Rows  []UsageRow    `json:"rows"`
	Total stratus.Usage `json:"total"`
	// Region, grid intensity (gCO2e/kWh) and the price table's date
	// the figures were computed with.
	Region        string  `json:"region"`
	GridIntensity float64 `json:"gridIntensity"`
	PricesAsOf    string  `json:"pricesAsOf"`
}

// Traffic is what advice reads of a workload's window.
type Traffic struct {
	Requests        int64   `json:"requests"`
	MeanRPS         float64 `json:"meanRps"`
	PeakRPS         float64 `json:"peakRps"`     // busiest minute
	ActiveShare     float64 `json:"activeShare"` // share of minutes with any request
	MeanDurationMs  float64 `json:"meanDurationMs"`
	P99DurationMs   float64 `json:"p99DurationMs"`
	MeanConcurrency float64 `json:"meanConcurrency"`
	PeakConcurrency float64 `json:"peakConcurrency"`
	ColdStartRate   float64 `json:"coldStartRate"`  // cold starts per request
	InitMs          float64 `json:"initMs"`         // mean init duration of a cold start
	CPUUtilisation  float64 `json:"cpuUtilisation"` // CPU used / allocated while running
	MemoryMB        int     `json:"memorySizeMB"`
	VCPU            float64 `json:"vcpu"`
	// P99Sample is the number of records P99DurationMs was computed
	// from: the function's newest retained records that started in the
	// window, at most 10,000 of them. It is 0 when the p99 was estimated
	// from the usage minutes (the longest request they saw): for a
	// service, or a function without such records.
	P99Sample int `json:"p99Sample"`
}

// Deployment models compared by advice.
const (
	ModelFunction    = "function"               // scale to zero
	ModelFunctionMin = "function-min-instances" // N instances kept warm
	ModelService     = "service"                // min replicas, concurrency
	ModelLambda      = "aws-lambda"             // reference: a provider's function
	ModelCloudRun    = "cloud-run"              // reference: a provider's container
)

// AdviceOption is one way of running the workload, with its numbers over
// a month at the window's traffic.
type AdviceOption struct {
	Model         string  `json:"model"`
	MinInstances  int     `json:"minInstances,omitempty"`
	Replicas      int     `json:"replicas,omitempty"`
	Concurrency   int     `json:"concurrency,omitempty"`
	CostUSD       float64 `json:"monthlyCostUSD"`
	EnergyWh      float64 `json:"monthlyEnergyWh"`
	CarbonG       float64 `json:"monthlyCarbonG"`
	Utilisation   float64 `json:"utilisation"`   // of what it holds
	ColdStartRate float64 `json:"coldStartRate"` // cold starts per request
	P99Ms         float64 `json:"p99Ms"`         // expected, with cold starts
	Reference     bool    `json:"reference,omitempty"`
	Note          string  `json:"note,omitempty"`
}

// Advice answers GET /v1/advice/NAME.
type Advice struct {
	Name        string         `json:"name"`
	Kind        string         `json:"kind"` // "function" or "service"
	Window      string         `json:"window"`
	Traffic     Traffic        `json:"traffic"`
	Options     []AdviceOption `json:"options"`
	Recommended string         `json:"recommended"` // an option's Model
	Reason      string         `json:"reason"`
	// BreakEvenRPS is the mean request rate at which the recommendation
	// flips between a function and a service; SavingUSD what the
	// recommendation saves a month against the current model.
	BreakEvenRPS float64 `json:"breakEvenRps"`
	SavingUSD    float64 `json:"monthlySavingUSD"`
}

// AdviceList answers GET /v1/advice (every workload, by saving).
type AdviceList struct {
	Advice []Advice `json:"advice"`
}
