// Package autoscaler decides how many replicas a service revision should
// run, the way Knative's pod autoscaler (KPA) does it for concurrency.
//
// # Algorithm
//
// The caller samples the revision's in-flight request count often (every
// 100ms to 1s) and hands each sample to Scaler.Record. Samples land in
// one-second buckets, each holding the average of its samples. Decide,
// called every second or two, averages the buckets over two windows that
// end now: the stable window (60s by default) and the much shorter panic
// window (6s). A second without a sample counts as zero in-flight requests,
// except the current second, which counts only once it holds a sample.
// The seconds before the current run of traffic are left out: a run starts
// with the first sample above zero after a whole stable window without
// one, so a burst after an idle spell is averaged over the seconds it has
// lasted, not diluted by the idle ones before it.
//
// Each average divided by the per-replica target and rounded up is a
// replica count; any traffic at all in a window means at least one. Both
// counts are clamped by the rate limits, relative to the ready replicas
// (at least 1): no more than ceil(MaxScaleUpRate × ready), no fewer than
// floor(ready / MaxScaleDownRate).
//
// The stable count is the answer unless the scaler panics. It enters
// panic mode when the unclamped panic-window count reaches PanicThreshold ×
// ready, and every decision still over the threshold extends it; it leaves
// once a whole stable window has passed since the last such decision, by
// which time the burst is part of the stable average. In panic mode the
// answer is the larger of the two counts and never goes down: it is the
// highest answer since panicking began.
//
// The answer is then bounded by Min and Max. Decide returns 0 only with
// Min 0 and no traffic in the stable window, and then only once no
// traffic has been seen for StableWindow + ScaleToZeroGrace (counted from
// the first Record or Decide if there never was any) or when nothing is
// running anyway (ready 0); until then it keeps one replica.
//
// # Scale from zero
//
// A request that arrives while no replica runs is the caller's to handle:
// it starts one at once, without asking Decide, and keeps at least one
// while requests are in flight. The next sample of a Tracker then holds
// the request, even one that has already ended, so Decide asks for at
// least one replica until the traffic has been gone for StableWindow +
// ScaleToZeroGrace.
//
// # Goroutines
//
// The package starts no goroutines. A Scaler belongs to one goroutine,
// typically the revision's scaling loop, which samples a Tracker, calls
// Record and Decide, and applies the answer. A Tracker is safe for
// concurrent use by request goroutines and that loop.
package autoscaler

import (
	"math"
	"time"
)

// Defaults for the zero fields of a Spec, Knative's.
const (
	defaultTarget           = 100
	defaultStableWindow     = 60 * time.Second
	defaultPanicThreshold   = 2.0
	defaultMaxScaleUpRate   = 1000.0
	defaultMaxScaleDownRate = 2.0
	defaultScaleToZeroGrace = 30 * time.Second

	// targetUtilization is the share of a replica's concurrency limit the
	// scaler aims for, leaving room for bursts while replicas start.
	targetUtilization = 0.7

	// maxStableWindow bounds the buckets a Scaler keeps.
	maxStableWindow = time.Hour

	// maxReplicas is the largest count Decide returns.
	maxReplicas = math.MaxInt32

	// maxInflight bounds a sample, keeping every sum finite.
	maxInflight = 1e12

	// slack absorbs floating-point error before rounding a replica count
	// up, so that 2.0000000001 replicas' worth of load asks for 2.
	slack = 1e-9
)

// Spec is a revision's scaling settings. New fills its zero fields with
// defaults and replaces values it cannot use: a negative Min or Max with
// 0, a Max below Min with Min, a Target that is not a positive finite
// number with the default, and a rate or threshold not above 1 with the
// default.
type Spec struct {
	// Min and Max bound the replica count; Max 0 means no upper bound.
	Min, Max int
	// Target is the in-flight requests wanted per replica; default
	// TargetFor(0), 100.
	Target float64
	// StableWindow is the averaging window for normal operation; default
	// 60s, between 1s and 1h, rounded down to whole seconds.
	StableWindow time.Duration
	// PanicWindow is the averaging window that detects bursts; default a
	// tenth of StableWindow, between 1s and StableWindow, rounded down to
	// whole seconds.
	PanicWindow time.Duration
	// PanicThreshold is how many times the ready replicas the panic
	// window must ask for to start panicking; default 2; +Inf never
	// panics.
	PanicThreshold float64
	// MaxScaleUpRate caps one decision at this many times the ready
	// replicas, rounded up; default 1000.
	MaxScaleUpRate float64
	// MaxScaleDownRate caps one decision at the ready replicas divided by
	// this, rounded down; default 2.
	MaxScaleDownRate float64
	// ScaleToZeroGrace is how long past the stable window a revision
	// without traffic keeps a replica before going to zero; default 30s.
	// It does not apply with Min above 0.
	ScaleToZeroGrace time.Duration
}

// TargetFor returns the in-flight requests to aim for per replica when
// each takes at most concurrency requests at once: 70% of the limit, or
// 100 when concurrency is 0 (no limit).
func TargetFor(concurrency int) float64 {
	if concurrency > 0 {
		return targetUtilization * float64(concurrency)
	}
	return defaultTarget
}

// withDefaults returns sp with its zero fields filled and the values it
// cannot work with replaced, as the Spec field docs describe.
func (sp Spec) withDefaults() Spec {
	sp.Min = min(max(sp.Min, 0), maxReplicas)
	sp.Max = min(max(sp.Max, 0), maxReplicas)
	if sp.Max != 0 && sp.Max < sp.Min {
		sp.Max = sp.Min
	}
	if !(sp.Target > 0) || math.IsInf(sp.Target, 0) {
		sp.Target = TargetFor(0)
	}
	if sp.StableWindow <= 0 {
		sp.StableWindow = defaultStableWindow
	}
	sp.StableWindow = min(max(sp.StableWindow, time.Second), maxStableWindow)
	sp.StableWindow = sp.StableWindow.Truncate(time.Second)
	if sp.PanicWindow <= 0 {
		sp.PanicWindow = sp.StableWindow / 10
	}
	sp.PanicWindow = min(max(sp.PanicWindow, time.Second), sp.StableWindow)
	sp.PanicWindow = sp.PanicWindow.Truncate(time.Second)
	if !(sp.PanicThreshold > 1) {
		sp.PanicThreshold = defaultPanicThreshold
	}
	if !(sp.MaxScaleUpRate > 1) {
		sp.MaxScaleUpRate = defaultMaxScaleUpRate
	}
	if !(sp.MaxScaleDownRate > 1) {
		sp.MaxScaleDownRate = defaultMaxScaleDownRate
	}
	if sp.ScaleToZeroGrace <= 0 {
		sp.ScaleToZeroGrace = defaultScaleToZeroGrace
	}
	return sp
}

// Decision is the outcome of Scaler.Decide.
type Decision struct {
	// Desired is the replica count to run.
	Desired int
	// Panic reports whether the scaler is in panic mode.
	Panic bool
	// StableConcurrency and PanicConcurrency are the average in-flight
	// requests over the stable and panic windows.
	StableConcurrency, PanicConcurrency float64
}

// Scaler decides a revision's replica count from samples of its in-flight
// requests. It is not safe for concurrent use: one goroutine owns it.
type Scaler struct {
	spec   Spec
	window *window
	stable int // stable window in seconds
	panic  int // panic window in seconds

	begun    bool      // whether Record or Decide was called
	lastBusy time.Time // latest sample above zero, or the first call

	panicAt  time.Time // last decision over the panic threshold; zero when calm
	maxPanic float64   // highest count decided while panicking
}

// New returns a Scaler for spec, its zero fields filled with defaults.
func New(spec Spec) *Scaler {
	spec = spec.withDefaults()
	stable := int(spec.StableWindow / time.Second)
	return &Scaler{
		spec:   spec,
		window: newWindow(stable),
		stable: stable,
		panic:  int(spec.PanicWindow / time.Second),
	}
}

// Spec returns the settings s uses: its Spec with the defaults filled in.
func (s *Scaler) Spec() Spec { return s.spec }

func (s *Scaler) begin(now time.Time) {
	if !s.begun {
		s.begun = true
		s.lastBusy = now
	}
}

// Record adds a sample of the in-flight request count at now to the
// bucket of now's second. Counts are clamped to [0, 1e12]; NaN and
// infinities are dropped, as are samples older than the stable window.
func (s *Scaler) Record(now time.Time, inflight float64) {
	s.begin(now)
	if math.IsNaN(inflight) || math.IsInf(inflight, 0) {
		return
	}
	inflight = clamp(inflight, 0, maxInflight)
	s.window.record(now.Unix(), inflight)
	if inflight > 0 && now.After(s.lastBusy) {
		s.lastBusy = now
	}
}

// Decide returns the replica count the revision should run at now, given
// the ready replicas it runs, as the package documentation describes. It
// returns 0 only when Min is 0 and the stable window holds no traffic,
// and then only if ready is 0 or no traffic has been recorded for
// StableWindow + ScaleToZeroGrace. A caller that starts a replica for a
// request arriving at zero keeps it at least while the request is in
// flight, whatever Decide says before the next sample.
func (s *Scaler) Decide(now time.Time, ready int) Decision {
	s.begin(now)
	sec := now.Unix()
	end := sec
	if !s.window.has(sec) {
		end-- // the current second counts once it has a sample
	}
	stableAvg, stableBusy := s.window.average(end, s.stable)
	panicAvg, panicBusy := s.window.average(end, s.panic)

	readyF := max(1, float64(ready))
	up := math.Ceil(s.spec.MaxScaleUpRate * readyF)
	down := math.Floor(readyF / s.spec.MaxScaleDownRate)
	stableWant := s.replicas(stableAvg, stableBusy)
	panicWant := s.replicas(panicAvg, panicBusy)

	switch {
	case panicWant/readyF >= s.spec.PanicThreshold:
		s.panicAt = now
	case !s.panicAt.IsZero() && now.Sub(s.panicAt) > s.spec.StableWindow:
		s.panicAt = time.Time{}
		s.maxPanic = 0
	}

	want := clamp(stableWant, down, up)
	if !s.panicAt.IsZero() {
		want = max(want, clamp(panicWant, down, up), s.maxPanic)
		s.maxPanic = want
	}

	want = max(want, float64(s.spec.Min))
	if s.spec.Max > 0 {
		want = min(want, float64(s.spec.Max))
	}
	want = min(want, maxReplicas)
	if want == 0 && ready > 0 && now.Sub(s.lastBusy) < s.spec.StableWindow+s.spec.ScaleToZeroGrace {
		want = 1
	}
	return Decision{
		Desired:           int(want),
		Panic:             !s.panicAt.IsZero(),
		StableConcurrency: stableAvg,
		PanicConcurrency:  panicAvg,
	}
}

// replicas returns how many replicas serve avg in-flight requests at the
// target, at least one if the window saw any traffic.
func (s *Scaler) replicas(avg float64, busy bool) float64 {
	n := math.Ceil(avg/s.spec.Target - slack)
	if busy {
		n = max(n, 1)
	}
	return max(n, 0)
}

func clamp(x, lo, hi float64) float64 { return min(max(x, lo), hi) }
