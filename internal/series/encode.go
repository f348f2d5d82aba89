package series

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// A point is stored in a compact binary form, read back many times per
// chart (JSON took ten times longer to decode):
//
//	version byte (1)
//	uvarint mask of the fields present (bits below)
//	each count present, in bit order: uvarint (counts are whole)
//	each gauge present, in bit order: float64, little endian
//	the histogram, if present:
//	  with bitLayout, uvarint len(Le) and each bound as a float64;
//	  without it, the bounds are defaultLayout's;
//	  then one uvarint per bucket (len(Le)+1).
const encodingVersion = 1

const (
	bitCalls = 1 << iota
	bitErrors
	bitThrottles
	bitColdStarts
	bitRestarts
	bitOOMKills
	bitInstances
	bitBusy
	bitDesired
	bitASDesired
	bitPanic
	bitHist   // a histogram of defaultLayout
	bitLayout // a histogram with its bounds
	bitsAll   = bitLayout<<1 - 1
)

// defaultLayout are the bounds of the server's duration and latency
// histograms (internal/server's durationBuckets), which rows then need
// not hold; histograms of other bounds hold theirs.
var defaultLayout = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

// maxBuckets bounds the histograms decodePoint accepts; maxCount the
// counts (those a float64 holds exactly).
const (
	maxBuckets = 1 << 10
	maxCount   = 1 << 53
)

// counts are p's counts in the order of their bits.
func (p *point) counts() [6]*float64 {
	return [...]*float64{&p.Calls, &p.Errors, &p.Throttles, &p.ColdStarts, &p.Restarts, &p.OOMKills}
}

// gauges are p's gauges in the order of their bits.
func (p *point) gauges() [5]**float64 {
	return [...]**float64{&p.Instances, &p.Busy, &p.Desired, &p.ASDesired, &p.Panic}
}

// encode is p in its stored form.
func (p *point) encode() []byte {
	var mask uint64
	counts, gauges := p.counts(), p.gauges()
	for i, c := range counts {
		if *c > 0 {
			mask |= 1 << i
		}
	}
	for i, g := range gauges {
		if *g != nil {
			mask |= 1 << (len(counts) + i)
		}
	}
	h := p.Dur
	if h != nil && len(h.N) > 0 {
		if slices.Equal(h.Le, defaultLayout) {
			mask |= bitHist
		} else {
			mask |= bitLayout
		}
	}
	b := make([]byte, 0, 64)
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, mask)
	for i, c := range counts {
		if mask&(1<<i) != 0 {
			b = binary.AppendUvarint(b, count(*c))
		}
	}
	for i, g := range gauges {
		if mask&(1<<(len(counts)+i)) != 0 {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(**g))
		}
	}
	if mask&bitLayout != 0 {
		b = binary.AppendUvarint(b, uint64(len(h.Le)))
		for _, le := range h.Le {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(le))
		}
	}
	if mask&(bitHist|bitLayout) != 0 {
		for _, n := range h.N {
			b = binary.AppendUvarint(b, count(n))
		}
	}
	return b
}

// count is c as stored: whole, within 0 and maxCount.
func count(c float64) uint64 {
	return uint64(min(max(math.Round(c), 0), maxCount))
}

var errShort = errors.New("truncated")

// decodePoint reads a point in its stored form.
func decodePoint(b []byte) (*point, error) {
	if len(b) == 0 || b[0] != encodingVersion {
		return nil, fmt.Errorf("decode point: unknown encoding")
	}
	b = b[1:]
	uvarint := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errShort
		}
		b = b[n:]
		if v > maxCount {
			return 0, fmt.Errorf("count %d too large", v)
		}
		return v, nil
	}
	float := func() (float64, error) {
		if len(b) < 8 {
			return 0, errShort
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(b))
		b = b[8:]
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("not a finite number")
		}
		return v, nil
	}
	mask, err := uvarint()
	if err != nil {
		return nil, fmt.Errorf("decode point: %w", err)
	}
	if mask&^bitsAll != 0 || mask&bitHist != 0 && mask&bitLayout != 0 {
		return nil, fmt.Errorf("decode point: unknown fields")
	}
	p := &point{}
	counts, gauges := p.counts(), p.gauges()
	for i, c := range counts {
		if mask&(1<<i) != 0 {
			v, err := uvarint()
			if err != nil {
				return nil, fmt.Errorf("decode point: %w", err)
			}
			*c = float64(v)
		}
	}
	for i, g := range gauges {
		if mask&(1<<(len(counts)+i)) != 0 {
			v, err := float()
			if err != nil {
				return nil, fmt.Errorf("decode point: %w", err)
			}
			*g = &v
		}
	}
	var le []float64
	switch {
	case mask&bitHist != 0:
		le = defaultLayout
	case mask&bitLayout != 0:
		n, err := uvarint()
		if err != nil || n > maxBuckets {
			return nil, fmt.Errorf("decode point: histogram bounds")
		}
		le = make([]float64, n)
		for i := range le {
			if le[i], err = float(); err != nil || (i > 0 && le[i] <= le[i-1]) {
				return nil, fmt.Errorf("decode point: histogram bounds")
			}
		}
	}
	if mask&(bitHist|bitLayout) != 0 {
		h := &hist{Le: le, N: make([]float64, len(le)+1)}
		for i := range h.N {
			v, err := uvarint()
			if err != nil {
				return nil, fmt.Errorf("decode point: %w", err)
			}
			h.N[i] = float64(v)
		}
		p.Dur = h
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("decode point: %d bytes left over", len(b))
	}
	return p, nil
}
