// Command events measures Stratus's event system against its floor, in one
// run on one machine (README.md in this folder records the figures):
//
//   - floor: acknowledged JetStream publishes of 1 KiB messages to an
//     embedded nats-server with file storage in a temp dir, opened with
//     events.OpenBus as the server opens its own: synchronous (32
//     publishers on the one in-process connection, each waiting for its
//     ack) and asynchronous (PublishAsync, a window of 4096); diagnostic
//     variants (a Nats-Msg-Id, Enqueue's headers, both on a work-queue
//     stream, PublishAsync waiting for each ack) and jsfront (./jsfront: a
//     bare net/http handler that publishes the body and answers 202, as its
//     own process);
//   - accept: async invokes (POST /v1/functions/NAME/invoke, X-Invocation-
//     Type: Event) of 1 KiB events at concurrency 32 to a function with max
//     concurrency 1 and a 2 s handler, 202s per second, in rounds
//     interleaved with the floor runs;
//   - latency: a topic publish, and an async invoke, sent one at a time to
//     the start of the warm subscribed function's invocation (its record);
//   - drain: 10,000 events queued to a function with max concurrency 10
//     and a 1 ms handler, then drained: events/s, and none lost;
//   - the server's RSS after each part, and how busy the machine was.
//
// Each part runs on a server started without --sandbox (the sandbox users
// get: runc as root when usable), then latency and drain again on a server
// started with --sandbox process (-sandboxes), one column each.
//
// Run it from the module root: go run ./bench/events [flags]. Everything
// listens on 127.0.0.1 or in-process; every loop is bounded by a count, a
// duration or a timeout; a default run takes about 3 minutes.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

type options struct {
	sections    map[string]bool
	rounds      int
	conc        int
	size        int
	floorDur    time.Duration
	window      int
	acceptDur   time.Duration
	acceptWarm  time.Duration
	acceptSleep int
	latEvents   int
	latWarm     int
	latGap      time.Duration
	drainEvents int
	drainConc   int
	drainQConc  int
	drainSleep  int
	drainHold   time.Duration
	drainWait   time.Duration
	drainMemory int
	sandboxes   []string
	stratusBin  string
	perfDir     string
	keep        bool
	noHTTPFloor bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var sections, sandboxes string
	flag.StringVar(&sections, "sections", "latency,drain,accept", "parts to run besides the floor: latency, drain, accept (the floor runs with accept)")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds of floor and accept runs; figures are their median")
	flag.IntVar(&o.conc, "conc", 32, "concurrency of the synchronous floor and of the accept runs")
	flag.IntVar(&o.size, "size", 1024, "bytes per message and per async event")
	flag.DurationVar(&o.floorDur, "floor-duration", 2*time.Second, "measured time of each floor run (each of 5 JetStream modes, and jsfront)")
	flag.IntVar(&o.window, "window", 4096, "unacknowledged messages at most in the asynchronous floor")
	flag.DurationVar(&o.acceptDur, "accept-duration", 3*time.Second, "measured time of each accept run")
	flag.DurationVar(&o.acceptWarm, "accept-warmup", 500*time.Millisecond, "unmeasured load before each accept run")
	flag.IntVar(&o.acceptSleep, "accept-sleep", 2000, "ms the accept function (max concurrency 1) sleeps per event, so it barely runs while accepting")
	flag.IntVar(&o.latEvents, "lat-events", 300, "events published one at a time for each latency figure")
	flag.IntVar(&o.latWarm, "lat-warm", 20, "unmeasured events on each latency path first")
	flag.DurationVar(&o.latGap, "lat-gap", 20*time.Millisecond, "pause after each latency event's publish")
	flag.IntVar(&o.drainEvents, "drain-events", 10000, "events queued for the drain")
	flag.IntVar(&o.drainConc, "drain-max-concurrency", 10, "max concurrency of the drain function")
	flag.IntVar(&o.drainQConc, "drain-queue-conc", 32, "concurrency of the clients queueing the drain's events")
	flag.IntVar(&o.drainSleep, "drain-sleep", 1, "ms the drain function sleeps per event")
	flag.DurationVar(&o.drainHold, "drain-hold", 6*time.Second, "how long blocker events hold the drain function's slots while the backlog queues")
	flag.DurationVar(&o.drainWait, "drain-timeout", 120*time.Second, "longest wait for the drain to finish")
	flag.IntVar(&o.drainMemory, "drain-memory", 0, "MB of the drain function (--memory; 0: the default, 128)")
	flag.StringVar(&sandboxes, "sandboxes", "default,process", "sandboxes to run in, one server each: default (the server started without --sandbox: runc as root when usable) or a --sandbox value; the floor and accept run in the first only")
	flag.StringVar(&o.stratusBin, "stratus", "", "use this stratus binary instead of building ./cmd/stratus")
	flag.StringVar(&o.perfDir, "perf", "", "record `perf` CPU profiles of the server (accept round 1, the drain, the topic latency run) into this dir")
	flag.BoolVar(&o.noHTTPFloor, "no-http-floor", false, "skip the diagnostic floor ./bench/events/jsfront (net/http + JetStream publish)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data, server log)")
	flag.Parse()
	var err error
	if o.sections, err = benchkit.ParseSections(sections, "latency", "drain", "accept"); err != nil {
		fmt.Fprintln(os.Stderr, "bench/events:", err)
		return 2
	}
	for _, s := range strings.Split(sandboxes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.sandboxes = append(o.sandboxes, s)
		}
	}
	if len(o.sandboxes) == 0 {
		o.sandboxes = []string{"default"}
	}
	return benchkit.Main("bench/events", func(ctx context.Context) error { return bench(ctx, o) })
}

// results are one sandbox's: the sandbox asked for and the driver the
// server reports.
type results struct {
	sandbox, driver string
	floors          []map[string]floorResult // per round, by mode (plain, shaped, future, async, http)
	accept          []benchkit.RawRun
	topic, async    *latencyResult
	drain           *drainResult
	rss             [][3]any // phase, VmRSS, VmHWM
	load            []loadSample
}

// loadSample is how busy the machine was during one part of the run:
// cores used on average by the bench's processes (this one, the server
// and its instances, jsfront) and by everything else.
type loadSample struct {
	part        string
	ours, other float64
	loadavg     string
}

// loadMeter takes loadSamples between marks.
type loadMeter struct {
	pids         func() []int // process trees of ours besides this process
	at           time.Time
	busy, ourCPU time.Duration
}

func (m *loadMeter) ours() time.Duration {
	d := benchkit.ProcCPUWithChildren(os.Getpid())
	for _, p := range m.pids() {
		d += benchkit.TreeCPU(p) + benchkit.ProcCPUWithChildren(p) - benchkit.ProcCPU(p)
	}
	return d
}

func (m *loadMeter) mark() { m.at, m.busy, m.ourCPU = time.Now(), benchkit.MachineBusy(), m.ours() }

func (m *loadMeter) sample(part string) loadSample {
	el := time.Since(m.at).Seconds()
	busy, ours := benchkit.MachineBusy()-m.busy, m.ours()-m.ourCPU
	la := benchkit.LoadAvgs()
	m.mark()
	return loadSample{part: part, ours: ours.Seconds() / el, other: max(busy-ours, 0).Seconds() / el, loadavg: la}
}

func bench(ctx context.Context, o options) error {
	root, err := benchkit.ModuleRoot(ctx)
	if err != nil {
		return err
	}
	work, cleanup, err := benchkit.WorkDir("stratus-bench-events-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	if o.perfDir != "" {
		if err := os.MkdirAll(o.perfDir, 0o755); err != nil {
			return err
		}
	}
	t0 := time.Now()
	bin := o.stratusBin
	if bin == "" {
		bin = filepath.Join(work, "stratus")
		fmt.Fprintln(os.Stderr, "building ./cmd/stratus and ./e2e/testdata/goecho ...")
		if err := benchkit.GoBuild(ctx, root, "./cmd/stratus", bin); err != nil {
			return err
		}
	}
	codeDir := filepath.Join(work, "goecho")
	if err := benchkit.GoBuild(ctx, root, "./e2e/testdata/goecho", filepath.Join(codeDir, "bootstrap")); err != nil {
		return err
	}
	var all []results
	for i, sb := range o.sandboxes {
		r, err := benchSandbox(ctx, o, root, work, bin, codeDir, sb, i == 0)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", sb, err)
		}
		all = append(all, r)
	}
	report(os.Stdout, o, all, time.Since(t0))
	return nil
}

// serverArgs are the server flags that choose sandbox sb: none for
// "default" (the server picks, as for a user: runc as root when usable).
func serverArgs(sb string) []string {
	if sb == "default" {
		return nil
	}
	return []string{"--sandbox", sb}
}

// benchSandbox runs the sections on a server of its own started with
// sandbox sb; the floor and the accept rate only when first (they do not
// depend on the sandbox: the accept function barely runs).
func benchSandbox(ctx context.Context, o options, root, work, bin, codeDir, sb string, first bool) (results, error) {
	r := results{sandbox: sb}
	s, err := startServer(ctx, bin, filepath.Join(work, "data-"+sb), filepath.Join(work, "server-"+sb+".log"), serverArgs(sb)...)
	if err != nil {
		return r, err
	}
	defer s.stop()
	var info v1.Info
	if err := s.doJSON(ctx, http.MethodGet, "/v1/info", nil, &info); err != nil {
		return r, err
	}
	r.driver = info.Sandbox.Driver
	fmt.Fprintf(os.Stderr, "sandbox %s: driver %s (%s)\n", sb, info.Sandbox.Driver, info.Sandbox.Why)
	mem := func(phase string) {
		m, _ := benchkit.ProcMem(s.PID())
		r.rss = append(r.rss, [3]any{phase, m.RSS, m.HWM})
	}
	mem("started")
	var front *benchkit.Proc
	var frontURL string
	lm := &loadMeter{pids: func() []int {
		p := []int{s.PID()}
		if front != nil {
			p = append(p, front.PID())
		}
		return p
	}}
	lm.mark()
	prof := func(name string) func() { return func() {} }
	if o.perfDir != "" {
		prof = func(name string) func() {
			return startPerf(s.PID(), filepath.Join(o.perfDir, sb+"-"+name+".perf.data"))
		}
	}

	if o.sections["latency"] {
		fmt.Fprintln(os.Stderr, "latency ...")
		if err := latencySetup(ctx, s, codeDir, o.latWarm, o.latGap); err != nil {
			return r, fmt.Errorf("latency: %w", err)
		}
		done := prof("topic-latency")
		tl, err := topicLatency(ctx, s, o.latEvents, o.latGap)
		done()
		if err != nil {
			return r, err
		}
		r.topic = &tl
		al, err := asyncLatency(ctx, s, o.latEvents, o.latGap)
		if err != nil {
			return r, err
		}
		r.async = &al
		mem("after latency")
		r.load = append(r.load, lm.sample("latency"))
	}
	if o.sections["drain"] {
		fmt.Fprintln(os.Stderr, "drain ...")
		d, err := drainRun(ctx, s, codeDir, o.drainEvents, o.drainConc, o.drainQConc, o.drainSleep, o.drainMemory, o.drainHold, o.drainWait, prof)
		if err != nil {
			return r, err
		}
		r.drain = &d
		mem("after drain")
		r.load = append(r.load, lm.sample("drain"))
	}
	if o.sections["accept"] && first {
		fmt.Fprintln(os.Stderr, "floor and accept ...")
		f, err := openFloor(ctx, filepath.Join(work, "floor"), o.window)
		if err != nil {
			return r, fmt.Errorf("floor: %w", err)
		}
		defer f.close()
		if err := s.deploy(ctx, "accept", codeDir, "--max-concurrency", "1"); err != nil {
			return r, err
		}
		payload := make([]byte, o.size)
		for i := range payload {
			payload[i] = 'a' + byte(i%26)
		}
		event := paddedEvent(`"sleep":`+strconv.Itoa(o.acceptSleep), o.size)
		if !o.noHTTPFloor {
			fbin := filepath.Join(work, "jsfront")
			if err := benchkit.GoBuild(ctx, root, "./bench/events/jsfront", fbin); err != nil {
				return r, err
			}
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			p, addr, err := benchkit.StartProcLine(fctx, []string{fbin, "127.0.0.1:0", filepath.Join(work, "jsfront-store")}, nil, "", filepath.Join(work, "jsfront.log"), "listening on http://")
			cancel()
			if err != nil {
				return r, err
			}
			defer p.Stop(20 * time.Second)
			front, frontURL = p, "http://"+strings.Fields(addr)[0]+"/"
		}
		lm.mark()
		for round := range o.rounds {
			fr := map[string]floorResult{}
			modes := []string{modePlain, modeMsgID, modeHeader, modeShaped, modeFuture}
			// Rotate the order, so no mode always runs first in a round.
			k := round % len(modes)
			modes = append(modes[k:], modes[:k]...)
			for _, mode := range modes {
				settle(s.PID())
				v, err := f.syncRun(ctx, o.conc, o.floorDur, payload, mode)
				if err != nil {
					return r, fmt.Errorf("floor sync %s: %w", mode, err)
				}
				fr[mode] = v
				f.purge(ctx)
			}
			settle(s.PID())
			v, err := f.asyncRun(ctx, o.floorDur, payload)
			if err != nil {
				return r, fmt.Errorf("floor async: %w", err)
			}
			fr["async"] = v
			f.purge(ctx)
			if !o.noHTTPFloor {
				settle(s.PID())
				h := acceptRun(ctx, frontURL, front.PID(), event, o.conc, o.acceptWarm, o.floorDur)
				fr["http"] = floorResult{Rate: h.Rate, CPUus: h.ServerCPUus}
			}
			r.floors = append(r.floors, fr)
			warm := o.acceptWarm
			if round == 0 {
				warm += time.Second // the first events create the stream's consumer
			}
			done := func() {}
			if round == 0 {
				// The profile covers the warmup too.
				done = prof("accept")
			}
			settle(s.PID())
			a := acceptRun(ctx, s.URL+"/v1/functions/accept/invoke", s.PID(), event, o.conc, warm, o.acceptDur)
			done()
			r.accept = append(r.accept, a)
			fmt.Fprintf(os.Stderr, "  round %d: floor sync %.0f/s shaped %.0f/s future %.0f/s async %.0f/s http %.0f/s; accept %.0f/s (%d failed)\n",
				round+1, fr[modePlain].Rate, fr[modeShaped].Rate, fr[modeFuture].Rate, fr["async"].Rate, fr["http"].Rate, a.Rate, a.Failed)
		}
		mem("after accept")
		settle(s.PID())
		mem("after accept, settled")
		r.load = append(r.load, lm.sample("floor + accept"))
	}
	return r, nil
}

// settle waits, for up to 10 s, until the server has used under 10% of a
// core for 250 ms: after an accept run it still stores the queued states
// for a while, which would slow the run after it.
func settle(pid int) {
	for range 40 {
		c0 := benchkit.ProcCPU(pid)
		time.Sleep(250 * time.Millisecond)
		if benchkit.ProcCPU(pid)-c0 < 25*time.Millisecond {
			return
		}
	}
}

// startPerf records the CPU profile of pid with perf until the returned
// func is called.
func startPerf(pid int, out string) func() {
	cmd := exec.Command("perf", "record", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // let it attach
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func mb(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

// table prints rows of a measure, one figure per sandbox, a goal and a
// result.
type table struct {
	tw   *tabwriter.Writer
	cols int
}

// row prints label with one figure per sandbox ("" shows as "-").
func (t table) row(label string, figs []string, goal, result string) {
	cells := []string{label}
	for i := range t.cols {
		f := "-"
		if i < len(figs) && figs[i] != "" {
			f = figs[i]
		}
		cells = append(cells, f)
	}
	fmt.Fprintln(t.tw, strings.Join(append(cells, goal, result), "\t"))
}

// first prints a row with a figure in the first sandbox's column only.
func (t table) first(label, fig, goal, result string) { t.row(label, []string{fig}, goal, result) }

func report(w *os.File, o options, all []results, took time.Duration) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	t := table{tw: tw, cols: len(all)}
	fmt.Fprintf(tw, "\nStratus events bench (%s)\n", time.Now().Format("2006-01-02 15:04"))
	head, rule := []string{"measure"}, []string{"-------"}
	for _, r := range all {
		h := r.sandbox + ": " + r.driver
		if r.sandbox != "default" {
			h = "--sandbox " + r.sandbox
		}
		head, rule = append(head, h), append(rule, strings.Repeat("-", len(h)))
	}
	fmt.Fprintln(tw, strings.Join(append(head, "goal", "result"), "\t"))
	fmt.Fprintln(tw, strings.Join(append(rule, "----", "------"), "\t"))
	// each gives one figure per sandbox, "" where f has none.
	each := func(f func(r *results) string) []string {
		var v []string
		for i := range all {
			v = append(v, f(&all[i]))
		}
		return v
	}
	verdict := func(f func(r *results) (ok, has bool)) string {
		var v []string
		for i := range all {
			if ok, has := f(&all[i]); has {
				v = append(v, met(ok))
			}
		}
		return strings.Join(v, " / ")
	}
	r := all[0]
	if len(r.accept) > 0 {
		col := func(mode string) (rate, cpu float64) {
			var rs, cs []float64
			for _, fr := range r.floors {
				rs = append(rs, fr[mode].Rate)
				cs = append(cs, fr[mode].CPUus)
			}
			return benchkit.Median(rs), benchkit.Median(cs)
		}
		fs, fsCPU := col(modePlain)
		fsh, fshCPU := col(modeShaped)
		fid, fidCPU := col(modeMsgID)
		fhd, fhdCPU := col(modeHeader)
		ff, ffCPU := col(modeFuture)
		fa, faCPU := col("async")
		fh, fhCPU := col("http")
		var rates, ratios, p50, p99, cpu, ccpu []float64
		var failed int64
		for i, a := range r.accept {
			rates = append(rates, a.Rate)
			ratios = append(ratios, a.Rate/r.floors[i][modePlain].Rate)
			p50 = append(p50, float64(a.P50))
			p99 = append(p99, float64(a.P99))
			cpu = append(cpu, a.ServerCPUus)
			ccpu = append(ccpu, a.ClientCPUus)
			failed += a.Failed
		}
		acc, ratio := benchkit.Median(rates), benchkit.Median(ratios)
		t.first(fmt.Sprintf("floor: JetStream sync publish, %d publishers, %d B", o.conc, o.size), fmt.Sprintf("%.0f msg/s (%.0f µs CPU/msg)", fs, fsCPU), "", "")
		t.first(fmt.Sprintf("floor: JetStream PublishAsync, window %d, %d B", o.window, o.size), fmt.Sprintf("%.0f msg/s (%.2fx sync; %.0f µs CPU/msg)", fa, fa/fs, faCPU), "", "")
		t.first("  diag: sync, with a Nats-Msg-Id", fmt.Sprintf("%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)", fid, fid/fs, fidCPU), "", "")
		t.first("  diag: sync, with Enqueue's two headers", fmt.Sprintf("%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)", fhd, fhd/fs, fhdCPU), "", "")
		t.first("  diag: sync, shaped as Enqueue (headers, msg-id, work queue)", fmt.Sprintf("%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)", fsh, fsh/fs, fshCPU), "", "")
		t.first("  diag: sync via PublishAsync + wait for its ack", fmt.Sprintf("%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)", ff, ff/fs, ffCPU), "", "")
		if fh > 0 {
			t.first(fmt.Sprintf("  diag: jsfront (net/http handler + sync publish, own process), conc %d", o.conc), fmt.Sprintf("%.0f /s (%.2f of sync; %.0f µs its CPU/req)", fh, fh/fs, fhCPU), "", "")
		}
		t.first(fmt.Sprintf("accept: async invokes, conc %d, %d B events (202/s)", o.conc, o.size),
			fmt.Sprintf("%.0f /s (p50 %s, p99 %s; %d non-202)", acc, ms(time.Duration(benchkit.Median(p50))), ms(time.Duration(benchkit.Median(p99))), failed), "", "")
		t.first("  CPU per 202: server / load generator", fmt.Sprintf("%.0f µs / %.0f µs", benchkit.Median(cpu), benchkit.Median(ccpu)), "", "")
		t.first("accept / sync floor (median of per-round ratios)", fmt.Sprintf("%.2f", ratio), ">= 0.40", met(ratio >= 0.4))
		t.first("  accept / async floor", fmt.Sprintf("%.2f", acc/fa), "", "")
		if fh > 0 {
			t.first("  accept / http+publish floor", fmt.Sprintf("%.2f", acc/fh), "", "")
		}
		var per []string
		for i := range r.accept {
			per = append(per, fmt.Sprintf("%.0f/%.0f", r.accept[i].Rate, r.floors[i][modePlain].Rate))
		}
		t.first("  rounds (accept/sync floor)", strings.Join(per, ", "), "", "")
	}
	if slices.ContainsFunc(all, func(r results) bool { return r.topic != nil }) {
		t.row(fmt.Sprintf("topic publish -> invocation start, %d events", o.latEvents), each(func(r *results) string {
			if r.topic == nil {
				return ""
			}
			l := r.topic
			return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max))
		}), "p50 <= 2 ms", verdict(func(r *results) (bool, bool) {
			return r.topic != nil && r.topic.P50 <= 2*time.Millisecond, r.topic != nil
		}))
		t.row("  publish round trip (202)", each(func(r *results) string {
			if r.topic == nil {
				return ""
			}
			return fmt.Sprintf("p50 %s, p99 %s", ms(r.topic.Ack50), ms(r.topic.Ack99))
		}), "", "")
		t.row("  records not between their publish and the next", each(func(r *results) string {
			if r.topic == nil {
				return ""
			}
			return strconv.Itoa(r.topic.Ambiguous)
		}), "", "")
		t.row(fmt.Sprintf("async invoke -> invocation start, %d events", o.latEvents), each(func(r *results) string {
			if r.async == nil {
				return ""
			}
			a := r.async
			return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s", ms(a.P50), ms(a.P90), ms(a.P99), ms(a.Max))
		}), "", "")
		t.row("  async invoke round trip (202)", each(func(r *results) string {
			if r.async == nil {
				return ""
			}
			return fmt.Sprintf("p50 %s, p99 %s", ms(r.async.Ack50), ms(r.async.Ack99))
		}), "", "")
	}
	if slices.ContainsFunc(all, func(r results) bool { return r.drain != nil }) {
		dr := func(f func(d *drainResult) string) []string {
			return each(func(r *results) string {
				if r.drain == nil {
					return ""
				}
				return f(r.drain)
			})
		}
		mem := "default memory"
		if o.drainMemory > 0 {
			mem = fmt.Sprintf("%d MB", o.drainMemory)
		}
		t.row(fmt.Sprintf("drain: queue %d events (conc %d)", o.drainEvents, o.drainQConc), dr(func(d *drainResult) string {
			return fmt.Sprintf("%s, %.0f /s%s", ms(d.Enqueue), d.EnqueueRate, map[bool]string{true: " (overlapped the drain)", false: ""}[d.Overlap])
		}), "", "")
		t.row(fmt.Sprintf("drain: max conc %d, %d ms handler, %s, first start -> last end", o.drainConc, o.drainSleep, mem), dr(func(d *drainResult) string {
			return fmt.Sprintf("%.0f events/s (%.2f s)", d.Rate, d.Span.Seconds())
		}), ">= 5000/s", verdict(func(r *results) (bool, bool) { return r.drain != nil && r.drain.Rate >= 5000, r.drain != nil }))
		t.row("  slot time per event / mean recorded duration", dr(func(d *drainResult) string {
			return fmt.Sprintf("%.2f ms / %.2f ms", d.SlotMs, d.MeanDurMs)
		}), "", "")
		t.row("  gap between invocations on one instance", dr(func(d *drainResult) string {
			return fmt.Sprintf("p50 %s, p90 %s, p99 %s (%d instances)", ms(d.GapP50), ms(d.GapP90), ms(d.GapP99), d.Instances)
		}), "", "")
		t.row("  CPU per event: server / server + instances", dr(func(d *drainResult) string {
			return fmt.Sprintf("%.0f µs / %.0f µs", d.ServerCPUus, d.TreeCPUus)
		}), "", "")
		t.row("drain: distinct request IDs with a success record", dr(func(d *drainResult) string {
			return fmt.Sprintf("%d of %d (lost %d, failed %d, duplicates %d)", d.Distinct, d.Events, d.Lost, d.Failed, d.Duplicates)
		}), "none lost", verdict(func(r *results) (bool, bool) {
			return r.drain != nil && r.drain.Lost == 0 && r.drain.Distinct == r.drain.Events, r.drain != nil
		}))
	}
	for i, m := range r.rss {
		t.row("server VmRSS "+m[0].(string), each(func(r *results) string {
			if i >= len(r.rss) || r.rss[i][0] != m[0] {
				return ""
			}
			return fmt.Sprintf("%s (peak %s)", mb(r.rss[i][1].(int64)), mb(r.rss[i][2].(int64)))
		}), "", "")
	}
	for i, l := range r.load {
		t.row("CPU during "+l.part+": bench processes / other load", each(func(r *results) string {
			if i >= len(r.load) || r.load[i].part != l.part {
				return ""
			}
			l := r.load[i]
			return fmt.Sprintf("%.2f / %.2f cores (loadavg %s)", l.ours, l.other, l.loadavg)
		}), "", "")
	}
	t.first("bench took", took.Round(time.Second).String(), "", "")
	tw.Flush()
}
