package meter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// fakeHost makes a powercap tree with the given package domains (and
// energy_uj values) and a /proc/stat whose busy time is busy ticks, in
// a temporary directory. Each package gets a core subdomain
// (intel-rapl:N:0) that must not be read, and the tree a
// non-RAPL zone.
func fakeHost(t *testing.T, packages map[string]uint64, busy uint64) (root, stat string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "powercap")
	for name, uj := range packages {
		write(t, filepath.Join(root, name, "name"), "package-0")
		write(t, filepath.Join(root, name, "max_energy_range_uj"), "262143328850")
		setEnergy(t, root, name, uj)
		// The subdomain appears twice, as in sysfs: inside the package
		// and as a link at the top.
		for _, sub := range []string{filepath.Join(root, name, name+":0"), filepath.Join(root, name+":0")} {
			write(t, filepath.Join(sub, "name"), "core")
			write(t, filepath.Join(sub, "energy_uj"), "999999999999")
		}
	}
	write(t, filepath.Join(root, "dtpm", "name"), "dtpm")
	stat = filepath.Join(dir, "stat")
	setTicks(t, stat, busy)
	return root, stat
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func setEnergy(t *testing.T, root, domain string, uj uint64) {
	t.Helper()
	write(t, filepath.Join(root, domain, "energy_uj"), fmt.Sprint(uj))
}

// setTicks writes a /proc/stat whose busy time (user + nice + system +
// irq + softirq) is busy ticks; idle, iowait and steal are large and
// change to show they are not counted.
func setTicks(t *testing.T, stat string, busy uint64) {
	t.Helper()
	user, nice, system, irq := busy/2, busy/10, busy/5, busy/20
	softirq := busy - user - nice - system - irq
	idle := 5_000_000 + busy*7
	write(t, stat, fmt.Sprintf("cpu  %d %d %d %d %d %d %d %d 0 0\n"+
		"cpu0 1 2 3 4 5 6 7 8 0 0\nintr 12345\nctxt 999\nbtime 1700000000\n",
		user, nice, system, idle, busy*3, irq, softirq, busy*11))
}

func TestOpenPowerNotFound(t *testing.T) {
	dir := t.TempDir()
	stat := filepath.Join(dir, "stat")
	setTicks(t, stat, 0)

	// No tree at all (this machine), an empty one, one with only
	// subdomains and other zones, and one whose counters cannot be read.
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	subsOnly := filepath.Join(dir, "subs")
	write(t, filepath.Join(subsOnly, "intel-rapl:0:0", "energy_uj"), "5")
	write(t, filepath.Join(subsOnly, "dtpm", "name"), "dtpm")
	unreadable := filepath.Join(dir, "unreadable")
	os.MkdirAll(filepath.Join(unreadable, "intel-rapl:0", "energy_uj"), 0o755) // a directory: not readable as a file

	for _, root := range []string{filepath.Join(dir, "missing"), empty, subsOnly, unreadable} {
		_, err := OpenPower(root, stat)
		if !errors.Is(err, stratus.ErrNotFound) {
			t.Errorf("OpenPower(%s) = %v, want ErrNotFound", filepath.Base(root), err)
		}
	}

	// The real machine: no powercap here, or none readable.
	if _, err := OpenPower(PowercapRoot, ProcStat); err != nil && !errors.Is(err, stratus.ErrNotFound) {
		t.Logf("OpenPower on this host: %v", err)
	}
}

func TestOpenPowerBadStat(t *testing.T) {
	root, _ := fakeHost(t, map[string]uint64{"intel-rapl:0": 1}, 0)
	_, err := OpenPower(root, filepath.Join(t.TempDir(), "no-stat"))
	if err == nil || errors.Is(err, stratus.ErrNotFound) {
		t.Errorf("OpenPower with no /proc/stat = %v, want an error other than ErrNotFound", err)
	}
}

func TestPowerSample(t *testing.T) {
	const maxRange = 262143328850 // fakeHost's max_energy_range_uj
	root, stat := fakeHost(t, map[string]uint64{"intel-rapl:0": maxRange - 5_000_000, "intel-rapl:1": 20_000_000}, 500)
	p, err := OpenPower(root, stat)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(p.Domains()); got != "[intel-rapl:0 intel-rapl:1]" {
		t.Fatalf("Domains = %s", got)
	}
	if _, ok := p.Rate(); ok {
		t.Fatal("a rate before any sample")
	}
	t0 := time.Unix(1000, 0)
	p.Sample(t0)
	if _, ok := p.Rate(); ok {
		t.Fatal("a rate after one sample")
	}

	// step sets the counters and samples at s seconds after t0; then
	// the totals must be joules and cpuS, and the rate joules/cpuS once
	// cpuS reaches a CPU-second.
	step := func(what string, s int, uj0, uj1, busy uint64, joules, cpuS float64) {
		t.Helper()
		setEnergy(t, root, "intel-rapl:0", uj0)
		setEnergy(t, root, "intel-rapl:1", uj1)
		setTicks(t, stat, busy)
		p.Sample(t0.Add(time.Duration(s) * time.Second))
		if err := p.Err(); err != nil {
			t.Fatalf("%s: Err = %v", what, err)
		}
		if gotJ, gotS := p.Measured(); !near(gotJ, joules) || !near(gotS, cpuS) {
			t.Fatalf("%s: Measured = %v J, %v CPU-s; want %v J, %v CPU-s", what, gotJ, gotS, joules, cpuS)
		}
		rate, ok := p.Rate()
		if cpuS < 1 {
			if ok {
				t.Fatalf("%s: Rate = %v with %v CPU-s measured, want none below 1 CPU-s", what, rate, cpuS)
			}
			return
		}
		if !ok || !near(rate, joules/cpuS) {
			t.Fatalf("%s: Rate = %v, %v; want %v", what, rate, ok, joules/cpuS)
		}
	}

	// 2 J + 3 J over 0.5 s of CPU (50 ticks): below a CPU-second, no
	// rate yet.
	step("half a CPU-second", 1, maxRange-3_000_000, 23_000_000, 550, 5, 0.5)
	// Package 0 wraps at max_energy_range_uj: from maxRange-3,000,000
	// to 3,000,000 is 6 J; package 1 uses 29 J; 3.5 s of CPU. Since the
	// first sample: 40 J over 4 CPU-s, 10 J/CPU-s.
	step("a wrap", 2, 3_000_000, 52_000_000, 900, 40, 4)

	// A sample not after the last one is ignored: the next interval
	// starts at the reading at 2 s.
	setEnergy(t, root, "intel-rapl:1", 99_000_000)
	setTicks(t, stat, 1000)
	p.Sample(t0.Add(2 * time.Second))
	if j, s := p.Measured(); !near(j, 40) || !near(s, 4) {
		t.Fatalf("Measured after a sample at the same time = %v J, %v CPU-s", j, s)
	}

	// An idle interval: 5 J of idle power over 0.02 CPU-s (2 ticks).
	// Alone it would be 250 J/CPU-s; it moves the rate since the first
	// sample from 10 to 45/4.02 ≈ 11.2 J/CPU-s.
	step("an idle interval", 3, 3_000_000, 57_000_000, 902, 45, 4.02)
	if rate, _ := p.Rate(); rate > 12 {
		t.Fatalf("Rate after an idle interval = %v, want it near 10", rate)
	}
	// No CPU time at all: the joules still count.
	step("no CPU time", 4, 3_000_000, 62_000_000, 902, 50, 4.02)

	// A failed read is kept for Err and changes nothing else.
	os.Remove(filepath.Join(root, "intel-rapl:1", "energy_uj"))
	p.Sample(t0.Add(5 * time.Second))
	if p.Err() == nil {
		t.Error("Err = nil after a failed read")
	}
	if j, s := p.Measured(); !near(j, 50) || !near(s, 4.02) {
		t.Fatalf("Measured after a failed read = %v J, %v CPU-s", j, s)
	}
	// The next interval starts at the last good reading (4 s): 0 J + 100
	// J over 1 s of CPU.
	step("after a failed read", 6, 3_000_000, 162_000_000, 1002, 150, 5.02)
}

func TestPowerSkipsResets(t *testing.T) {
	root, stat := fakeHost(t, map[string]uint64{"intel-rapl:0": 50_000_000}, 1000)
	// No known range: a counter that goes back cannot be told from a
	// wrap.
	if err := os.Remove(filepath.Join(root, "intel-rapl:0", "max_energy_range_uj")); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPower(root, stat)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		what         string
		uj, busy     uint64
		joules, cpuS float64
	}{
		{"first", 50_000_000, 1000, 0, 0},
		{"20 J over 2 CPU-s", 70_000_000, 1200, 20, 2},
		{"the counter went back", 1_000_000, 1300, 20, 2},
		{"from the reset", 31_000_000, 1400, 50, 3},
		{"the CPU time went back", 41_000_000, 100, 50, 3},
		{"from there", 45_000_000, 200, 54, 4},
	} {
		setEnergy(t, root, "intel-rapl:0", tc.uj)
		setTicks(t, stat, tc.busy)
		p.Sample(t0.Add(time.Duration(i) * time.Second))
		if j, s := p.Measured(); !near(j, tc.joules) || !near(s, tc.cpuS) {
			t.Errorf("%s: Measured = %v J, %v CPU-s; want %v J, %v CPU-s", tc.what, j, s, tc.joules, tc.cpuS)
		}
	}
	if rate, ok := p.Rate(); !ok || !near(rate, 13.5) {
		t.Errorf("Rate = %v, %v; want 13.5", rate, ok)
	}
}

func TestReadBusyTicks(t *testing.T) {
	stat := filepath.Join(t.TempDir(), "stat")
	// user nice system idle iowait irq softirq steal guest guest_nice
	write(t, stat, "cpu  100 20 30 9999 500 4 6 700 50 0\ncpu0 1 1 1 1 1 1 1 1 1 1")
	if got, err := readBusyTicks(stat); err != nil || got != 160 {
		t.Errorf("readBusyTicks = %d, %v; want 160", got, err)
	}
	write(t, stat, "intr 1\n")
	if _, err := readBusyTicks(stat); err == nil {
		t.Error("no error without a cpu line")
	}
	write(t, stat, "cpu 1 2 3\n")
	if _, err := readBusyTicks(stat); err == nil {
		t.Error("no error with a short cpu line")
	}
}
