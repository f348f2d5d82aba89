package autoscaler

// window keeps the per-second averages of the samples of the last
// len(buckets) seconds in a ring indexed by Unix second modulo its length.
// Each bucket knows its second, so a slot still holding an older second
// reads as empty.
//
// Averages leave out the seconds before the current run of traffic, which
// starts at the first sample above zero after a whole ring of seconds
// without one: a burst after an idle spell is averaged over the seconds it
// has lasted, not diluted by the idle ones before it.
type window struct {
	buckets  []bucket
	any      bool  // whether any sample was kept
	last     int64 // latest second with a sample
	busy     bool  // whether any sample above zero was kept
	first    int64 // first second of the current run of traffic
	lastBusy int64 // latest second with a sample above zero
}

// bucket holds the samples of one second.
type bucket struct {
	sec   int64
	sum   float64
	count int
	busy  bool // whether a sample was above zero
}

func newWindow(seconds int) *window {
	return &window{buckets: make([]bucket, seconds)}
}

func (w *window) size() int64 { return int64(len(w.buckets)) }

func (w *window) slot(sec int64) *bucket {
	n := w.size()
	return &w.buckets[((sec%n)+n)%n]
}

// record adds v to the bucket of second sec. A sample older than the ring
// is dropped.
func (w *window) record(sec int64, v float64) {
	n := w.size()
	if w.any && sec <= w.last-n {
		return
	}
	if !w.any || sec > w.last {
		w.any, w.last = true, sec
	}
	if v > 0 {
		switch {
		case !w.busy || sec-w.lastBusy >= n:
			w.busy, w.first, w.lastBusy = true, sec, sec
		default:
			w.first = min(w.first, sec)
			w.lastBusy = max(w.lastBusy, sec)
		}
	}
	b := w.slot(sec)
	if b.count == 0 || b.sec != sec {
		*b = bucket{sec: sec}
	}
	b.sum += v
	b.count++
	b.busy = b.busy || v > 0
}

// has reports whether second sec holds a sample.
func (w *window) has(sec int64) bool {
	b := w.slot(sec)
	return b.count > 0 && b.sec == sec
}

// average returns the mean of the per-second averages over the given
// number of seconds up to and including end, within the current run of
// traffic, counting a second without samples as 0; and whether any of
// those seconds saw a sample above zero.
func (w *window) average(end int64, seconds int) (avg float64, busy bool) {
	if !w.busy {
		return 0, false
	}
	start := max(end-int64(seconds)+1, w.first)
	if start > end {
		return 0, false
	}
	var sum float64
	for sec := start; sec <= end; sec++ {
		if b := w.slot(sec); b.count > 0 && b.sec == sec {
			sum += b.sum / float64(b.count)
			busy = busy || b.busy
		}
	}
	return sum / float64(end-start+1), busy
}
