package meter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stratus-run/stratus"
)

// The usual places of the host's counters.
const (
	PowercapRoot = "/sys/class/powercap"
	ProcStat     = "/proc/stat"
)

// userHZ is the unit of /proc/stat's CPU times (USER_HZ, sysconf's
// _SC_CLK_TCK): 100 on every Linux architecture Stratus runs on.
const userHZ = 100

// packageDomain is a RAPL package domain's directory name; its
// subdomains (core, uncore, dram) are intel-rapl:N:M and are not read:
// the package's counter already holds core and uncore.
var packageDomain = regexp.MustCompile(`^intel-rapl:[0-9]+$`)

// minRateCPUSeconds is the host CPU time Power must have measured
// before it reports a rate: below it, a few ticks of /proc/stat's
// resolution (1/100 s) would swing the ratio.
const minRateCPUSeconds = 1.0

// Power measures the host's CPU energy with RAPL (Linux powercap) and
// its CPU time (/proc/stat), and keeps the joules per CPU-second since
// its first sample: the energy of every interval measured over the CPU
// time of the same intervals. This is Kepler's way of sharing a host's
// energy among its workloads by their share of its CPU time, averaged
// over the server's life so that an idle interval (few CPU-seconds, the
// package's idle power) does not swing the rate applied to a month of
// records. It is safe for concurrent use.
type Power struct {
	procStat string
	domains  []domain

	mu      sync.Mutex
	sampled bool      // prev* hold a reading
	at      time.Time // of the last reading
	prevUJ  []uint64  // per domain
	prevCPU uint64    // busy ticks
	joules  float64   // package energy over the intervals measured
	cpuS    float64   // host CPU-seconds over the same intervals
	err     error     // of the last sample
}

type domain struct {
	name     string // e.g. intel-rapl:0
	energy   string // path of energy_uj
	maxRange uint64 // max_energy_range_uj; 0 when unknown
}

// OpenPower finds the RAPL package domains under powercapRoot
// (intel-rapl:N, whose energy_uj is readable) and checks that procStat
// gives the host's CPU time. With no readable domain, the error wraps
// stratus.ErrNotFound: the meter then keeps to its model.
func OpenPower(powercapRoot, procStat string) (*Power, error) {
	entries, err := os.ReadDir(powercapRoot)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("RAPL: %s: %w", powercapRoot, stratus.ErrNotFound)
		}
		return nil, fmt.Errorf("RAPL: %w", err)
	}
	p := &Power{procStat: procStat}
	var firstErr error
	for _, e := range entries {
		if !packageDomain.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(powercapRoot, e.Name())
		d := domain{name: e.Name(), energy: filepath.Join(dir, "energy_uj")}
		if _, err := readUint(d.energy); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if v, err := readUint(filepath.Join(dir, "max_energy_range_uj")); err == nil {
			d.maxRange = v
		}
		p.domains = append(p.domains, d)
	}
	if len(p.domains) == 0 {
		if firstErr != nil { // e.g. energy_uj is root's only (since Linux 5.10)
			return nil, fmt.Errorf("RAPL: no readable package domain under %s (%v): %w", powercapRoot, firstErr, stratus.ErrNotFound)
		}
		return nil, fmt.Errorf("RAPL: no package domain under %s: %w", powercapRoot, stratus.ErrNotFound)
	}
	sort.Slice(p.domains, func(i, j int) bool { return p.domains[i].name < p.domains[j].name })
	if _, err := readBusyTicks(procStat); err != nil {
		return nil, fmt.Errorf("RAPL: host CPU time: %w", err)
	}
	return p, nil
}

// Domains are the names of the package domains p reads.
func (p *Power) Domains() []string {
	s := make([]string, len(p.domains))
	for i, d := range p.domains {
		s[i] = d.name
	}
	return s
}

// Sample reads the counters at now. From the second sample on, it adds
// the joules the packages used, and the CPU-seconds the host used, over
// the interval since the previous reading to its totals; an interval in
// which the host used no CPU time adds its joules alone (the packages'
// idle power goes to the work around it). An interval in which a
// counter went back with no known range, or the host's CPU time went
// back, is left out of both totals. A failed read is kept for Err and
// changes nothing else: the next good reading's interval starts at the
// last good one. A sample not after the last reading is ignored.
func (p *Power) Sample(now time.Time) {
	uj := make([]uint64, len(p.domains))
	var err error
	for i, d := range p.domains {
		if uj[i], err = readUint(d.energy); err != nil {
			break
		}
	}
	var busy uint64
	if err == nil {
		busy, err = readBusyTicks(p.procStat)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
	if err != nil {
		return
	}
	if p.sampled && !now.After(p.at) {
		return
	}
	if p.sampled {
		p.add(uj, busy)
	}
	p.sampled, p.at, p.prevUJ, p.prevCPU = true, now, uj, busy
}

// add adds the interval that ends with uj and busy to the totals.
func (p *Power) add(uj []uint64, busy uint64) {
	var joules float64
	for i, d := range p.domains {
		cur, prev := uj[i], p.prevUJ[i]
		switch {
		case cur >= prev:
			joules += float64(cur-prev) / 1e6
		case d.maxRange > 0 && prev <= d.maxRange:
			// The counter wrapped at max_energy_range_uj.
			joules += float64(d.maxRange-prev+cur) / 1e6
		default:
			return // reset, or no known range: skip the interval
		}
	}
	if busy < p.prevCPU {
		return // the host's CPU time went back: skip the interval
	}
	p.joules += joules
	p.cpuS += float64(busy-p.prevCPU) / userHZ
}

// Rate is the joules per CPU-second since the first sample (the
// packages' energy over every interval measured, divided by the host's
// CPU-seconds over the same intervals), and whether there is one yet:
// there is once at least one CPU-second has been measured.
func (p *Power) Rate() (joulesPerCPUSecond float64, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cpuS < minRateCPUSeconds {
		return 0, false
	}
	return p.joules / p.cpuS, true
}

// Measured is what the rate is made of: the packages' joules and the
// host's CPU-seconds over every interval measured since the first
// sample.
func (p *Power) Measured() (joules, cpuSeconds float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joules, p.cpuS
}

// Err is the error of the last sample, if it failed.
func (p *Power) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readBusyTicks returns the host's busy CPU time in USER_HZ ticks from
// the "cpu" line of a /proc/stat: user + nice + system + irq + softirq
// (guest time is inside user and nice already; idle, iowait and steal
// are not this host's work).
func readBusyTicks(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "cpu" {
			continue
		}
		if len(fields) < 8 {
			return 0, fmt.Errorf("%s: short cpu line", path)
		}
		var busy uint64
		for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
			v, err := strconv.ParseUint(fields[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: cpu line: %w", path, err)
			}
			busy += v
		}
		return busy, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no cpu line", path)
}
