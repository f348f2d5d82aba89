package series

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus/internal/store"
)

// How long stored series are kept: samples cover the shortest range,
// periods the week of the longest, each with a margin.
const (
	KeepSamples = 2 * time.Hour
	KeepRollups = 8 * 24 * time.Hour
)

// DefaultEvery is how often the registry is sampled when Config.Every is
// zero.
const DefaultEvery = 5 * time.Second

// pruneEvery is how often at most the sampler deletes the rows past
// their keeping.
const pruneEvery = time.Minute

// marker is the key of the rows that say that the sampler ran: one per
// sample and per period. A workload without a row of its own in a sample
// or period that has the marker did nothing in it, its gauges at 0; rows
// of idle workloads are not stored.
var marker = key{kind: "sampler"}

// Store keeps the series; *store.Store is one.
type Store interface {
	// PutSeries stores samples and rollups in one transaction, replacing
	// rows of the same kind, name, step and time.
	PutSeries(ctx context.Context, samples, rollups []store.SeriesRow) error
	SeriesSamples(ctx context.Context, q store.SeriesQuery) ([]store.SeriesRow, error)
	SeriesRollups(ctx context.Context, q store.SeriesQuery) ([]store.SeriesRow, error)
	PruneSeries(ctx context.Context, samplesBefore, rollupsBefore time.Time) (int64, error)
}

// Config configures a Sampler. Gatherer and Store are required; the other
// fields' zero values mean the defaults.
type Config struct {
	// Gatherer is the server's registry, read by each sample and read.
	Gatherer prometheus.Gatherer
	Store    Store
	// Every is how often Run samples (DefaultEvery if 0).
	Every time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Log gets failed samples; nil discards.
	Log *slog.Logger
}

// A Sampler samples the registry into the store and answers the series
// from both. Make it with New; it is safe for concurrent use.
type Sampler struct {
	gather prometheus.Gatherer
	st     Store
	every  time.Duration
	now    func() time.Time
	log    *slog.Logger

	sampleMu  sync.Mutex // one sample at a time
	lastPrune time.Time  // guarded by sampleMu

	mu   sync.Mutex
	snap snapshot
}

// snapshot is the state a read starts from. Its fields are replaced by
// each sample, never changed in place.
type snapshot struct {
	// prev is the reading of the last stored sample, nil before the
	// first: what the registry holds beyond it is not stored yet.
	prev *reading
	// lastAt is the time of the last stored sample, or, before the first,
	// of New: stored samples up to it are those prev accounts for (those
	// of the server's earlier runs).
	lastAt time.Time
	// rolls are the periods being rolled up, one per level: the stored
	// periods before them are final.
	rolls [len(levels)]roll
}

// A roll is a period being rolled up: its start (zero before the first
// sample) and what each workload did in it up to prev. Its points are
// shared by the rolls of two samples, and never changed: a sample copies
// the points it adds to.
type roll struct {
	start  time.Time
	points map[key]*point
}

// New returns a sampler; Run samples. It panics without a Gatherer or a
// Store.
func New(cfg Config) *Sampler {
	if cfg.Gatherer == nil || cfg.Store == nil {
		panic("series.New: Config.Gatherer and Config.Store are required")
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{gather: cfg.Gatherer, st: cfg.Store, every: cfg.Every, now: cfg.Now, log: cfg.Log}
	s.snap.lastAt = cfg.Now()
	return s
}

// lastSampleTimeout bounds the sample Run takes as it stops.
const lastSampleTimeout = 5 * time.Second

// Run samples now and every Config.Every until ctx ends, then takes a
// last sample (so that a server stopped cleanly keeps what it did since
// the previous one) and returns nil. A failed sample is logged; the next
// covers its span.
func (s *Sampler) Run(ctx context.Context) error {
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		if err := s.Sample(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sample metrics", "err", err)
		}
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lastSampleTimeout)
			defer cancel()
			if err := s.Sample(lctx); err != nil {
				s.log.Warn("sample metrics as the server stops", "err", err)
			}
			return nil
		case <-tick.C:
		}
	}
}

// Sample gathers the registry and stores what each workload did since
// the last stored sample, and the periods it is in, in one transaction;
// at most once a minute it then deletes the rows past their keeping. If
// the store fails, nothing changes: the next sample covers the span.
func (s *Sampler) Sample(ctx context.Context) error {
	s.sampleMu.Lock()
	defer s.sampleMu.Unlock()
	now := s.now()
	cur, err := s.read(now)
	if err != nil {
		return err
	}
	s.mu.Lock()
	snap := s.snap
	s.mu.Unlock()

	var rolls [len(levels)]roll
	for i, step := range levels {
		r := roll{start: periodOf(now, step), points: map[key]*point{}}
		switch old := snap.rolls[i]; {
		case r.start.Equal(old.start):
			maps.Copy(r.points, old.points)
		case old.start.IsZero():
			// The first sample: the period may have begun in an earlier
			// run.
			rows, err := s.st.SeriesRollups(ctx, store.SeriesQuery{Step: step, Since: r.start, Until: r.start})
			if err != nil {
				return err
			}
			for _, row := range rows {
				if p, err := decodePoint(row.Data); err == nil {
					r.points[key{row.Kind, row.Name}] = p
				}
			}
		}
		rolls[i] = r
	}
	pts := cur.since(snap.prev)
	pts[marker] = &point{}
	samples := make([]store.SeriesRow, 0, len(pts))
	rollups := make([]store.SeriesRow, 0, len(levels)*len(pts))
	for k, p := range pts {
		if k != marker && p.empty() {
			continue // the marker says it
		}
		samples = append(samples, store.SeriesRow{Kind: k.kind, Name: k.name, At: now, Data: p.encode()})
		for i := range rolls {
			r := &rolls[i]
			m := &point{}
			if old := r.points[k]; old != nil {
				m = old.clone()
			}
			m.add(p)
			r.points[k] = m
			rollups = append(rollups, store.SeriesRow{Kind: k.kind, Name: k.name, Step: levels[i], At: r.start, Data: m.encode()})
		}
	}
	if err := s.st.PutSeries(ctx, samples, rollups); err != nil {
		return err
	}
	s.mu.Lock()
	s.snap = snapshot{prev: cur, lastAt: now, rolls: rolls}
	s.mu.Unlock()

	if now.Sub(s.lastPrune) >= pruneEvery {
		s.lastPrune = now
		if _, err := s.st.PruneSeries(ctx, now.Add(-KeepSamples), now.Add(-KeepRollups)); err != nil {
			return err
		}
	}
	return nil
}

// read gathers the registry. A registry that fails part of its
// collectors still gives the rest: those are read, the failure logged.
func (s *Sampler) read(now time.Time) (*reading, error) {
	fams, err := s.gather.Gather()
	if err != nil {
		if len(fams) == 0 {
			return nil, fmt.Errorf("gather metrics: %w", err)
		}
		s.log.Warn("gather metrics", "err", err)
	}
	return read(fams, now), nil
}

// snapshot returns the state a read starts from.
func (s *Sampler) snapshot() snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// periodOf is the start of the period of step that t is in.
func periodOf(t time.Time, step time.Duration) time.Time {
	sec := int64(step / time.Second)
	return time.Unix(floorDiv(t.Unix(), sec)*sec, 0)
}
