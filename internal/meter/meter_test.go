package meter

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
)

// near reports whether got is want to 1 part in 1e9 (or both ~0).
func near(got, want float64) bool {
	if want == 0 {
		return math.Abs(got) < 1e-15
	}
	return math.Abs(got-want) <= 1e-9*math.Abs(want)
}

func checkUsage(t *testing.T, got, want stratus.Usage) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"Requests", float64(got.Requests), float64(want.Requests)},
		{"DurationMs", got.DurationMs, want.DurationMs},
		{"BilledMs", got.BilledMs, want.BilledMs},
		{"GBSeconds", got.GBSeconds, want.GBSeconds},
		{"VCPUSeconds", got.VCPUSeconds, want.VCPUSeconds},
		{"CPUSeconds", got.CPUSeconds, want.CPUSeconds},
		{"CostUSD", got.CostUSD, want.CostUSD},
		{"EnergyWh", got.EnergyWh, want.EnergyWh},
		{"CarbonG", got.CarbonG, want.CarbonG},
	} {
		if !near(f.got, f.want) {
			t.Errorf("%s = %.12g, want %.12g", f.name, f.got, f.want)
		}
	}
	if got.EnergySource != want.EnergySource {
		t.Errorf("EnergySource = %q, want %q", got.EnergySource, want.EnergySource)
	}
}

// The default embodied figure: 1,200 kgCO2e over 4 years (35,040 h) and
// 48 vCPUs.
const embodied = 1200e3 / (35040 * 48.0) // ≈ 0.71347 g per vCPU-hour

func TestDefaultEmbodied(t *testing.T) {
	if got := Default().Energy.EmbodiedGPerVCPUHour; !near(got, 0.7134703196347032) {
		t.Errorf("EmbodiedGPerVCPUHour = %v", got)
	}
}

func TestInvocation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		region string
		r      stratus.Invocation
		want   stratus.Usage
	}{{
		// docs/metering.md's worked example: 512 MB x86, 100 ms (billed
		// 100 ms), 20 ms of CPU (69 % of its 0.289 vCPU), eu-west-1
		// (278.6 g/kWh).
		//   GB-s   = 512/1024 × 100/1000          = 0.05
		//   vCPU-s = 512/1769 × 100/1000          = 0.0289428...
		//   CPU-s  = 20/1000                      = 0.02
		//   cost   = 0.05 × 0.0000166667 + 0.20/1e6 = 1.033335e-6
		//   E (Wh) = 1.135 × (0.74×vCPU-s + 2.76×0.02 + 0.392×0.05) / 3600
		//   C (g)  = E/1000 × 278.6 + 0.71347 × vCPU-s / 3600
		name: "x86 eu-west-1", region: "eu-west-1",
		r: stratus.Invocation{DurationMs: 100, BilledMs: 100, MemoryMB: 512, CPUMs: 20, Arch: stratus.ArchX86},
		want: func() stratus.Usage {
			vcpu := 512.0 / 1769 * 0.1
			e := 1.135 * (0.74*vcpu + (3.5-0.74)*0.02 + 0.392*0.05) / 3600
			return stratus.Usage{
				Requests: 1, DurationMs: 100, BilledMs: 100,
				GBSeconds: 0.05, VCPUSeconds: vcpu, CPUSeconds: 0.02,
				CostUSD:      0.05*0.0000166667 + 0.20/1e6,
				EnergyWh:     e,
				CarbonG:      e/1000*278.6 + embodied*vcpu/3600,
				EnergySource: "model",
			}
		}(),
	}, {
		// A cold arm64 start of 1769 MB (one vCPU): 250 ms running, 150
		// ms of init, billed 400 ms (the pool bills init), 300 ms of
		// CPU, in "local" (the world default, 481 g/kWh).
		//   GB-s   = 1769/1024 × 0.4 = 0.691015625
		//   vCPU-s = 1 × (250+150)/1000 = 0.4
		name: "arm cold local", region: "local",
		r: stratus.Invocation{DurationMs: 250, InitDurationMs: 150, BilledMs: 400, MemoryMB: 1769, CPUMs: 300, Arch: stratus.ArchArm, Cold: true},
		want: func() stratus.Usage {
			gbs := 1769.0 / 1024 * 0.4
			e := 1.135 * (0.74*0.4 + 2.76*0.3 + 0.392*gbs) / 3600
			return stratus.Usage{
				Requests: 1, DurationMs: 250, BilledMs: 400,
				GBSeconds: gbs, VCPUSeconds: 0.4, CPUSeconds: 0.3,
				CostUSD:      gbs*0.0000133334 + 0.2e-6,
				EnergyWh:     e,
				CarbonG:      e/1000*481 + embodied*0.4/3600,
				EnergySource: "model",
			}
		}(),
	}, {
		// No architecture recorded: priced as x86.
		name: "no arch", region: "us-east-1",
		r: stratus.Invocation{DurationMs: 1000, BilledMs: 1000, MemoryMB: 1024},
		want: func() stratus.Usage {
			vcpu := 1024.0 / 1769
			e := 1.135 * (0.74*vcpu + 0.392*1) / 3600
			return stratus.Usage{
				Requests: 1, DurationMs: 1000, BilledMs: 1000,
				GBSeconds: 1, VCPUSeconds: vcpu,
				CostUSD:      0.0000166667 + 0.2e-6,
				EnergyWh:     e,
				CarbonG:      e/1000*379.069 + embodied*vcpu/3600,
				EnergySource: "model",
			}
		}(),
	}} {
		t.Run(tc.name, func(t *testing.T) {
			checkUsage(t, New(Default(), tc.region).Invocation(tc.r), tc.want)
		})
	}
}

// TestWorkedExample checks the figures docs/metering.md prints for its
// worked example, to the digits it prints them.
func TestWorkedExample(t *testing.T) {
	u := New(Default(), "eu-west-1").Invocation(stratus.Invocation{DurationMs: 100, BilledMs: 100, MemoryMB: 512, CPUMs: 20, Arch: stratus.ArchX86})
	for _, f := range []struct {
		name      string
		got, want float64
		prec      float64 // relative, as printed
	}{
		{"VCPUSeconds", u.VCPUSeconds, 0.028943, 1e-5},
		{"CostUSD", u.CostUSD, 0.000001033335, 1e-6},
		{"EnergyWh", u.EnergyWh, 0.0000303353, 1e-5},
		{"CarbonG", u.CarbonG, 0.0000141875, 1e-5},
		{"a million's Wh", u.EnergyWh * 1e6, 30.3, 1e-2},
		{"a million's g", u.CarbonG * 1e6, 14.2, 1e-2},
	} {
		if math.Abs(f.got-f.want) > f.prec*f.want {
			t.Errorf("%s = %.10g, the example says %v", f.name, f.got, f.want)
		}
	}
	north := New(Default(), "eu-north-1").Invocation(stratus.Invocation{DurationMs: 100, BilledMs: 100, MemoryMB: 512, CPUMs: 20})
	if got := north.CarbonG * 1e6; math.Abs(got-6.0) > 0.05 {
		t.Errorf("a million in eu-north-1: %.3g g, the example says 6.0", got)
	}
}

func TestMinuteFunction(t *testing.T) {
	m := New(Default(), "eu-north-1") // 8.8 g/kWh
	// 10 invocations of 256 MB arm64, 2,000 ms in all (billed 2,050, of
	// which 50 ms init), 900 ms of CPU; GBSeconds not given.
	//   GB-s   = 256/1024 × 2.05 = 0.5125
	//   vCPU-s = 256/1769 × (2000+50)/1000
	u := stratus.UsageMinute{
		Kind: stratus.KindFunction, Requests: 10, DurationMs: 2000, BilledMs: 2050,
		InitMs: 50, CPUMs: 900, MemoryMB: 256, Arch: stratus.ArchArm,
	}
	vcpu := 256.0 / 1769 * 2.05
	e := 1.135 * (0.74*vcpu + 2.76*0.9 + 0.392*0.5125) / 3600
	checkUsage(t, m.Minute(u), stratus.Usage{
		Requests: 10, DurationMs: 2000, BilledMs: 2050,
		GBSeconds: 0.5125, VCPUSeconds: vcpu, CPUSeconds: 0.9,
		CostUSD:      0.5125*0.0000133334 + 10*0.2e-6,
		EnergyWh:     e,
		CarbonG:      e/1000*8.8 + embodied*vcpu/3600,
		EnergySource: "model",
	})

	// Given GBSeconds and VCPUSeconds are taken as they are.
	u.GBSeconds, u.VCPUSeconds = 0.6, 0.3
	e = 1.135 * (0.74*0.3 + 2.76*0.9 + 0.392*0.6) / 3600
	checkUsage(t, m.Minute(u), stratus.Usage{
		Requests: 10, DurationMs: 2000, BilledMs: 2050,
		GBSeconds: 0.6, VCPUSeconds: 0.3, CPUSeconds: 0.9,
		CostUSD:      0.6*0.0000133334 + 10*0.2e-6,
		EnergyWh:     e,
		CarbonG:      e/1000*8.8 + embodied*0.3/3600,
		EnergySource: "model",
	})
}

func TestMinuteService(t *testing.T) {
	m := New(Default(), "us-west-2") // 322.167 g/kWh
	// A minute of 2 replicas of 1 vCPU, 512 MB: 120 vCPU-s, 60 GiB-s,
	// 30 s of CPU; 500 requests, no request fee.
	u := stratus.UsageMinute{
		Kind: stratus.KindService, Requests: 500, DurationMs: 25000,
		CPUMs: 30000, VCPUSeconds: 120, GBSeconds: 60, Replicas: 2, VCPU: 1, MemoryMB: 512,
	}
	e := 1.135 * (0.74*120 + 2.76*30 + 0.392*60) / 3600
	want := stratus.Usage{
		Requests: 500, DurationMs: 25000,
		GBSeconds: 60, VCPUSeconds: 120, CPUSeconds: 30,
		CostUSD:      120*0.000018 + 60*0.000002, // $0.00228
		EnergyWh:     e,
		CarbonG:      e/1000*322.167 + embodied*120/3600,
		EnergySource: "model",
	}
	checkUsage(t, m.Minute(u), want)

	// Without the allocation's sums, they come from the mean replicas.
	u.VCPUSeconds, u.GBSeconds = 0, 0
	checkUsage(t, m.Minute(u), want)
}

func TestReplica(t *testing.T) {
	m := New(Default(), "ap-northeast-1") // 465.8 g/kWh
	start := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	// 0.5 vCPU and 1024 MB for 10 minutes, 45 s of CPU used.
	//   vCPU-s = 0.5 × 600 = 300;  GiB-s = 1 × 600 = 600
	//   cost   = 300 × 0.000018 + 600 × 0.000002 = 0.0066
	r := stratus.ReplicaUsage{Start: start, End: start.Add(10 * time.Minute), CPU: 0.5, MemoryMB: 1024, CPUMs: 45000, Requests: 42}
	e := 1.135 * (0.74*300 + 2.76*45 + 0.392*600) / 3600
	checkUsage(t, m.Replica(r), stratus.Usage{
		Requests: 42, BilledMs: 600000,
		GBSeconds: 600, VCPUSeconds: 300, CPUSeconds: 45,
		CostUSD:      0.0066,
		EnergyWh:     e,
		CarbonG:      e/1000*465.8 + embodied*300/3600,
		EnergySource: "model",
	})

	// An end before the start is a life of 0.
	r.End = start.Add(-time.Second)
	if got := m.Replica(r); got.VCPUSeconds != 0 || got.GBSeconds != 0 || got.CostUSD != 0 {
		t.Errorf("negative life: %+v", got)
	}
}

// The figures of a sum are the sum of the figures.
func TestLinear(t *testing.T) {
	m := New(Default(), "eu-west-1")
	a := stratus.Invocation{DurationMs: 120, BilledMs: 121, MemoryMB: 512, CPUMs: 30, Arch: stratus.ArchArm}
	b := stratus.Invocation{DurationMs: 80, InitDurationMs: 40, BilledMs: 121, MemoryMB: 512, CPUMs: 70, Arch: stratus.ArchArm, Cold: true}
	var sum stratus.Usage
	sum.Add(m.Invocation(a))
	sum.Add(m.Invocation(b))
	minute := m.Minute(stratus.UsageMinute{
		Kind: stratus.KindFunction, Requests: 2, DurationMs: 200, BilledMs: 242,
		InitMs: 40, CPUMs: 100, MemoryMB: 512, Arch: stratus.ArchArm,
	})
	checkUsage(t, minute, sum)
}

func TestIntensity(t *testing.T) {
	for region, want := range map[string]float64{
		"us-east-1": 379.069, "eu-west-1": 278.6, "eu-north-1": 8.8, "FR": 56,
		"local": 481, "": 481, "mars-1": 481,
	} {
		if got := New(Default(), region).Intensity(); got != want {
			t.Errorf("Intensity(%q) = %v, want %v", region, got, want)
		}
	}
}

func TestNewCopiesMap(t *testing.T) {
	tab := Default()
	m := New(tab, "eu-west-1")
	tab.Energy.GridIntensity["eu-west-1"] = 1
	if got := m.Intensity(); got != 278.6 {
		t.Errorf("Intensity = %v after the caller changed its map", got)
	}
}

func TestSetPower(t *testing.T) {
	root, stat := fakeHost(t, map[string]uint64{"intel-rapl:0": 1_000_000}, 1000)
	p, err := OpenPower(root, stat)
	if err != nil {
		t.Fatal(err)
	}
	m := New(Default(), "eu-west-1")
	m.SetPower(p)
	r := stratus.Invocation{DurationMs: 100, BilledMs: 100, MemoryMB: 512, CPUMs: 20}

	// No rate yet: the model.
	if got := m.Invocation(r).EnergySource; got != "model" {
		t.Fatalf("EnergySource before a rate = %q", got)
	}
	t0 := time.Unix(1000, 0)
	p.Sample(t0)
	// 50 J over 2 s of host CPU (200 ticks): 25 J per CPU-second.
	setEnergy(t, root, "intel-rapl:0", 51_000_000)
	setTicks(t, stat, 1200)
	p.Sample(t0.Add(time.Second))

	vcpu := 512.0 / 1769 * 0.1
	e := 1.135 * (0.02*25 + 0.392*0.05) / 3600
	checkUsage(t, m.Invocation(r), stratus.Usage{
		Requests: 1, DurationMs: 100, BilledMs: 100,
		GBSeconds: 0.05, VCPUSeconds: vcpu, CPUSeconds: 0.02,
		CostUSD:      0.05*0.0000166667 + 0.2e-6,
		EnergyWh:     e,
		CarbonG:      e/1000*278.6 + embodied*vcpu/3600,
		EnergySource: "rapl",
	})

	m.SetPower(nil)
	if got := m.Invocation(r).EnergySource; got != "model" {
		t.Errorf("EnergySource after SetPower(nil) = %q", got)
	}
}

// Sample on a ticker while handlers meter: run with -race.
func TestConcurrent(t *testing.T) {
	root, stat := fakeHost(t, map[string]uint64{"intel-rapl:0": 0}, 0)
	p, err := OpenPower(root, stat)
	if err != nil {
		t.Fatal(err)
	}
	m := New(Default(), "local")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			p.Sample(time.Unix(int64(i), 0))
			if i == 25 {
				m.SetPower(p)
			}
		}
	}()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				m.Invocation(stratus.Invocation{DurationMs: 1, BilledMs: 1, MemoryMB: 128, CPUMs: 1})
				m.Intensity()
			}
		}()
	}
	wg.Wait()
}
