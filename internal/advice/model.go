package advice

import (
	"math"
	"time"
)

// Constants of the models; docs/advice.md explains each.
const (
	// targetUtilization is the share of a replica's concurrency and vCPU a
	// service plans to use, leaving room for bursts while replicas start
	// (the autoscaler's target).
	targetUtilization = 0.7
	// coldP99Share is the share of cold requests above which a cold
	// start's latency is the p99.
	coldP99Share = 0.01
	// defaultInitMs is a cold start's init when the minutes measured none.
	defaultInitMs = 1000
	// maxInstances bounds every instance and replica count.
	maxInstances = math.MaxInt32
	// monthMinutes is the month every option is priced for: 30 days.
	monthMinutes = 30 * 24 * 60
)

// instances is how many function instances (one request at a time each)
// minute s needs: its measured peak in flight when there is one, else
// the least k at which fewer than half a request of the minute is
// expected to arrive while k are busy. Arrivals are taken as Poisson at
// the minute's rate, so the requests in flight at an arrival are Poisson
// with mean the minute's concurrency (Little's law: durationMs / 60000).
// At least 1 for a minute with requests.
func instances(s slot) float64 {
	if s.requests <= 0 {
		return 0
	}
	if s.maxInFlight > 0 {
		return s.maxInFlight
	}
	c := s.durationMs / 60000
	if c <= 0 {
		return 1
	}
	// tail(k) = P(in flight >= k); the least k with requests × tail < 0.5
	// (and tail < 1e-9, which float64 sums still resolve).
	p := max(0.5/s.requests, 1e-9)
	if c > 100 {
		// Normal approximation of the Poisson tail for large means.
		if p >= 0.5 {
			return max(1, math.Ceil(c))
		}
		z := math.Sqrt2 * math.Erfinv(1-2*p)
		return min(maxInstances, max(1, math.Ceil(c+z*math.Sqrt(c))))
	}
	pmf := math.Exp(-c) // P(in flight = 0)
	tail := 1.0         // P(in flight >= 0)
	for k := 0; k < 10_000; k++ {
		if k >= 1 && tail < p {
			return float64(k)
		}
		tail -= pmf
		pmf *= c / float64(k+1)
	}
	return math.Ceil(c)
}

// coldStarts is the number of cold starts of the window's busy minutes
// run as a function with warm instances kept warm for the whole window,
// and an instance reaped once it has been idle for idle. Instances are
// used lowest first, so the ones warm at a minute are the most any minute
// of the last idle (plus the minute itself) needed, and never fewer than
// warm; each instance a minute needs beyond those starts cold. The window
// begins with only the kept ones warm.
func coldStarts(busy []slot, need []float64, warm float64, idle time.Duration) (cold []float64, total float64) {
	cold = make([]float64, len(busy))
	// q holds indexes of busy minutes whose need is not below any later
	// one's, oldest first: the front is the largest need still in reach.
	var q []int
	for i, s := range busy {
		for len(q) > 0 && s.at.Sub(busy[q[0]].at) > idle+time.Minute {
			q = q[1:]
		}
		ready := warm
		if len(q) > 0 {
			ready = max(ready, need[q[0]])
		}
		cold[i] = min(s.requests, max(0, need[i]-ready))
		total += cold[i]
		for len(q) > 0 && need[q[len(q)-1]] <= need[i] {
			q = q[:len(q)-1]
		}
		q = append(q, i)
	}
	return cold, total
}

// p99 is the expected p99 latency of requests whose p99 duration is
// p99Ms and mean duration meanMs when coldRate of them wait initMs for
// an instance to start: the cold requests' latency when more than 1 % of
// requests are cold.
func p99(p99Ms, meanMs, initMs, coldRate float64) float64 {
	if coldRate > coldP99Share {
		return max(p99Ms, initMs+meanMs)
	}
	return p99Ms
}

// replicaNeed is the work of minute s in replicas of concurrency c and
// vcpu vCPUs used to the full: the larger of its mean concurrency over c
// and its CPU time per second over vcpu (CPU is left out when vcpu is
// unknown).
func replicaNeed(s slot, c int, vcpu float64) float64 {
	need := s.durationMs / 60000 / float64(c)
	if vcpu > 0 {
		need = max(need, s.cpuMs/60000/vcpu)
	}
	return need
}

// replicasFor is the replicas that serve need replica-equivalents at the
// target utilisation, at most maxInstances.
func replicasFor(need float64) float64 {
	return min(maxInstances, math.Ceil(need/targetUtilization))
}
