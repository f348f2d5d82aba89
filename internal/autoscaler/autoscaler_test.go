package autoscaler

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// approx compares concurrencies up to floating-point error.
var approx = cmpopts.EquateApprox(0, 1e-9)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// sim drives a Scaler the way a scaling loop does: a sample every second,
// a decision every other second, and replicas that are ready at once.
type sim struct {
	t     *testing.T
	s     *Scaler
	now   time.Time
	ready int
	steps []step
}

// step is one decision of a sim.
type step struct {
	at    time.Duration // since t0
	ready int
	d     Decision
}

func newSim(t *testing.T, spec Spec) *sim {
	return &sim{t: t, s: New(spec), now: t0}
}

// run samples load every second for d, deciding every other second.
func (m *sim) run(d time.Duration, load float64) {
	for end := m.now.Add(d); m.now.Before(end); {
		m.now = m.now.Add(time.Second)
		m.s.Record(m.now, load)
		if m.now.Sub(t0)/time.Second%2 == 0 {
			m.decide()
		}
	}
}

// decide asks for a decision now and makes it the ready count.
func (m *sim) decide() Decision {
	d := m.s.Decide(m.now, m.ready)
	m.steps = append(m.steps, step{at: m.now.Sub(t0), ready: m.ready, d: d})
	m.ready = d.Desired
	return d
}

func (m *sim) last() step { return m.steps[len(m.steps)-1] }

// at returns the decision taken at offset since t0.
func (m *sim) at(offset time.Duration) step {
	m.t.Helper()
	for _, st := range m.steps {
		if st.at == offset {
			return st
		}
	}
	m.t.Fatalf("no decision at %v", offset)
	return step{}
}

// checkPanic checks the panic rules on every decision of m: panic mode
// lasts from a decision whose panic-window count reaches the threshold
// until a whole stable window after the last such decision, and the count
// never goes down in it.
func (m *sim) checkPanic() {
	m.t.Helper()
	sp := m.s.Spec()
	var lastOver time.Duration = -1
	for i, st := range m.steps {
		want := math.Ceil(st.d.PanicConcurrency/sp.Target - slack)
		if st.d.PanicConcurrency > 0 {
			want = max(want, 1)
		}
		if want/max(1, float64(st.ready)) >= sp.PanicThreshold {
			lastOver = st.at
		}
		inPanic := lastOver >= 0 && st.at-lastOver <= sp.StableWindow
		if st.d.Panic != inPanic {
			m.t.Errorf("at %v: Panic = %v, want %v (last over the threshold at %v)", st.at, st.d.Panic, inPanic, lastOver)
		}
		if i > 0 && st.d.Panic && m.steps[i-1].d.Panic && st.d.Desired < m.steps[i-1].d.Desired {
			m.t.Errorf("at %v: scaled down from %d to %d in panic mode", st.at, m.steps[i-1].d.Desired, st.d.Desired)
		}
	}
}

func TestTargetFor(t *testing.T) {
	for _, tc := range []struct {
		concurrency int
		want        float64
	}{
		{0, 100},
		{-1, 100},
		{1, 0.7},
		{10, 7},
		{80, 56},
		{1000, 700},
	} {
		if got := TargetFor(tc.concurrency); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("TargetFor(%d) = %v, want %v", tc.concurrency, got, tc.want)
		}
	}
}

func TestSpecDefaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Spec
		want Spec
	}{{
		name: "zero",
		want: Spec{
			Target: 100, StableWindow: time.Minute, PanicWindow: 6 * time.Second,
			PanicThreshold: 2, MaxScaleUpRate: 1000, MaxScaleDownRate: 2, ScaleToZeroGrace: 30 * time.Second,
		},
	}, {
		name: "kept",
		in: Spec{
			Min: 1, Max: 8, Target: 7, StableWindow: 2 * time.Minute, PanicWindow: 10 * time.Second,
			PanicThreshold: 3, MaxScaleUpRate: 10, MaxScaleDownRate: 4, ScaleToZeroGrace: time.Minute,
		},
		want: Spec{
			Min: 1, Max: 8, Target: 7, StableWindow: 2 * time.Minute, PanicWindow: 10 * time.Second,
			PanicThreshold: 3, MaxScaleUpRate: 10, MaxScaleDownRate: 4, ScaleToZeroGrace: time.Minute,
		},
	}, {
		name: "repaired",
		in: Spec{
			Min: 5, Max: 2, Target: math.NaN(), StableWindow: 90*time.Minute + 500*time.Millisecond,
			PanicWindow: 2 * time.Hour, PanicThreshold: 1, MaxScaleUpRate: 0.5, MaxScaleDownRate: math.NaN(),
			ScaleToZeroGrace: -time.Second,
		},
		want: Spec{
			Min: 5, Max: 5, Target: 100, StableWindow: time.Hour, PanicWindow: time.Hour,
			PanicThreshold: 2, MaxScaleUpRate: 1000, MaxScaleDownRate: 2, ScaleToZeroGrace: 30 * time.Second,
		},
	}, {
		name: "tiny windows",
		in:   Spec{Min: -3, Max: -1, Target: math.Inf(1), StableWindow: 1500 * time.Millisecond, PanicThreshold: math.Inf(1)},
		want: Spec{
			Target: 100, StableWindow: time.Second, PanicWindow: time.Second,
			PanicThreshold: math.Inf(1), MaxScaleUpRate: 1000, MaxScaleDownRate: 2, ScaleToZeroGrace: 30 * time.Second,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, New(tc.in).Spec()); diff != "" {
				t.Errorf("Spec() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSteadyLoad holds a constant load for three minutes: the answer is
// the load over the target, rounded up, within the bounds.
func TestSteadyLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		load float64
		want Decision
	}{
		{"one", Spec{Target: 10}, 1, Decision{Desired: 1, StableConcurrency: 1, PanicConcurrency: 1}},
		{"fraction of one", Spec{Target: 10}, 0.3, Decision{Desired: 1, StableConcurrency: 0.3, PanicConcurrency: 0.3}},
		{"exact", Spec{Target: 10}, 50, Decision{Desired: 5, StableConcurrency: 50, PanicConcurrency: 50}},
		{"rounds up", Spec{Target: 10}, 55, Decision{Desired: 6, StableConcurrency: 55, PanicConcurrency: 55}},
		{"concurrency limit", Spec{Target: TargetFor(10)}, 70, Decision{Desired: 10, StableConcurrency: 70, PanicConcurrency: 70}},
		{"default target", Spec{}, 250, Decision{Desired: 3, StableConcurrency: 250, PanicConcurrency: 250}},
		{"min", Spec{Target: 10, Min: 4}, 10, Decision{Desired: 4, StableConcurrency: 10, PanicConcurrency: 10}},
		// Capped below what the load needs, the panic window stays over
		// the threshold, and so the scaler stays in panic mode.
		{"max", Spec{Target: 10, Max: 5}, 1000, Decision{Desired: 5, Panic: true, StableConcurrency: 1000, PanicConcurrency: 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newSim(t, tc.spec)
			m.run(3*time.Minute, tc.load)
			if diff := cmp.Diff(tc.want, m.last().d, approx); diff != "" {
				t.Errorf("after 3m (-want +got):\n%s", diff)
			}
			if tc.spec.Max > 0 {
				for _, st := range m.steps {
					if st.d.Desired > tc.spec.Max {
						t.Errorf("at %v: Desired = %d, above Max %d", st.at, st.d.Desired, tc.spec.Max)
					}
				}
			}
			m.checkPanic()
		})
	}
}

// TestBurst: a tenfold burst on a steady load panics, reaches the new
// count within the panic window, holds it after the burst while panicking,
// and returns to the steady count once panic mode ends.
func TestBurst(t *testing.T) {
	m := newSim(t, Spec{Target: 10})
	m.run(2*time.Minute, 10)
	if got := m.last().d; got.Desired != 1 || got.Panic {
		t.Fatalf("before the burst: %+v, want 1 replica, calm", got)
	}

	m.run(30*time.Second, 100) // 2m0s to 2m30s
	if got := m.at(2*time.Minute + 2*time.Second).d; !got.Panic || got.Desired < 2 {
		t.Errorf("2s into the burst: %+v, want panic and more than 1 replica", got)
	}
	if got := m.at(2*time.Minute + 6*time.Second).d; got.Desired != 10 {
		t.Errorf("a panic window into the burst: Desired = %d, want 10", got.Desired)
	}
	// The stable window alone would still ask for 2 replicas here.
	if got := m.at(2*time.Minute + 6*time.Second).d; math.Ceil(got.StableConcurrency/10) != 2 {
		t.Errorf("StableConcurrency = %v, want it to ask for 2 replicas", got.StableConcurrency)
	}

	m.run(2*time.Minute, 10) // 2m30s to 4m30s
	if got := m.at(2*time.Minute + 50*time.Second).d; !got.Panic || got.Desired != 10 {
		t.Errorf("20s after the burst: %+v, want panic holding 10 replicas", got)
	}
	exit := time.Duration(0)
	for _, st := range m.steps {
		if st.at > 2*time.Minute && !st.d.Panic {
			exit = st.at
			break
		}
	}
	// The last decision over the threshold came within the first seconds
	// of the burst; panic mode ends a stable window after it.
	if exit < 3*time.Minute || exit > 3*time.Minute+10*time.Second {
		t.Errorf("panic mode ended at %v, want a stable window after the burst began (about 3m)", exit)
	}
	if got := m.last().d; got.Desired != 1 || got.Panic {
		t.Errorf("two minutes after the burst: %+v, want 1 replica, calm", got)
	}
	m.checkPanic()
}

// TestPanicExtended: a load that keeps outgrowing the replicas keeps the
// scaler in panic mode past the first stable window.
func TestPanicExtended(t *testing.T) {
	m := newSim(t, Spec{Target: 1, MaxScaleUpRate: 1.5})
	m.run(time.Minute, 1)
	load := 1.0
	for range 45 { // 90s of load growing 20% every 2s
		load *= 1.2
		m.run(2*time.Second, load)
	}
	if got := m.last().d; !got.Panic {
		t.Errorf("after 90s of growth: %+v, want panic", got)
	}
	m.checkPanic()
	for i := 1; i < len(m.steps); i++ {
		prev, st := m.steps[i-1], m.steps[i]
		if limit := int(math.Ceil(1.5 * max(1, float64(st.ready)))); st.d.Desired > limit && st.d.Desired > prev.d.Desired {
			t.Errorf("at %v: Desired = %d from %d ready, above the scale-up limit %d", st.at, st.d.Desired, st.ready, limit)
		}
	}
}

// TestScaleDownRate: when the load stops and the ready replicas lag, each
// decision halves the count at most, down to the one kept through the
// grace period.
func TestScaleDownRate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  Spec
		ready []int // ready replicas at successive decisions
		want  []int
	}{
		{"default rate", Spec{Target: 10}, []int{10, 5, 2, 1}, []int{5, 2, 1, 1}},
		{"rate 4", Spec{Target: 10, MaxScaleDownRate: 4}, []int{10, 2, 1}, []int{2, 1, 1}},
		{"rate 10", Spec{Target: 10, MaxScaleDownRate: 10}, []int{10, 1}, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newSim(t, tc.spec)
			m.run(2*time.Minute, 100)
			if got := m.last().d.Desired; got != 10 {
				t.Fatalf("under load: Desired = %d, want 10", got)
			}
			now := m.now
			for range 61 { // the stable window drains with nobody deciding
				now = now.Add(time.Second)
				m.s.Record(now, 0)
			}
			var got []int
			for _, ready := range tc.ready {
				now = now.Add(time.Second)
				m.s.Record(now, 0)
				d := m.s.Decide(now, ready)
				if d.StableConcurrency != 0 || d.Panic {
					t.Fatalf("at ready %d: %+v, want no load, calm", ready, d)
				}
				got = append(got, d.Desired)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Desired at ready %v (-want +got):\n%s", tc.ready, diff)
			}
		})
	}
}

// TestGradualDecrease: with replicas that follow every decision, a load
// that drops fortyfold is followed down as the stable window drains, and
// then at most halving the count per decision.
func TestGradualDecrease(t *testing.T) {
	m := newSim(t, Spec{Target: 10, StableWindow: 10 * time.Second})
	m.run(time.Minute, 400)
	m.run(30*time.Second, 5)
	var got []int
	for _, st := range m.steps[30:37] { // 1m2s to 1m14s
		got = append(got, st.d.Desired)
	}
	// The stable window asks for 1 replica from 1m10s on.
	want := []int{33, 25, 17, 9, 4, 2, 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Desired after the drop (-want +got):\n%s", diff)
	}
	for _, st := range m.steps[1:] {
		if floor := st.ready / 2; st.d.Desired < floor {
			t.Errorf("at %v: Desired = %d from %d ready, below the scale-down limit %d", st.at, st.d.Desired, st.ready, floor)
		}
	}
	if got := m.last().d; got.Desired != 1 || got.Panic {
		t.Errorf("at the end: %+v, want 1 replica, calm", got)
	}
	m.checkPanic()
}

// TestScaleToZero: without traffic the count goes to zero a stable window
// plus the grace period after the last request, and to Min if that is set.
func TestScaleToZero(t *testing.T) {
	t.Run("min 0", func(t *testing.T) {
		m := newSim(t, Spec{Target: 10})
		m.run(time.Minute, 1) // the last request is sampled at 1m0s
		m.run(3*time.Minute, 0)
		lastBusy := time.Minute
		for _, st := range m.steps {
			if st.at <= lastBusy {
				continue
			}
			want := 1
			if st.at >= lastBusy+90*time.Second {
				want = 0
			}
			if st.d.Desired != want {
				t.Errorf("%v after the last request: Desired = %d, want %d", st.at-lastBusy, st.d.Desired, want)
			}
		}
	})
	t.Run("min 2", func(t *testing.T) {
		m := newSim(t, Spec{Target: 10, Min: 2})
		m.run(time.Minute, 1)
		m.run(10*time.Minute, 0)
		for _, st := range m.steps {
			if st.d.Desired != 2 {
				t.Errorf("at %v: Desired = %d, want 2", st.at, st.d.Desired)
			}
		}
	})
	t.Run("never busy", func(t *testing.T) {
		// A scaler that starts with a replica running and no traffic
		// keeps it for a stable window plus the grace period.
		s := New(Spec{Target: 10, StableWindow: 30 * time.Second, ScaleToZeroGrace: 10 * time.Second})
		for _, tc := range []struct {
			at    time.Duration
			ready int
			want  int
		}{{0, 1, 1}, {39 * time.Second, 1, 1}, {40 * time.Second, 1, 0}, {41 * time.Second, 0, 0}} {
			if got := s.Decide(t0.Add(tc.at), tc.ready).Desired; got != tc.want {
				t.Errorf("at %v with %d ready: Desired = %d, want %d", tc.at, tc.ready, got, tc.want)
			}
		}
	})
	t.Run("nothing running", func(t *testing.T) {
		// With no traffic and nothing running, there is nothing to keep.
		s := New(Spec{Target: 10})
		if got := s.Decide(t0, 0); got != (Decision{}) {
			t.Errorf("Decide = %+v, want zero", got)
		}
	})
}

// TestFromZero: after a long idle spell at zero replicas, the first
// sample with traffic asks for replicas at once, sized by that sample
// alone, not diluted by the idle seconds before it.
func TestFromZero(t *testing.T) {
	for _, tc := range []struct {
		name string
		load float64
		want Decision
	}{
		{"one request", 1, Decision{Desired: 1, StableConcurrency: 1, PanicConcurrency: 1}},
		{"burst", 35, Decision{Desired: 4, Panic: true, StableConcurrency: 35, PanicConcurrency: 35}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newSim(t, Spec{Target: 10})
			m.run(10*time.Minute, 0)
			for _, st := range m.steps {
				if st.d.Desired != 0 {
					t.Fatalf("idle at %v: Desired = %d, want 0", st.at, st.d.Desired)
				}
			}
			// The first sample with traffic comes in a new second; one
			// sharing its second with an idle sample would be averaged
			// with it.
			m.now = m.now.Add(1300 * time.Millisecond)
			m.s.Record(m.now, tc.load)
			if diff := cmp.Diff(tc.want, m.decide(), approx); diff != "" {
				t.Errorf("first decision (-want +got):\n%s", diff)
			}
			// The request ends before the next sample; the replica stays
			// through a stable window plus the grace period.
			m.run(89*time.Second, 0)
			for _, st := range m.steps[len(m.steps)-44:] {
				if st.d.Desired == 0 {
					t.Errorf("at %v: Desired = 0, want a replica kept", st.at)
				}
			}
			m.run(2*time.Second, 0)
			if got := m.last().d.Desired; got != 0 {
				t.Errorf("90s after the request: Desired = %d, want 0", got)
			}
		})
	}
}

// TestCurrentSecond: a decision early in a second that has no sample yet
// uses the seconds before it, instead of counting the current one as idle.
func TestCurrentSecond(t *testing.T) {
	s := New(Spec{Target: 10})
	for i := range 10 {
		s.Record(t0.Add(time.Duration(i)*time.Second), 60)
	}
	got := s.Decide(t0.Add(10*time.Second+100*time.Millisecond), 6)
	if want := (Decision{Desired: 6, StableConcurrency: 60, PanicConcurrency: 60}); got != want {
		t.Errorf("Decide = %+v, want %+v", got, want)
	}
}

func TestSamplesInASecondAreAveraged(t *testing.T) {
	s := New(Spec{Target: 1})
	for i, v := range []float64{1, 2, 3, 6, math.NaN(), math.Inf(1), -4} {
		s.Record(t0.Add(time.Duration(i)*100*time.Millisecond), v)
	}
	// 1, 2, 3, 6 and the negative sample as 0: 12/5.
	if got := s.Decide(t0.Add(900*time.Millisecond), 3); got.StableConcurrency != 2.4 || got.Desired != 3 {
		t.Errorf("Decide = %+v, want StableConcurrency 2.4, Desired 3", got)
	}
}

func TestTracker(t *testing.T) {
	var tr Tracker
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	if got := tr.Sample(at(0)); got != 0 {
		t.Errorf("Sample with no requests = %v, want 0", got)
	}
	tr.Begin(at(0))
	tr.End(at(250)) // a quarter of the second
	tr.Begin(at(500))
	tr.Begin(at(500))
	if got := tr.Sample(at(1000)); got != 1.25 { // 0.25 + 2*0.5
		t.Errorf("Sample = %v, want 1.25", got)
	}
	if got := tr.InFlight(); got != 2 {
		t.Errorf("InFlight = %d, want 2", got)
	}
	tr.End(at(1500))
	tr.End(at(2000))
	tr.End(at(2000)) // unmatched; ignored
	if got := tr.Sample(at(2000)); got != 1.5 {
		t.Errorf("Sample = %v, want 1.5", got)
	}
	if got := tr.Sample(at(2000)); got != 0 {
		t.Errorf("Sample with no time passed = %v, want the 0 in flight", got)
	}
	if got := tr.Sample(at(3000)); got != 0 {
		t.Errorf("idle Sample = %v, want 0", got)
	}

	// A request shorter than the sampling interval keeps a replica.
	s := New(Spec{Target: 10})
	tr.Begin(at(3010))
	tr.End(at(3020))
	s.Record(at(4000), tr.Sample(at(4000)))
	if got := s.Decide(at(4000), 0); got.Desired != 1 {
		t.Errorf("after a 10ms request: Decide = %+v, want 1 replica", got)
	}
}

func TestTrackerConcurrent(t *testing.T) {
	var tr Tracker
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				now := t0.Add(time.Duration(g*1000+i) * time.Millisecond)
				tr.Begin(now)
				tr.End(now.Add(time.Millisecond))
			}
		})
	}
	wg.Go(func() {
		for i := range 100 {
			if got := tr.Sample(t0.Add(time.Duration(i) * 100 * time.Millisecond)); got < 0 || math.IsNaN(got) {
				t.Errorf("Sample = %v", got)
			}
		}
	})
	wg.Wait()
	if got := tr.InFlight(); got != 0 {
		t.Errorf("InFlight = %d, want 0", got)
	}
}

// FuzzScaler feeds a Scaler arbitrary settings and a stream of samples
// and decisions, and checks what must always hold.
func FuzzScaler(f *testing.F) {
	f.Add(0, 0, 10.0, uint16(60), uint16(6), 2.0, 1000.0, 2.0, uint16(30), 1.0, []byte{10, 3, 5, 0, 10, 3, 50, 1, 200, 1, 0, 5, 255, 2, 0, 0})
	f.Add(2, 5, 1.0, uint16(6), uint16(1), 1.5, 1.1, 1.1, uint16(1), 10.0, []byte{1, 3, 255, 0, 1, 3, 255, 9, 1, 3, 0, 9, 60, 2, 0, 9})
	f.Add(0, 0, 0.7, uint16(1), uint16(0), 0.0, 0.0, 0.0, uint16(0), 0.001, []byte{0, 3, 1, 0, 0, 3, 0, 0, 20, 3, 0, 1})
	f.Add(-1, -7, math.NaN(), uint16(3600), uint16(4000), math.Inf(1), math.Inf(1), math.Inf(1), uint16(65535), 1e300, []byte{5, 1, 7, 3, 5, 2, 7, 3})
	f.Add(3, 1, -5.0, uint16(0), uint16(0), math.NaN(), -2.0, 100.0, uint16(5), math.Inf(-1), []byte{255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, minR, maxR int, target float64, stableSec, panicSec uint16,
		threshold, up, down float64, graceSec uint16, scale float64, ops []byte) {
		s := New(Spec{
			Min: minR, Max: maxR, Target: target,
			StableWindow:   time.Duration(stableSec) * time.Second,
			PanicWindow:    time.Duration(panicSec) * time.Second,
			PanicThreshold: threshold, MaxScaleUpRate: up, MaxScaleDownRate: down,
			ScaleToZeroGrace: time.Duration(graceSec) * time.Second,
		})
		sp := s.Spec()
		now := t0
		var busy []time.Time // samples above zero
		var prev Decision
		// Each op is 4 bytes: a step in tenths of a second, what to do
		// (bit 0: record, bit 1: decide), a load and the ready replicas.
		for len(ops) >= 4 {
			op := ops[:4]
			ops = ops[4:]
			now = now.Add(time.Duration(op[0]) * 100 * time.Millisecond)
			if op[1]&1 != 0 {
				v := float64(op[2]) * scale
				s.Record(now, v)
				if v > 0 && !math.IsInf(v, 0) {
					busy = append(busy, now)
				}
			}
			if op[1]&2 == 0 {
				continue
			}
			ready := int(op[3]) - 2 // sometimes negative
			d := s.Decide(now, ready)
			if d.Desired < 0 || d.Desired < sp.Min || (sp.Max > 0 && d.Desired > sp.Max) || d.Desired > maxReplicas {
				t.Fatalf("Desired = %d, outside [%d, %d]", d.Desired, sp.Min, sp.Max)
			}
			for _, c := range []float64{d.StableConcurrency, d.PanicConcurrency} {
				if !(c >= 0) || math.IsInf(c, 0) {
					t.Fatalf("concurrency %v in %+v", c, d)
				}
			}
			if prev.Panic && d.Panic && d.Desired < prev.Desired {
				t.Fatalf("scaled down from %d to %d in panic mode", prev.Desired, d.Desired)
			}
			if d.Desired == 0 {
				for _, b := range busy {
					if b.Unix() > now.Unix()-int64(sp.StableWindow/time.Second) {
						t.Fatalf("Desired 0 at %v with traffic in the stable window, at %v", now, b)
					}
					if ready > 0 && now.Sub(b) < sp.StableWindow+sp.ScaleToZeroGrace {
						t.Fatalf("Desired 0 at %v with %d ready and traffic at %v, within the window and grace", now, ready, b)
					}
				}
			}
			prev = d
		}
	})
}
