package series

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus/internal/store"
)

// How long stored rows are kept: each as long as the range that reads
// it spans, with a margin. Samples serve the 15m range only; the periods
// of levels[i] are kept keepRollups[i] (1h, 24h and 7d read them).
const KeepSamples = 30 * time.Minute

var keepRollups = [len(levels)]time.Duration{2 * time.Hour, 26 * time.Hour, 8 * 24 * time.Hour}

// LiveFor is how long a reading of the registry serves reads: every
// chart polled within it costs one Gather.
const LiveFor = time.Second

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
	PruneSeries(ctx context.Context, samplesBefore time.Time, rollupsBefore map[time.Duration]time.Time) (int64, error)
}

// Config configures a Sampler. Gatherer and Store are required; the other
// fields' zero values mean the defaults.
type Config struct {
	// Gatherer gives the families the series are made of (Sources), read
	// by each sample and read; the fewer others it gathers, the cheaper.
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

	// gathered counts the Gathers done: a reading that began at or after
	// another's end saw each series at least as late.
	gathered atomic.Uint64
	liveMu   sync.Mutex // one Gather for reads at a time

	mu   sync.Mutex
	snap snapshot
	live *reading // the newest reading, for reads within LiveFor of it
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
	s.keepLive(cur)
	s.mu.Unlock()
	if cur.partial {
		// What a failing collector did not give is not gone: carried, so
		// that the next sample does not count its totals again.
		cur = cur.carry(snap.prev)
	}

	var rolls [len(levels)]roll
	for i, step := range levels {
		r := roll{start: periodOf(now, step), points: map[key]*point{}}
		if old := snap.rolls[i]; r.start.Equal(old.start) {
			maps.Copy(r.points, old.points)
		} else {
			// A period this sampler has not rolled up yet may have rows:
			// of an earlier run, or, when the clock went back, of this
			// one. They are added to, never replaced.
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

	if now.Sub(s.lastPrune) >= pruneEvery || now.Before(s.lastPrune) {
		s.lastPrune = now
		before := make(map[time.Duration]time.Time, len(levels))
		for i, step := range levels {
			before[step] = now.Add(-keepRollups[i])
		}
		if _, err := s.st.PruneSeries(ctx, now.Add(-KeepSamples), before); err != nil {
			return err
		}
	}
	return nil
}

// read gathers the registry. A registry that fails part of its
// collectors still gives the rest: those are read (the reading marked
// partial), the failure logged.
func (s *Sampler) read(now time.Time) (*reading, error) {
	began := s.gathered.Load()
	fams, err := s.gather.Gather()
	ended := s.gathered.Add(1)
	if err != nil && len(fams) == 0 {
		return nil, fmt.Errorf("gather metrics: %w", err)
	}
	if err != nil {
		s.log.Warn("gather metrics", "err", err)
	}
	r := read(fams, now)
	r.began, r.ended, r.partial = began, ended, err != nil
	return r, nil
}

// keepLive makes r the reading reads start from, unless a newer one is.
// s.mu is held.
func (s *Sampler) keepLive(r *reading) {
	if s.live == nil || r.began >= s.live.began {
		s.live = r
	}
}

// liveReading is a reading of the registry that saw every series no
// sooner than prev did (nil: any): prev's own Gather, or one that began
// after prev's ended (two Gathers at once may each read a series first);
// the last one if it is such and at most LiveFor old, else a new one.
func (s *Sampler) liveReading(now time.Time, prev *reading) (*reading, error) {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	s.mu.Lock()
	r := s.live
	s.mu.Unlock()
	if r != nil && (prev == nil || r.ended == prev.ended || r.began >= prev.ended) && !now.Before(r.at) && now.Sub(r.at) < LiveFor {
		return r, nil
	}
	r, err := s.read(now)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.keepLive(r)
	s.mu.Unlock()
	return r, nil
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
