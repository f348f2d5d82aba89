package series

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeRoundTrip(t *testing.T) {
	zero, one, half := 0.0, 1.0, 2.5
	for _, p := range []*point{
		{},
		{Calls: 3, Errors: 1, Throttles: 2, ColdStarts: 1, Restarts: 4, OOMKills: 5},
		{Instances: &zero, Busy: &one, Desired: &half, ASDesired: &one, Panic: &zero},
		{Calls: 7, Dur: &hist{Le: defaultLayout, N: make([]float64, len(defaultLayout)+1)}},
		{Calls: 2, Dur: &hist{Le: []float64{0.1, 1}, N: []float64{1, 0, 1}}, Busy: &half},
	} {
		if p.Dur != nil && len(p.Dur.Le) == len(defaultLayout) {
			p.Dur.N[4], p.Dur.N[17] = 5, 2
		}
		b := p.encode()
		got, err := decodePoint(b)
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", p, err)
		}
		if diff := cmp.Diff(p, got); diff != "" {
			t.Errorf("round trip (-want +got)\n%s", diff)
		}
	}
	// The server's layout is not stored.
	p := &point{Dur: &hist{Le: defaultLayout, N: make([]float64, len(defaultLayout)+1)}}
	p.Dur.N[0] = 1
	if n := len(p.encode()); n > 3+len(defaultLayout)+1 { // version, mask, a byte per bucket
		t.Errorf("a histogram of the default layout takes %d bytes", n)
	}
}

// FuzzDecodePoint: any bytes decode to a point that encodes back to the
// same bytes, or fail; none panic.
func FuzzDecodePoint(f *testing.F) {
	one := 1.0
	for _, p := range []*point{
		{}, {Calls: 300, Errors: 2, Instances: &one},
		{Dur: &hist{Le: defaultLayout, N: make([]float64, len(defaultLayout)+1)}},
		{Dur: &hist{Le: []float64{0.5}, N: []float64{3, 4}}},
	} {
		f.Add(p.encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{2})
	f.Add([]byte{1, 0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // a count past 2^53
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePoint(b)
		if err != nil {
			return
		}
		again, err := decodePoint(p.encode())
		if err != nil {
			t.Fatalf("a decoded point does not decode again: %v", err)
		}
		if !cmp.Equal(p, again) {
			t.Fatalf("decode(encode(decode(%x))) differs", b)
		}
		if p.Dur != nil && len(p.Dur.N) != len(p.Dur.Le)+1 {
			t.Fatalf("a histogram of %d bounds and %d counts", len(p.Dur.Le), len(p.Dur.N))
		}
		var q point
		q.add(p)
		q.add(p)
		if q.Dur != nil {
			q.Dur.quantile(0.99)
		}
	})
}
