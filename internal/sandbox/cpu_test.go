package sandbox

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseCPUNanos(t *testing.T) {
	for _, tc := range []struct {
		in   string
		v2   bool
		want int64
		ok   bool
	}{
		{"123456789\n", false, 123456789, true},
		{"0\n", false, 0, true},
		{"", false, 0, false},
		{"usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n", true, 2_500_000, true},
		{"usage_usec 7", true, 7000, true},
		{"user_usec 2000\n", true, 0, false},
	} {
		got, ok := ParseCPUNanos([]byte(tc.in), tc.v2)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseCPUNanos(%q, %v) = %d, %v; want %d, %v", tc.in, tc.v2, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseChildTimes(t *testing.T) {
	// Fields 14 to 17: utime stime cutime cstime; the command holds ") ".
	line := "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 25 12 20 0 1 0 1000 1000 100 18446744073709551615\n"
	cu, cs, ok := parseChildTimes([]byte(line))
	if !ok || cu != 25 || cs != 12 {
		t.Errorf("parseChildTimes = %d, %d, %v; want 25, 12, true", cu, cs, ok)
	}
	if _, _, ok := parseChildTimes([]byte("42 (a) S 1 42")); ok {
		t.Error("parseChildTimes of a short line succeeded")
	}
}

func TestProcessCPUNanos(t *testing.T) {
	t0, err := ProcessCPUNanos(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until getrusage, the kernel's other account of the same time,
	// says 20 ms more were used.
	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var x uint64
	for r0 := rusage(); rusage()-r0 < 20*time.Millisecond; {
		for range 1 << 12 {
			x = x*31 + 7
		}
	}
	t1, err := ProcessCPUNanos(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(t1 - t0); d < 10*time.Millisecond || x == 1 {
		t.Errorf("ProcessCPUNanos grew by %v over a spin of 20 ms of CPU time, want at least 10 ms", d)
	}
	if _, err := ReapedChildrenCPUNanos(os.Getpid()); err != nil {
		t.Error(err)
	}
	if _, err := ProcessCPUNanos(1 << 30); err == nil {
		t.Error("ProcessCPUNanos of a PID that cannot exist succeeded")
	}
}
