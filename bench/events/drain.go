package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

const drainFn = "drain"

// drainResult is a backlog of events queued first and then drained.
type drainResult struct {
	Events      int
	EnqueueRate float64       // 202s per second while queueing
	Enqueue     time.Duration // time to queue them all
	Overlap     bool          // the drain started before queueing ended
	Span        time.Duration // first record's start to last record's end
	Rate        float64       // events per second over Span
	MeanDurMs   float64       // mean invocation duration in the records
	SlotMs      float64       // conc·Span/Events: slot time per event
	Distinct    int           // distinct request IDs with a success record
	Duplicates  int           // records beyond one per request ID
	Lost        int           // accepted request IDs without a success record
	Failed      int           // records with an outcome other than success
	GapP50      time.Duration // between one invocation's end and the next's start on the same instance
	GapP90      time.Duration
	GapP99      time.Duration
	Instances   int     // instances that ran the backlog
	ServerCPUus float64 // server CPU per event while draining, µs
	TreeCPUus   float64 // server + instances CPU per event, µs
}

// drainRun deploys the drain function with max concurrency conc (and
// memoryMB, unless 0), occupies
// its conc slots with hold-long events, queues n events {"sleep": sleepMs}
// at concurrency qconc meanwhile, and measures how the backlog drains
// once the slots free up.
func drainRun(ctx context.Context, s *server, codeDir string, n, conc, qconc, sleepMs, memoryMB int, hold, timeout time.Duration, prof func(string) func()) (drainResult, error) {
	var res drainResult
	res.Events = n
	flags := []string{"--max-concurrency", strconv.Itoa(conc), "--timeout", "60"}
	if memoryMB > 0 {
		flags = append(flags, "--memory", strconv.Itoa(memoryMB))
	}
	if err := s.deploy(ctx, drainFn, codeDir, flags...); err != nil {
		return res, err
	}
	// Blockers: conc events that hold every slot while the backlog queues
	// (and start the conc instances the drain will use).
	blockers := make([]string, conc)
	for i := range blockers {
		id, err := s.invokeAsync(ctx, drainFn, []byte(`{"sleep":`+strconv.Itoa(int(hold.Milliseconds()))+`}`))
		if err != nil {
			return res, err
		}
		blockers[i] = id
	}
	for _, id := range blockers {
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := s.status(ctx, id)
			if err != nil {
				return res, err
			}
			if st.State == stratus.AsyncRunning || st.State == stratus.AsyncSucceeded {
				break
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("drain: blocker %s still %s after 30s", id, st.State)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	holdEnds := time.Now().Add(hold - 100*time.Millisecond) // the earliest a blocker ends, roughly

	// Queue the backlog.
	event := []byte(`{"sleep":` + strconv.Itoa(sleepMs) + `}`)
	ids := make([][]string, qconc)
	errs := make([]error, qconc)
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lastID string
	q0 := time.Now()
	for w := range qconc {
		wg.Go(func() {
			for range next {
				id, err := s.invokeAsync(ctx, drainFn, event)
				if err != nil {
					errs[w] = err
					return
				}
				ids[w] = append(ids[w], id)
				mu.Lock()
				lastID = id
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Enqueue = time.Since(q0)
	res.EnqueueRate = float64(n) / res.Enqueue.Seconds()
	res.Overlap = time.Now().After(holdEnds)
	for _, err := range errs {
		if err != nil {
			return res, fmt.Errorf("drain: queue: %w", err)
		}
	}
	accepted := map[string]bool{}
	for _, l := range ids {
		for _, id := range l {
			accepted[id] = true
		}
	}
	if len(accepted) != n {
		return res, fmt.Errorf("drain: %d distinct request IDs accepted, want %d", len(accepted), n)
	}

	// Wait for the drain: the last queued event's status, then the records.
	if time.Until(holdEnds) > 0 {
		time.Sleep(time.Until(holdEnds))
	}
	cpu0, tree0 := benchkit.ProcCPU(s.PID()), benchkit.TreeCPU(s.PID())
	done := sync.OnceFunc(prof("drain"))
	defer done()
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.status(ctx, lastID)
		if err != nil {
			return res, err
		}
		if st.State == stratus.AsyncSucceeded || st.State == stratus.AsyncFailed {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("drain: not done after %s", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cpu, tree := benchkit.ProcCPU(s.PID())-cpu0, benchkit.TreeCPU(s.PID())-tree0
	done()

	// The newest 10,000 records, then each accepted request missing there
	// on its own (duplicates or blockers may push some out), until every
	// accepted request has a success record or the deadline passes.
	var all []stratus.Invocation
	recs, err := s.records(ctx, drainFn, 10000, "")
	if err != nil {
		return res, err
	}
	for _, r := range recs {
		if accepted[r.RequestID] {
			all = append(all, r)
		}
	}
	succ := map[string]bool{}
	for _, r := range all {
		if r.Outcome == stratus.OutcomeSuccess {
			succ[r.RequestID] = true
		}
	}
	for id := range accepted {
		for !succ[id] {
			rs, err := s.records(ctx, drainFn, 10, id)
			if err != nil {
				return res, err
			}
			for _, r := range rs {
				if r.Outcome == stratus.OutcomeSuccess {
					succ[id] = true
				}
			}
			if succ[id] || time.Now().After(deadline) {
				all = append(all, rs...)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	seen := map[string]int{}
	var first, lastEnd time.Time
	var dur float64
	for _, r := range all {
		seen[r.RequestID]++
		if r.Outcome != stratus.OutcomeSuccess {
			res.Failed++
			continue
		}
		end := r.Start.Add(time.Duration(r.DurationMs * float64(time.Millisecond)))
		if first.IsZero() || r.Start.Before(first) {
			first = r.Start
		}
		if end.After(lastEnd) {
			lastEnd = end
		}
		dur += r.DurationMs
	}
	for _, c := range seen {
		res.Duplicates += c - 1
	}
	byInst := map[string][]stratus.Invocation{}
	for _, r := range all {
		byInst[r.Instance] = append(byInst[r.Instance], r)
	}
	var gaps []time.Duration
	for _, l := range byInst {
		slices.SortFunc(l, func(a, b stratus.Invocation) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(l); i++ {
			end := l[i-1].Start.Add(time.Duration(l[i-1].DurationMs * float64(time.Millisecond)))
			gaps = append(gaps, l[i].Start.Sub(end))
		}
	}
	res.Instances = len(byInst)
	slices.Sort(gaps)
	res.GapP50, res.GapP90, res.GapP99 = benchkit.Rank(gaps, 0.50), benchkit.Rank(gaps, 0.90), benchkit.Rank(gaps, 0.99)
	res.Distinct = len(succ)
	res.Lost = n - res.Distinct
	res.Span = lastEnd.Sub(first)
	if res.Span > 0 && res.Distinct > 0 {
		res.Rate = float64(res.Distinct) / res.Span.Seconds()
		res.SlotMs = float64(conc) * res.Span.Seconds() * 1000 / float64(res.Distinct)
		res.MeanDurMs = dur / float64(len(all)-res.Failed)
		res.ServerCPUus = float64(cpu.Microseconds()) / float64(res.Distinct)
		res.TreeCPUus = float64(tree.Microseconds()) / float64(res.Distinct)
	}
	return res, nil
}
