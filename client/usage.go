package client

import (
	"context"
	"net/url"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// Usage returns the usage, cost, energy and carbon of the window since
// (a duration such as 90m, 36h or 7d; "" is the server's default, 24h)
// back from now, summed by by: v1.ByFunction, v1.ByService or v1.ByDay
// ("" is by function); or, by v1.ByReplica, one row for each life of a
// service's replica that overlaps the window, with the figures of its
// whole life.
func (c *Client) Usage(ctx context.Context, since, by string) (*v1.UsageReport, error) {
	v := url.Values{}
	if since != "" {
		v.Set("since", since)
	}
	if by != "" {
		v.Set("by", by)
	}
	var rep v1.UsageReport
	if err := c.getJSON(ctx, withQuery("/v1/usage", v), &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Advice returns the advice for function or service name from its
// traffic over window (such as 7d; "" is the server's default, 7d), with
// a p99 latency budget (a Go duration such as 800ms; "" is none).
func (c *Client) Advice(ctx context.Context, name, window, latencyBudget string) (*v1.Advice, error) {
	v := url.Values{}
	if window != "" {
		v.Set("window", window)
	}
	if latencyBudget != "" {
		v.Set("latency-budget", latencyBudget)
	}
	var a v1.Advice
	if err := c.getJSON(ctx, withQuery("/v1/advice/"+url.PathEscape(name), v), &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// AdviceAll returns the advice for every function and service over
// window ("" is the server's default, 7d), the largest saving first.
func (c *Client) AdviceAll(ctx context.Context, window string) (*v1.AdviceList, error) {
	v := url.Values{}
	if window != "" {
		v.Set("window", window)
	}
	var l v1.AdviceList
	if err := c.getJSON(ctx, withQuery("/v1/advice", v), &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// withQuery is path with v's query, if any.
func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}
