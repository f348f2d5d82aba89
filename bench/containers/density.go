package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// densityResult is what N replicas of one service cost.
type densityResult struct {
	Replicas int
	ReadyIn  time.Duration // deploy until all ready (the deploy call returns then)
	// Deploy until the first and the last replica's program (gosvc)
	// was seen running, polled every 250 ms (0: not seen).
	FirstStartedIn, AllStartedIn time.Duration
	ServerBefore                 benchkit.Mem // no service
	ServerAfter                  benchkit.Mem // N ready replicas, idle
	ServerRemoved                benchkit.Mem // after the service was removed
	// Threads and open files of the server.
	ThreadsBefore, ThreadsAfter int
	FDsBefore, FDsAfter         int
	// Helpers are the server's descendants outside the containers'
	// cgroups, Inside those in them; by command name.
	Helpers, Inside map[string]*procGroup
	// Containers sums the containers' cgroups.
	Containers     cgroupMemory
	ContainerCount int
	// HostUsedDelta is MemTotal − MemAvailable after minus before: what
	// the host as a whole lost (kernel memory included; other work on
	// the machine moves it too).
	HostUsedDelta int64
	// PerReplica is Stratus's memory per replica beyond the container's
	// own: (the server's RssAnon delta + the PSS of the processes outside
	// the containers) / N. PerReplicaRSS counts RSS instead (shared pages
	// in full for every process: an upper bound).
	PerReplica, PerReplicaRSS int64
	Answered                  int // of 20 GETs through the gateway after deploy
	RemovedIn                 time.Duration
	AfterRemove               leftovers
	Notes                     []string
}

// procGroup sums processes with the same command name.
type procGroup struct {
	Count         int
	RSS, PSS, USS int64
}

// density deploys one service with n replicas on a fresh server and
// measures what they cost beyond the containers' own memory.
func density(ctx context.Context, o options, w *work) (r *densityResult, end serverEnd, err error) {
	s, err := startStratus(ctx, w.stratus, filepath.Join(w.dir, "density-data"), filepath.Join(w.dir, "density-server.log"),
		"--max-replicas", "1000", "--service-ready-timeout", "5m")
	if err != nil {
		return nil, serverEnd{}, err
	}
	defer func() {
		end.Name = "density server"
		end.StopTime, end.Left = s.stop()
	}()
	r, err = densityOn(ctx, o, w, s)
	return r, end, err
}

func densityOn(ctx context.Context, o options, w *work, s *stratusServer) (*densityResult, error) {
	n := o.replicas
	r := &densityResult{Replicas: n, Helpers: map[string]*procGroup{}, Inside: map[string]*procGroup{}}
	if err := s.importImage(ctx, w.image); err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	var err error
	if r.ServerBefore, err = benchkit.ProcMem(s.PID()); err != nil {
		return nil, err
	}
	r.ThreadsBefore, r.FDsBefore = threadsFDs(s.PID())
	hostBefore := hostUsed()

	benchkit.Logf("density: deploying one service with %d replicas", n)
	start := time.Now()
	stopPoll := make(chan struct{})
	polled := make(chan [2]time.Duration, 1)
	go func() {
		// The API shows a new service only once its deploy is done; the
		// replicas' programs (gosvc processes under the server) show
		// the progress. Walking the process tree costs CPU, so not too
		// often.
		var first, all time.Duration
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		lastLog := time.Now()
		for {
			select {
			case <-stopPoll:
				polled <- [2]time.Duration{first, all}
				return
			case <-t.C:
			}
			started := 0
			for _, pid := range benchkit.Descendants(s.PID()) {
				if benchkit.Comm(pid) == "gosvc" {
					started++
				}
			}
			if first == 0 && started > 0 {
				first = time.Since(start)
			}
			if all == 0 && started >= n {
				all = time.Since(start)
			}
			if time.Since(lastLog) > 5*time.Second {
				benchkit.Logf("density: %d/%d replica programs started", started, n)
				lastLog = time.Now()
			}
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
	_, err = s.deployService(dctx, "dense", stratus.ServiceConfig{MinScale: n, MaxScale: n, Concurrency: stratus.DefaultServiceConcurrency})
	cancel()
	r.ReadyIn = time.Since(start)
	close(stopPoll)
	p := <-polled
	r.FirstStartedIn, r.AllStartedIn = p[0], p[1]
	if err != nil {
		return r, err
	}
	benchkit.Logf("density: %d replicas ready in %s; settling 3s", n, r.ReadyIn.Round(time.Millisecond))
	time.Sleep(3 * time.Second)

	if r.ServerAfter, err = benchkit.ProcMem(s.PID()); err != nil {
		return r, err
	}
	r.ThreadsAfter, r.FDsAfter = threadsFDs(s.PID())
	r.HostUsedDelta = hostUsed() - hostBefore
	for _, pid := range benchkit.Descendants(s.PID()) {
		m, err := benchkit.ProcMem(pid)
		if err != nil {
			continue // ended meanwhile
		}
		in := false
		for _, cg := range benchkit.Cgroups(pid) {
			if strings.HasPrefix(cg, s.cgPrefix) {
				in = true
			}
		}
		groups := r.Helpers
		if in {
			groups = r.Inside
		}
		c := benchkit.Comm(pid)
		g := groups[c]
		if g == nil {
			g = &procGroup{}
			groups[c] = g
		}
		g.Count++
		g.RSS += m.RSS
		g.PSS += m.PSS
		g.USS += m.USS
	}
	for _, cg := range containerCgroups(s.cgPrefix) {
		m := readCgroupMemory(cg)
		r.ContainerCount++
		r.Containers.Usage += m.Usage
		r.Containers.RSS += m.RSS
		r.Containers.Cache += m.Cache
		r.Containers.Kernel += m.Kernel
	}
	var help procGroup
	for _, g := range r.Helpers {
		help.RSS += g.RSS
		help.PSS += g.PSS
		help.USS += g.USS
	}
	r.PerReplicaRSS = (r.ServerAfter.RSS - r.ServerBefore.RSS + help.RSS) / int64(n)
	r.PerReplica = (r.ServerAfter.Anon - r.ServerBefore.Anon + help.PSS) / int64(n)

	// The replicas answer through the gateway.
	c := benchkit.NewTransport()
	for range 20 {
		if err := benchkit.GetOK(ctx, clientOf(c), s.URL+"/svc/dense/", authHeader()); err == nil {
			r.Answered++
		}
	}
	c.CloseIdleConnections()

	benchkit.Logf("density: removing the service")
	rm := time.Now()
	if err := s.Client.RemoveService(ctx, "dense"); err != nil {
		return r, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if len(benchkit.Descendants(s.PID())) == 0 && len(containerCgroups(s.cgPrefix)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			r.Notes = append(r.Notes, "replicas still there 3 minutes after the service was removed")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.RemovedIn = time.Since(rm)
	r.AfterRemove = s.leftovers(false)
	if kids := benchkit.Descendants(s.PID()); len(kids) > 0 {
		r.AfterRemove.Problems = append(r.AfterRemove.Problems, fmt.Sprintf("%d processes under the server", len(kids)))
	}
	time.Sleep(time.Second)
	r.ServerRemoved, _ = benchkit.ProcMem(s.PID())
	return r, nil
}

// threadsFDs counts the threads and open files of pid.
func threadsFDs(pid int) (threads, fds int) {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	ents, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return threads, len(ents)
}

// hostUsed is MemTotal − MemAvailable of the host, in bytes.
func hostUsed() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	return benchkit.KBField(string(b), "MemTotal") - benchkit.KBField(string(b), "MemAvailable")
}

// groupNames lists the names of groups, the largest RSS first.
func groupNames(groups map[string]*procGroup) []string {
	var names []string
	for k := range groups {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return int(groups[b].RSS - groups[a].RSS) })
	return names
}
