package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
	"github.com/stratus-run/stratus/bench/internal/benchkit"
)

// latencyResult is the time from a publish (or an async invoke) being sent
// to the start of its invocation, as the invocation record gives it.
type latencyResult struct {
	N                  int
	P50, P90, P99, Max time.Duration
	Ack50, Ack99       time.Duration // the publish's own round trip (202)
	Ambiguous          int           // records whose start is not between their publish and the next
}

const latFn, latTopic = "lat", "lat"

// latencySetup deploys the function, creates the topic and the
// subscription, and warms the function and both paths with warm events.
func latencySetup(ctx context.Context, s *server, codeDir string, warm int, gap time.Duration) error {
	if err := s.deploy(ctx, latFn, codeDir); err != nil {
		return err
	}
	if err := s.doJSON(ctx, http.MethodPost, "/v1/topics", v1.TopicSpec{Name: latTopic}, nil); err != nil {
		return err
	}
	if err := s.doJSON(ctx, http.MethodPost, "/v1/topics/"+latTopic+"/subscriptions", v1.SubscriptionSpec{Function: latFn}, nil); err != nil {
		return err
	}
	for range 5 {
		if err := s.invokeSync(ctx, latFn, []byte(`{}`)); err != nil {
			return err
		}
	}
	for i := range warm {
		if _, err := publish(ctx, s, "warm-"+strconv.Itoa(i)); err != nil {
			return err
		}
		if _, err := s.invokeAsync(ctx, latFn, []byte(`{"warm":true}`)); err != nil {
			return err
		}
		time.Sleep(gap)
	}
	_, err := waitRecords(ctx, s, latFn, 5+2*warm, 30*time.Second)
	return err
}

// publish sends one structured-mode CloudEvent to the topic and returns
// the publish's round trip.
func publish(ctx context.Context, s *server, id string) (time.Duration, error) {
	body := []byte(`{"specversion":"1.0","id":"` + id + `","source":"/bench/events","type":"bench.latency",` +
		`"datacontenttype":"application/json","data":{"seq":"` + id + `"}}`)
	t0 := time.Now()
	code, b, err := s.do(ctx, http.MethodPost, "/v1/topics/"+latTopic+"/events",
		http.Header{"Content-Type": {v1.ContentTypeCloudEvent}}, body)
	if err != nil {
		return 0, err
	}
	if code/100 != 2 {
		return 0, fmt.Errorf("publish: %d %s", code, b)
	}
	return time.Since(t0), nil
}

// waitRecords polls until fn has at least n records, for up to timeout.
func waitRecords(ctx context.Context, s *server, fn string, n int, timeout time.Duration) ([]stratus.Invocation, error) {
	deadline := time.Now().Add(timeout)
	for {
		recs, err := s.records(ctx, fn, n, "")
		if err != nil {
			return nil, err
		}
		if len(recs) >= n {
			return recs, nil
		}
		if time.Now().After(deadline) {
			return recs, fmt.Errorf("%s: %d of %d invocation records after %s", fn, len(recs), n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// topicLatency publishes n events one at a time, gap apart, and matches
// them in order with the invocation records started after the first.
func topicLatency(ctx context.Context, s *server, n int, gap time.Duration) (latencyResult, error) {
	before, err := s.records(ctx, latFn, 10000, "")
	if err != nil {
		return latencyResult{}, err
	}
	sent := make([]time.Time, n)
	acks := make([]time.Duration, n)
	for i := range n {
		sent[i] = time.Now()
		acks[i], err = publish(ctx, s, "lat-"+strconv.Itoa(i))
		if err != nil {
			return latencyResult{}, err
		}
		time.Sleep(gap)
	}
	recs, err := waitRecords(ctx, s, latFn, len(before)+n, 30*time.Second)
	if err != nil {
		return latencyResult{}, err
	}
	var mine []stratus.Invocation
	for _, r := range recs {
		if !r.Start.Before(sent[0]) {
			mine = append(mine, r)
		}
	}
	if len(mine) != n {
		return latencyResult{}, fmt.Errorf("topic latency: %d records started after the first publish, want %d", len(mine), n)
	}
	slices.SortFunc(mine, func(a, b stratus.Invocation) int { return a.Start.Compare(b.Start) })
	res := latencyResult{N: n}
	lat := make([]time.Duration, n)
	for i, r := range mine {
		lat[i] = r.Start.Sub(sent[i])
		if lat[i] < 0 || (i+1 < n && !r.Start.Before(sent[i+1])) {
			res.Ambiguous++
		}
		if r.Outcome != stratus.OutcomeSuccess {
			return latencyResult{}, fmt.Errorf("topic latency: request %s: outcome %s", r.RequestID, r.Outcome)
		}
	}
	fill(&res, lat, acks)
	return res, nil
}

// asyncLatency sends n async invokes one at a time, gap apart, and matches
// them with their records by request ID.
func asyncLatency(ctx context.Context, s *server, n int, gap time.Duration) (latencyResult, error) {
	before, err := s.records(ctx, latFn, 10000, "")
	if err != nil {
		return latencyResult{}, err
	}
	sent := map[string]time.Time{}
	acks := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		id, err := s.invokeAsync(ctx, latFn, []byte(`{"probe":"latency"}`))
		if err != nil {
			return latencyResult{}, err
		}
		acks = append(acks, time.Since(t0))
		sent[id] = t0
		time.Sleep(gap)
	}
	recs, err := waitRecords(ctx, s, latFn, len(before)+n, 30*time.Second)
	if err != nil {
		return latencyResult{}, err
	}
	res := latencyResult{N: n}
	var lat []time.Duration
	for _, r := range recs {
		if t0, ok := sent[r.RequestID]; ok {
			lat = append(lat, r.Start.Sub(t0))
			delete(sent, r.RequestID)
		}
	}
	if len(sent) > 0 {
		return latencyResult{}, fmt.Errorf("async latency: %d requests without a record", len(sent))
	}
	fill(&res, lat, acks)
	return res, nil
}

// fill sets r's percentiles (nearest rank) of lat and acks, which it
// sorts.
func fill(r *latencyResult, lat, acks []time.Duration) {
	slices.Sort(lat)
	slices.Sort(acks)
	r.P50, r.P90, r.P99 = benchkit.Rank(lat, 0.50), benchkit.Rank(lat, 0.90), benchkit.Rank(lat, 0.99)
	r.Max = lat[len(lat)-1]
	r.Ack50, r.Ack99 = benchkit.Rank(acks, 0.50), benchkit.Rank(acks, 0.99)
}
