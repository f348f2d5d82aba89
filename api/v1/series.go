package v1

// Ranges of the series endpoints (?range=); RangeDefault when absent.
const (
	Range15m     = "15m"
	Range1h      = "1h"
	Range24h     = "24h"
	Range7d      = "7d"
	RangeDefault = Range1h
)

// SeriesWindow is the time axis of a series answer: the range asked for,
// its step, and one bucket start per step (unix seconds, oldest first):
// every array of the answer is aligned with T. Start is T's first bucket
// start; End is the time of the answer (unix seconds), inside the last
// bucket, which holds what happened up to then.
type SeriesWindow struct {
	Range   string  `json:"range"`
	StepSec int64   `json:"stepSec"`
	Start   int64   `json:"start"`
	End     int64   `json:"end"`
	T       []int64 `json:"t"`
}

// Series kinds (the Kind of FunctionSeries and ServiceSeries).
const (
	SeriesFunction = "function"
	SeriesService  = "service"
)

// FunctionSeries answers GET /v1/functions/NAME/series?range=R.
type FunctionSeries struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // SeriesFunction
	SeriesWindow
	Series FunctionPoints `json:"series"`
}

// FunctionPoints are a function's series, aligned with SeriesWindow.T.
// Counts are those of the bucket (0 when nothing happened); a quantile is
// of the durations of the bucket's invocations (null without any); a
// gauge is the largest value sampled in the bucket (null when none was).
type FunctionPoints struct {
	Invocations   []int64    `json:"invocations"`
	Errors        []int64    `json:"errors"` // invocations whose outcome is not success
	Throttles     []int64    `json:"throttles"`
	ColdStarts    []int64    `json:"coldStarts"`
	DurationP50Ms []*float64 `json:"durationP50Ms"`
	DurationP99Ms []*float64 `json:"durationP99Ms"`
	Instances     []*float64 `json:"instances"`   // live instances: busy, idle or starting
	Concurrency   []*float64 `json:"concurrency"` // instances in use: busy or starting
}

// ServiceSeries answers GET /v1/services/NAME/series?range=R.
type ServiceSeries struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // SeriesService
	SeriesWindow
	Series ServicePoints `json:"series"`
}

// ServicePoints are a service's series, aligned with SeriesWindow.T, read
// as FunctionPoints are.
type ServicePoints struct {
	Requests     []int64    `json:"requests"`
	Errors       []int64    `json:"errors"` // 5xx answers
	LatencyP50Ms []*float64 `json:"latencyP50Ms"`
	LatencyP99Ms []*float64 `json:"latencyP99Ms"`
	Replicas     []*float64 `json:"replicas"` // ready replicas
	// Desired is the replicas the service should have: the autoscaler's
	// decision within its min and max and the server's cap;
	// AutoscalerDesired is the decision before those bounds.
	Desired           []*float64 `json:"desired"`
	AutoscalerDesired []*float64 `json:"autoscalerDesired"`
	Panic             []int64    `json:"panic"` // 1 if the autoscaler panicked in the bucket
	InFlight          []*float64 `json:"inflight"`
	Restarts          []int64    `json:"restarts"`
	OOMKills          []int64    `json:"oomKills"`
}

// SeriesOverview answers GET /v1/series?range=R: every deployed function
// and service, by name, with its calls and errors per bucket and the
// window's summary.
type SeriesOverview struct {
	SeriesWindow
	Functions map[string]FunctionOverview `json:"functions"`
	Services  map[string]ServiceOverview  `json:"services"`
}

// FunctionOverview is a function's part of SeriesOverview.
type FunctionOverview struct {
	Invocations []int64         `json:"invocations"`
	Errors      []int64         `json:"errors"`
	Summary     FunctionSummary `json:"summary"`
}

// FunctionSummary sums a function's window; the quantiles are of every
// invocation in it (null without any).
type FunctionSummary struct {
	Invocations int64    `json:"invocations"`
	Errors      int64    `json:"errors"`
	Throttles   int64    `json:"throttles"`
	P50Ms       *float64 `json:"p50Ms"`
	P99Ms       *float64 `json:"p99Ms"`
}

// ServiceOverview is a service's part of SeriesOverview.
type ServiceOverview struct {
	Requests []int64        `json:"requests"`
	Errors   []int64        `json:"errors"`
	Summary  ServiceSummary `json:"summary"`
}

// ServiceSummary sums a service's window, as FunctionSummary does.
type ServiceSummary struct {
	Requests int64    `json:"requests"`
	Errors   int64    `json:"errors"`
	P50Ms    *float64 `json:"p50Ms"`
	P99Ms    *float64 `json:"p99Ms"`
}
