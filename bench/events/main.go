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
// Run it from the module root: go run ./bench/events [flags]. Everything
// listens on 127.0.0.1 or in-process; every loop is bounded by a count, a
// duration or a timeout; a default run takes about 2.5 minutes.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
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
	stratusBin  string
	perfDir     string
	keep        bool
	noHTTPFloor bool
}

func main() { os.Exit(run()) }

func run() int {
	var o options
	var sections string
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
	flag.StringVar(&o.stratusBin, "stratus", "", "use this stratus binary instead of building ./cmd/stratus")
	flag.StringVar(&o.perfDir, "perf", "", "record `perf` CPU profiles of the server (accept round 1, the drain, the topic latency run) into this dir")
	flag.BoolVar(&o.noHTTPFloor, "no-http-floor", false, "skip the diagnostic floor ./bench/events/jsfront (net/http + JetStream publish)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (binaries, data, server log)")
	flag.Parse()
	o.sections = map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		o.sections[strings.TrimSpace(s)] = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/events:", err)
		return 1
	}
	return 0
}

type results struct {
	floors       []map[string]floorResult // per round, by mode (plain, shaped, future, async, http)
	accept       []acceptResult
	topic, async *latencyResult
	drain        *drainResult
	rss          [][3]any // phase, VmRSS, VmHWM
	load         []loadSample
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
	d := procCPUAll(os.Getpid())
	for _, p := range m.pids() {
		d += treeCPU(p) + procCPUAll(p) - procCPU(p)
	}
	return d
}

func (m *loadMeter) mark() { m.at, m.busy, m.ourCPU = time.Now(), machineBusy(), m.ours() }

func (m *loadMeter) sample(part string) loadSample {
	el := time.Since(m.at).Seconds()
	busy, ours := machineBusy()-m.busy, m.ours()-m.ourCPU
	la, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(la))
	if len(f) > 3 {
		f = f[:3]
	}
	m.mark()
	return loadSample{part: part, ours: ours.Seconds() / el, other: max(busy-ours, 0).Seconds() / el, loadavg: strings.Join(f, " ")}
}

func bench(ctx context.Context, o options) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "stratus-bench-events-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "work dir:", work)
	} else {
		defer os.RemoveAll(work)
	}
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
		if err := goBuild(ctx, root, "./cmd/stratus", bin); err != nil {
			return err
		}
	}
	codeDir := filepath.Join(work, "goecho")
	if err := goBuild(ctx, root, "./e2e/testdata/goecho", filepath.Join(codeDir, "bootstrap")); err != nil {
		return err
	}

	s, err := startServer(ctx, bin, filepath.Join(work, "data"), filepath.Join(work, "server.log"))
	if err != nil {
		return err
	}
	defer s.stop()
	var r results
	mem := func(phase string) {
		rss, hwm := memory(s.pid())
		r.rss = append(r.rss, [3]any{phase, rss, hwm})
	}
	mem("started")
	var front *server
	lm := &loadMeter{pids: func() []int {
		p := []int{s.pid()}
		if front != nil {
			p = append(p, front.pid())
		}
		return p
	}}
	lm.mark()
	prof := func(name string) func() { return func() {} }
	if o.perfDir != "" {
		prof = func(name string) func() { return startPerf(s.pid(), filepath.Join(o.perfDir, name+".perf.data")) }
	}

	if o.sections["latency"] {
		fmt.Fprintln(os.Stderr, "latency ...")
		if err := latencySetup(ctx, s, codeDir, o.latWarm, o.latGap); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		done := prof("topic-latency")
		tl, err := topicLatency(ctx, s, o.latEvents, o.latGap)
		done()
		if err != nil {
			return err
		}
		r.topic = &tl
		al, err := asyncLatency(ctx, s, o.latEvents, o.latGap)
		if err != nil {
			return err
		}
		r.async = &al
		mem("after latency")
		r.load = append(r.load, lm.sample("latency"))
	}
	if o.sections["drain"] {
		fmt.Fprintln(os.Stderr, "drain ...")
		d, err := drainRun(ctx, s, codeDir, o.drainEvents, o.drainConc, o.drainQConc, o.drainSleep, o.drainHold, o.drainWait, prof)
		if err != nil {
			return err
		}
		r.drain = &d
		mem("after drain")
		r.load = append(r.load, lm.sample("drain"))
	}
	if o.sections["accept"] {
		fmt.Fprintln(os.Stderr, "floor and accept ...")
		f, err := openFloor(ctx, filepath.Join(work, "floor"), o.window)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		defer f.close()
		if err := s.deploy(ctx, "accept", codeDir, "--max-concurrency", "1"); err != nil {
			return err
		}
		payload := make([]byte, o.size)
		for i := range payload {
			payload[i] = 'a' + byte(i%26)
		}
		event := paddedEvent(`"sleep":`+strconv.Itoa(o.acceptSleep), o.size)
		if !o.noHTTPFloor {
			fbin := filepath.Join(work, "jsfront")
			if err := goBuild(ctx, root, "./bench/events/jsfront", fbin); err != nil {
				return err
			}
			front, err = startProc(ctx, filepath.Join(work, "jsfront.log"), fbin, "127.0.0.1:0", filepath.Join(work, "jsfront-store"))
			if err != nil {
				return err
			}
			defer front.stop()
		}
		lm.mark()
		for round := range o.rounds {
			fr := map[string]floorResult{}
			modes := []string{modePlain, modeMsgID, modeHeader, modeShaped, modeFuture}
			// Rotate the order, so no mode always runs first in a round.
			k := round % len(modes)
			modes = append(modes[k:], modes[:k]...)
			for _, mode := range modes {
				settle(s.pid())
				v, err := f.syncRun(ctx, o.conc, o.floorDur, payload, mode)
				if err != nil {
					return fmt.Errorf("floor sync %s: %w", mode, err)
				}
				fr[mode] = v
				f.purge(ctx)
			}
			settle(s.pid())
			v, err := f.asyncRun(ctx, o.floorDur, payload)
			if err != nil {
				return fmt.Errorf("floor async: %w", err)
			}
			fr["async"] = v
			f.purge(ctx)
			if !o.noHTTPFloor {
				settle(s.pid())
				h := postRun(ctx, front.hc, front.base+"/", event, o.conc, o.acceptWarm, o.floorDur, front.pid())
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
			settle(s.pid())
			a := acceptRun(ctx, s, "accept", event, o.conc, warm, o.acceptDur)
			done()
			r.accept = append(r.accept, a)
			fmt.Fprintf(os.Stderr, "  round %d: floor sync %.0f/s shaped %.0f/s future %.0f/s async %.0f/s http %.0f/s; accept %.0f/s (%d failed)\n",
				round+1, fr[modePlain].Rate, fr[modeShaped].Rate, fr[modeFuture].Rate, fr["async"].Rate, fr["http"].Rate, a.Rate, a.Failed)
		}
		mem("after accept")
		settle(s.pid())
		mem("after accept, settled")
		r.load = append(r.load, lm.sample("floor + accept"))
	}
	report(os.Stdout, o, r, time.Since(t0))
	return nil
}

// settle waits, for up to 10 s, until the server has used under 10% of a
// core for 250 ms: after an accept run it still stores the queued states
// for a while, which would slow the run after it.
func settle(pid int) {
	for range 40 {
		c0 := procCPU(pid)
		time.Sleep(250 * time.Millisecond)
		if procCPU(pid)-c0 < 25*time.Millisecond {
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

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func mb(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT MET"
}

func report(w *os.File, o options, r results, took time.Duration) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "\nStratus events bench (%s)\n", time.Now().Format("2006-01-02 15:04"))
	fmt.Fprintln(tw, "measure\tfigure\tgoal\tresult")
	fmt.Fprintln(tw, "-------\t------\t----\t------")
	if len(r.accept) > 0 {
		col := func(mode string) (rate, cpu float64) {
			var rs, cs []float64
			for _, fr := range r.floors {
				rs = append(rs, fr[mode].Rate)
				cs = append(cs, fr[mode].CPUus)
			}
			return median(rs), median(cs)
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
		acc, ratio := median(rates), median(ratios)
		fmt.Fprintf(tw, "floor: JetStream sync publish, %d publishers, %d B\t%.0f msg/s (%.0f µs CPU/msg)\t\t\n", o.conc, o.size, fs, fsCPU)
		fmt.Fprintf(tw, "floor: JetStream PublishAsync, window %d, %d B\t%.0f msg/s (%.2fx sync; %.0f µs CPU/msg)\t\t\n", o.window, o.size, fa, fa/fs, faCPU)
		fmt.Fprintf(tw, "  diag: sync, with a Nats-Msg-Id\t%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)\t\t\n", fid, fid/fs, fidCPU)
		fmt.Fprintf(tw, "  diag: sync, with Enqueue's two headers\t%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)\t\t\n", fhd, fhd/fs, fhdCPU)
		fmt.Fprintf(tw, "  diag: sync, shaped as Enqueue (headers, msg-id, work queue)\t%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)\t\t\n", fsh, fsh/fs, fshCPU)
		fmt.Fprintf(tw, "  diag: sync via PublishAsync + wait for its ack\t%.0f msg/s (%.2f of sync; %.0f µs CPU/msg)\t\t\n", ff, ff/fs, ffCPU)
		if fh > 0 {
			fmt.Fprintf(tw, "  diag: jsfront (net/http handler + sync publish, own process), conc %d\t%.0f /s (%.2f of sync; %.0f µs its CPU/req)\t\t\n", o.conc, fh, fh/fs, fhCPU)
		}
		fmt.Fprintf(tw, "accept: async invokes, conc %d, %d B events (202/s)\t%.0f /s (p50 %s, p99 %s; %d non-202)\t\t\n",
			o.conc, o.size, acc, ms(time.Duration(median(p50))), ms(time.Duration(median(p99))), failed)
		fmt.Fprintf(tw, "  CPU per 202: server / load generator\t%.0f µs / %.0f µs\t\t\n", median(cpu), median(ccpu))
		fmt.Fprintf(tw, "accept / sync floor (median of per-round ratios)\t%.2f\t>= 0.40\t%s\n", ratio, met(ratio >= 0.4))
		fmt.Fprintf(tw, "  accept / async floor\t%.2f\t\t\n", acc/fa)
		if fh > 0 {
			fmt.Fprintf(tw, "  accept / http+publish floor\t%.2f\t\t\n", acc/fh)
		}
		var per []string
		for i := range r.accept {
			per = append(per, fmt.Sprintf("%.0f/%.0f", r.accept[i].Rate, r.floors[i][modePlain].Rate))
		}
		fmt.Fprintf(tw, "  rounds (accept/sync floor)\t%s\t\t\n", strings.Join(per, ", "))
	}
	if r.topic != nil {
		t := r.topic
		fmt.Fprintf(tw, "topic publish -> invocation start, %d events\tp50 %s, p90 %s, p99 %s, max %s\tp50 <= 2 ms\t%s\n",
			t.N, ms(t.P50), ms(t.P90), ms(t.P99), ms(t.Max), met(t.P50 <= 2*time.Millisecond))
		fmt.Fprintf(tw, "  publish round trip (202)\tp50 %s, p99 %s\t\t\n", ms(t.Ack50), ms(t.Ack99))
		if t.Ambiguous > 0 {
			fmt.Fprintf(tw, "  records not between their publish and the next\t%d\t\t\n", t.Ambiguous)
		}
	}
	if r.async != nil {
		a := r.async
		fmt.Fprintf(tw, "async invoke -> invocation start, %d events\tp50 %s, p90 %s, p99 %s, max %s\t\t\n",
			a.N, ms(a.P50), ms(a.P90), ms(a.P99), ms(a.Max))
		fmt.Fprintf(tw, "  async invoke round trip (202)\tp50 %s, p99 %s\t\t\n", ms(a.Ack50), ms(a.Ack99))
	}
	if d := r.drain; d != nil {
		fmt.Fprintf(tw, "drain: queue %d events (conc %d)\t%s, %.0f /s%s\t\t\n", d.Events, o.drainQConc, ms(d.Enqueue), d.EnqueueRate,
			map[bool]string{true: " (overlapped the drain)", false: ""}[d.Overlap])
		fmt.Fprintf(tw, "drain: max conc %d, %d ms handler, first start -> last end\t%.0f events/s (%.2f s)\t\t\n",
			o.drainConc, o.drainSleep, d.Rate, d.Span.Seconds())
		fmt.Fprintf(tw, "  slot time per event / mean recorded duration\t%.2f ms / %.2f ms\t\t\n", d.SlotMs, d.MeanDurMs)
		fmt.Fprintf(tw, "  gap between invocations on one instance (%d instances)\tp50 %s, p90 %s, p99 %s\t\t\n", d.Instances, ms(d.GapP50), ms(d.GapP90), ms(d.GapP99))
		fmt.Fprintf(tw, "  CPU per event: server / server + instances\t%.0f µs / %.0f µs\t\t\n", d.ServerCPUus, d.TreeCPUus)
		fmt.Fprintf(tw, "drain: distinct request IDs with a success record\t%d of %d (lost %d, failed %d, duplicates %d)\tnone lost\t%s\n",
			d.Distinct, d.Events, d.Lost, d.Failed, d.Duplicates, met(d.Lost == 0 && d.Distinct == d.Events))
	}
	for _, m := range r.rss {
		fmt.Fprintf(tw, "server VmRSS %s\t%s (peak %s)\t\t\n", m[0], mb(m[1].(int64)), mb(m[2].(int64)))
	}
	for _, l := range r.load {
		fmt.Fprintf(tw, "CPU during %s: bench processes / other load\t%.2f / %.2f cores (loadavg %s)\t\t\n", l.part, l.ours, l.other, l.loadavg)
	}
	fmt.Fprintf(tw, "bench took\t%s\t\t\n", took.Round(time.Second))
	tw.Flush()
}
