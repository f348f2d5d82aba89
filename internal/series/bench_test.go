package series

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/store"
)

// benchRig is a sampler over a store holding, for each of fns busy
// functions, every period of the last 8 days and every sample of the
// last two hours (each with counts, a histogram and gauges), and the
// markers.
func benchRig(b *testing.B, fns int) *Sampler {
	b.Helper()
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "stratus.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	one, two := 1.0, 2.0
	p := point{Calls: 12, Errors: 1, ColdStarts: 1, Dur: &hist{N: make([]float64, len(testBuckets)+1)},
		Instances: &two, Busy: &one}
	p.Dur.N[3], p.Dur.N[4] = 10, 2
	p.Dur.Le = defaultLayout
	data := p.encode()
	now := t0
	for i := range fns + 1 {
		k, d := marker, (&point{}).encode()
		if i > 0 {
			k, d = key{KindFunction, fmt.Sprintf("fn%d", i)}, data
		}
		var samples, rollups []store.SeriesRow
		for i, step := range levels {
			for at := now.Add(-keepRollups[i]); at.Before(now); at = at.Add(step) {
				rollups = append(rollups, store.SeriesRow{Kind: k.kind, Name: k.name, Step: step, At: at, Data: d})
			}
		}
		for at := now.Add(-KeepSamples); at.Before(now); at = at.Add(5 * time.Second) {
			samples = append(samples, store.SeriesRow{Kind: k.kind, Name: k.name, At: at, Data: d})
		}
		if err := st.PutSeries(context.Background(), samples, rollups); err != nil {
			b.Fatal(err)
		}
	}
	return New(Config{Gatherer: newRegistry().reg, Store: st, Now: func() time.Time { return now }})
}

func BenchmarkFunction(b *testing.B) {
	s := benchRig(b, 1)
	for _, name := range []string{"1h", "24h", "7d"} {
		r, _ := ParseRange(name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Function(context.Background(), "fn1", r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOverview20(b *testing.B) {
	s := benchRig(b, 20)
	fns := make([]string, 20)
	for i := range fns {
		fns[i] = fmt.Sprintf("fn%d", i+1)
	}
	for _, name := range []string{"1h", "24h", "7d"} {
		r, _ := ParseRange(name)
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Overview(context.Background(), r, fns, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSample is one sample of a registry of 20 busy functions and 20
// idle ones: its CPU time over Config.Every is the sampler's share.
func BenchmarkSample(b *testing.B) {
	st, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "stratus.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	reg := newRegistry()
	clk := &clock{t: t0}
	s := New(Config{Gatherer: reg.reg, Store: st, Now: clk.now})
	for i := range 40 {
		reg.instances.WithLabelValues(fmt.Sprintf("fn%d", i), "idle").Set(0)
	}
	at := t0
	for b.Loop() {
		for i := range 20 {
			reg.invoke(fmt.Sprintf("fn%d", i), "success", 3*time.Millisecond)
		}
		at = at.Add(5 * time.Second)
		clk.set(at)
		if err := s.Sample(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
