package series

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		name   string
		step   time.Duration
		points int
	}{
		{"", v1.Range1h, time.Minute, 60},
		{"15m", v1.Range15m, 15 * time.Second, 60},
		{"1h", v1.Range1h, time.Minute, 60},
		{"24h", v1.Range24h, 10 * time.Minute, 144},
		{"7d", v1.Range7d, time.Hour, 168},
	} {
		r, err := ParseRange(tc.in)
		if err != nil {
			t.Errorf("ParseRange(%q): %v", tc.in, err)
			continue
		}
		if r.Name() != tc.name || r.Step() != tc.step || r.Points() != tc.points {
			t.Errorf("ParseRange(%q) = %s step %v, %d points; want %s step %v, %d points",
				tc.in, r.Name(), r.Step(), r.Points(), tc.name, tc.step, tc.points)
		}
	}
	for _, in := range []string{"2h", "1H", " 1h", "1h ", "60m", "1d", "7d&x", "-1h", "0", "15m,1h"} {
		if _, err := ParseRange(in); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ParseRange(%q): %v, want an error wrapping ErrInvalid", in, err)
		}
	}
}

// FuzzParseRange: any text is one of the four ranges or an error of
// kind invalid, and a range's buckets tile it.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "15m", "1h", "24h", "7d", "2h", "1h\x00", "７d", "1h1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if !errors.Is(err, stratus.ErrInvalid) {
				t.Fatalf("ParseRange(%q): %v is not ErrInvalid", s, err)
			}
			return
		}
		if s != "" && r.Name() != s {
			t.Fatalf("ParseRange(%q) = %q", s, r.Name())
		}
		if r.Points() <= 0 || time.Duration(r.Points())*r.step != r.span {
			t.Fatalf("ParseRange(%q): %d points of %v do not tile %v", s, r.Points(), r.step, r.span)
		}
		first, step, n := r.window(time.Unix(1_800_000_007, 0))
		if n != r.Points() || first%step != 0 || first+int64(n)*step <= 1_800_000_007 || first+int64(n-1)*step > 1_800_000_007 {
			t.Fatalf("window of %s: first %d step %d n %d", s, first, step, n)
		}
	})
}

func TestQuantile(t *testing.T) {
	le := []float64{1, 2, 4}
	for _, tc := range []struct {
		name string
		n    []float64
		q    float64
		want float64
		ok   bool
	}{
		{"empty", []float64{0, 0, 0, 0}, 0.5, 0, false},
		{"no buckets", nil, 0.5, 0, false},
		{"all in the first: from 0", []float64{4, 0, 0, 0}, 0.5, 0.5, true},
		{"interpolated in the second", []float64{2, 2, 0, 0}, 0.75, 1.5, true},
		{"the top of a bucket", []float64{2, 2, 0, 0}, 1, 2, true},
		{"p99 of 100 in the third", []float64{0, 0, 100, 0}, 0.99, 3.98, true},
		{"above the last bound: the last bound", []float64{1, 0, 0, 9}, 0.5, 4, true},
		{"q 0: the lowest bucket's start", []float64{0, 3, 0, 0}, 0, 1, true},
	} {
		h := hist{Le: le, N: tc.n}
		if tc.n == nil {
			h = hist{}
		}
		got, ok := h.quantile(tc.q)
		if ok != tc.ok || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: quantile(%v) = %v, %v; want %v, %v", tc.name, tc.q, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHistAdd(t *testing.T) {
	h := hist{}
	h.add(&hist{Le: []float64{1, 2}, N: []float64{1, 2, 3}})
	h.add(&hist{Le: []float64{1, 2}, N: []float64{1, 0, 1}})
	if h.count() != 8 || h.N[0] != 2 || h.N[1] != 2 || h.N[2] != 4 {
		t.Fatalf("same bounds: %+v", h)
	}
	// Other bounds: onto the union, each count at its own upper bound.
	h.add(&hist{Le: []float64{1.5}, N: []float64{5, 7}})
	want := hist{Le: []float64{1, 1.5, 2}, N: []float64{2, 5, 2, 11}}
	if len(h.Le) != 3 || h.count() != 20 {
		t.Fatalf("union: %+v, want %+v", h, want)
	}
	for i := range want.N {
		if h.N[i] != want.N[i] || (i < 3 && h.Le[i] != want.Le[i]) {
			t.Fatalf("union: %+v, want %+v", h, want)
		}
	}
}
