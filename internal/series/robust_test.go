package series

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stratus-run/stratus/internal/store"
)

// flakyGatherer gathers reg, counting its Gathers; while failing names a
// family, that family is left out and the Gather fails, as a registry
// does when one of its collectors fails.
type flakyGatherer struct {
	reg     prometheus.Gatherer
	n       atomic.Int64
	mu      sync.Mutex
	failing string
}

func (g *flakyGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.n.Add(1)
	fams, err := g.reg.Gather()
	g.mu.Lock()
	failing := g.failing
	g.mu.Unlock()
	if failing == "" || err != nil {
		return fams, err
	}
	kept := fams[:0]
	for _, f := range fams {
		if f.GetName() != failing {
			kept = append(kept, f)
		}
	}
	return kept, errors.New("collector of " + failing + " failed")
}

func (g *flakyGatherer) fail(family string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failing = family
}

// TestPartialGatherCarriesTotals: a sample in which one collector
// failed counts what the others gave, and the next complete one does
// not count the failed family's totals again.
func TestPartialGatherCarriesTotals(t *testing.T) {
	r := newRig(t)
	g := &flakyGatherer{reg: r.reg.reg}
	r.s = New(Config{Gatherer: g, Store: r.st, Now: r.clk.now})
	r.reg.throttles.WithLabelValues("fn").Add(5)
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(0)
	g.fail("stratus_function_throttles_total")
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(5 * time.Second)
	g.fail("")
	r.reg.throttles.WithLabelValues("fn").Add(1)
	r.sample(10 * time.Second)
	for _, rng := range []string{"15m", "1h"} {
		s := r.function("fn", rng, 11*time.Second)
		if got := sum(s.Series.Throttles); got != 6 {
			t.Errorf("%s: %d throttles, want 6: %v", rng, got, s.Series.Throttles)
		}
		if got := sum(s.Series.Invocations); got != 2 {
			t.Errorf("%s: %d invocations, want 2", rng, got)
		}
	}
	// A Gather that gives nothing is a failed sample: nothing stored.
	empty := &flakyGatherer{reg: prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("down") })}
	r.s = New(Config{Gatherer: empty, Store: r.st, Now: r.clk.now})
	if err := r.s.Sample(context.Background()); err == nil {
		t.Error("a sample of a registry that gave nothing succeeded")
	}
}

// TestClockBackAddsToStoredPeriods: when the clock steps back into a
// period already rolled up (and then forward again), the samples add to
// the stored period instead of replacing it.
func TestClockBackAddsToStoredPeriods(t *testing.T) {
	r := newRig(t)
	minute := func(at time.Duration) float64 {
		t.Helper()
		rows, err := r.st.SeriesRollups(context.Background(), store.SeriesQuery{Step: time.Minute, Kind: KindFunction, Name: "fn", Since: t0.Add(at), Until: t0.Add(at)})
		if err != nil || len(rows) != 1 {
			t.Fatalf("minute %v: %d rows, %v", at, len(rows), err)
		}
		p, err := decodePoint(rows[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		return p.Calls
	}
	for range 3 {
		r.reg.invoke("fn", "success", time.Millisecond)
	}
	r.sample(70 * time.Second) // minute 1
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(130 * time.Second) // minute 2
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(75 * time.Second) // back in minute 1
	if got := minute(time.Minute); got != 4 {
		t.Errorf("minute 1 after the clock went back: %v calls, want 4", got)
	}
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(135 * time.Second) // forward in minute 2 again
	if got := minute(2 * time.Minute); got != 2 {
		t.Errorf("minute 2 after the clock went forward again: %v calls, want 2", got)
	}
	if got := sum(r.function("fn", "1h", 140*time.Second).Series.Invocations); got != 6 {
		t.Errorf("1h: %d invocations, want 6", got)
	}
}

// TestOneGatherServesReadsWithinLiveFor: reads within LiveFor of a
// Gather (a read's or a sample's) share it; a later one gathers anew and
// sees what happened since.
func TestOneGatherServesReadsWithinLiveFor(t *testing.T) {
	r := newRig(t)
	g := &flakyGatherer{reg: r.reg.reg}
	r.s = New(Config{Gatherer: g, Store: r.st, Now: r.clk.now})
	r.reg.invoke("fn", "success", time.Millisecond)
	r.sample(0)
	base := g.n.Load()
	r.reg.invoke("fn", "success", time.Millisecond)
	for i, at := range []time.Duration{0, 300 * time.Millisecond, 999 * time.Millisecond} {
		s := r.function("fn", "15m", at)
		r.function("fn", "1h", at)
		if got := sum(s.Series.Invocations); got != 1 {
			t.Errorf("read %d, within LiveFor of the sample: %d invocations, want the sample's 1", i, got)
		}
	}
	if n := g.n.Load() - base; n != 0 {
		t.Errorf("%d Gathers for reads within LiveFor of a sample, want 0", n)
	}
	s := r.function("fn", "15m", time.Second)
	r.function("fn", "24h", time.Second+500*time.Millisecond)
	if n := g.n.Load() - base; n != 1 || sum(s.Series.Invocations) != 2 {
		t.Errorf("after LiveFor: %d Gathers, %d invocations; want 1 and 2", n, sum(s.Series.Invocations))
	}
	// The clock going back does not make an old reading live.
	r.reg.invoke("fn", "success", time.Millisecond)
	if got := sum(r.function("fn", "15m", 500*time.Millisecond).Series.Invocations); got != 3 {
		t.Errorf("a read before the last Gather: %d invocations, want 3", got)
	}
}

// TestSampleWhileReading runs samples, reads and invocations at once
// (under -race): every read counts at most what was invoked, and once
// all is done each range counts everything once.
func TestSampleWhileReading(t *testing.T) {
	r := newRig(t)
	var (
		invoked          atomic.Int64
		writers, readers sync.WaitGroup
		stop             = make(chan struct{})
	)
	tick := atomic.Int64{}
	r.s = New(Config{Gatherer: r.reg.reg, Store: r.st, Now: func() time.Time {
		return t0.Add(time.Duration(tick.Load()) * 100 * time.Millisecond)
	}})
	ctx := context.Background()
	writers.Go(func() {
		for i := range 200 {
			r.reg.invoke("fn", "success", time.Millisecond)
			invoked.Add(1)
			if i%10 == 0 {
				r.reg.request("web", "2xx", time.Millisecond)
			}
		}
	})
	writers.Go(func() {
		for range 60 {
			tick.Add(13) // 1.3 s: a new Gather for reads each time
			if err := r.s.Sample(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for _, rng := range []string{"15m", "1h", "24h"} {
		readers.Go(func() {
			rg, _ := ParseRange(rng)
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := r.s.Function(ctx, "fn", rg)
				if err != nil {
					t.Error(err)
					return
				}
				if got, max := sum(s.Series.Invocations), invoked.Load(); got > max {
					t.Errorf("%s: a read counted %d invocations of %d", rng, got, max)
					return
				}
				if _, err := r.s.Overview(ctx, rg, []string{"fn"}, []string{"web"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	tick.Add(13)
	if err := r.s.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	for _, rng := range []string{"15m", "1h", "24h", "7d"} {
		rg, _ := ParseRange(rng)
		s, err := r.s.Function(ctx, "fn", rg)
		if err != nil {
			t.Fatal(err)
		}
		if got := sum(s.Series.Invocations); got != 200 {
			t.Errorf("%s: %d invocations, want 200", rng, got)
		}
	}
}
