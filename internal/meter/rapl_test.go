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
	root, stat := fakeHost(t, map[string]uint64{"intel-rapl:0": 10_000_000, "intel-rapl:1": 20_000_000}, 500)
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

	// Interval 1: 30 J + 10 J over 4 s of CPU (400 ticks): 10 J/CPU-s.
	setEnergy(t, root, "intel-rapl:0", 40_000_000)
	setEnergy(t, root, "intel-rapl:1", 30_000_000)
	setTicks(t, stat, 900)
	p.Sample(t0.Add(time.Second))
	if rate, ok := p.Rate(); !ok || !near(rate, 10) {
		t.Fatalf("Rate = %v, %v; want 10", rate, ok)
	}

	// Interval 2: package 0 wraps at max_energy_range_uj
	// (262143328850): from 262143328850-5,000,000 to 3,000,000 is 8 J;
	// package 1 uses 12 J; 1 s of CPU: 20 J/CPU-s.
	setEnergy(t, root, "intel-rapl:0", 262143328850-5_000_000)
	setEnergy(t, root, "intel-rapl:1", 30_000_000)
	setTicks(t, stat, 1000)
	p.Sample(t0.Add(2 * time.Second))
	setEnergy(t, root, "intel-rapl:0", 3_000_000)
	setEnergy(t, root, "intel-rapl:1", 42_000_000)
	setTicks(t, stat, 1100)
	p.Sample(t0.Add(3 * time.Second))
	if rate, ok := p.Rate(); !ok || !near(rate, 20) {
		t.Fatalf("Rate after a wrap = %v, %v; want 20", rate, ok)
	}

	// A sample not after the last one is ignored.
	setEnergy(t, root, "intel-rapl:1", 99_000_000)
	setTicks(t, stat, 1101)
	p.Sample(t0.Add(3 * time.Second))
	if rate, _ := p.Rate(); !near(rate, 20) {
		t.Fatalf("Rate after a sample at the same time = %v", rate)
	}

	// No CPU time used: the rate stays.
	setTicks(t, stat, 1100)
	p.Sample(t0.Add(4 * time.Second))
	if rate, _ := p.Rate(); !near(rate, 20) {
		t.Fatalf("Rate after an idle interval = %v", rate)
	}

	// A failed read is kept for Err and leaves the rate.
	os.Remove(filepath.Join(root, "intel-rapl:1", "energy_uj"))
	p.Sample(t0.Add(5 * time.Second))
	if p.Err() == nil {
		t.Error("Err = nil after a failed read")
	}
	if rate, _ := p.Rate(); !near(rate, 20) {
		t.Fatalf("Rate after a failed read = %v", rate)
	}
	setEnergy(t, root, "intel-rapl:1", 156_000_000)
	setTicks(t, stat, 1200)
	p.Sample(t0.Add(6 * time.Second))
	if p.Err() != nil {
		t.Errorf("Err = %v after a good read", p.Err())
	}
	// From the reading at 4 s (package 1 at 99 J): 0 J + 57 J over 1 s
	// of CPU.
	if rate, _ := p.Rate(); !near(rate, 57) {
		t.Fatalf("Rate = %v, want 57", rate)
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
