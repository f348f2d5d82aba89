package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/apiserver"
	"github.com/stratus-run/stratus/internal/events"
)

// healthEvery is how often the readiness checks run for the log and the
// metrics; /readyz runs them when asked.
const healthEvery = time.Second

// healthCheck is one readiness check: fast (in memory, or one statfs),
// nil while it passes.
type healthCheck struct {
	name  string
	check func() error
}

// readiness runs the server's readiness checks: for /readyz (503 with
// the reasons while one fails), for the log (each failure and each
// recovery, once) and for /metrics (stratus_ready{check=NAME} 1 or 0).
type readiness struct {
	checks []healthCheck
	log    *slog.Logger

	mu   sync.Mutex
	last map[string]error // by check, as Run last saw it
}

func newReadiness(log *slog.Logger, reg prometheus.Registerer, checks ...healthCheck) *readiness {
	r := &readiness{checks: checks, log: log, last: make(map[string]error)}
	for _, c := range checks {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stratus_ready", Help: "1 while a readiness check passes, 0 while it fails (its reason is in /readyz and the log).",
			ConstLabels: prometheus.Labels{"check": c.name},
		}, func() float64 {
			if c.check() != nil {
				return 0
			}
			return 1
		}))
	}
	return r
}

// Checks runs every check now.
func (r *readiness) Checks() []apiserver.Check {
	out := make([]apiserver.Check, len(r.checks))
	for i, c := range r.checks {
		out[i] = apiserver.Check{Name: c.name, Err: c.check()}
	}
	return out
}

// Run runs the checks every healthEvery until ctx ends and logs each
// change: a check that starts failing as an error, its recovery as a
// warning.
func (r *readiness) Run(ctx context.Context) error {
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		r.observe()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *readiness) observe() {
	for _, c := range r.Checks() {
		r.mu.Lock()
		was, seen := r.last[c.Name]
		r.last[c.Name] = c.Err
		r.mu.Unlock()
		switch {
		case c.Err != nil && (was == nil || was.Error() != c.Err.Error()):
			r.log.Error("not ready", "check", c.Name, "err", c.Err)
		case c.Err == nil && seen && was != nil:
			r.log.Warn("ready again", "check", c.Name, "was", was)
		}
	}
}

// diskCheck fails while the volume of dir has less than minFree bytes
// free.
func diskCheck(dir string, minFree int64) func() error {
	return func() error {
		free, err := events.FreeSpace(dir)
		if err != nil {
			return fmt.Errorf("data volume: %w", err)
		}
		if free < minFree {
			return fmt.Errorf("data volume: %d MiB free, below --min-free-bytes (%d MiB): %w",
				free>>20, minFree>>20, stratus.ErrNoSpace)
		}
		return nil
	}
}

// checkStartSpace refuses to start on a data volume with less than
// minFree bytes free.
func checkStartSpace(dir string, minFree int64) error {
	if err := diskCheck(dir, minFree)(); err != nil {
		return fmt.Errorf("%s: %w; free some space or lower --min-free-bytes", dir, err)
	}
	return nil
}
