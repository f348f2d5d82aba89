package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// CreateSchedule creates a schedule that invokes spec.Function
// asynchronously at each firing.
func (c *Client) CreateSchedule(ctx context.Context, spec v1.ScheduleSpec) (*v1.Schedule, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode schedule: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/schedules", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var sc v1.Schedule
	if err := c.send(req, "application/json", &sc); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Schedules returns every schedule, ordered by name.
func (c *Client) Schedules(ctx context.Context) ([]v1.Schedule, error) {
	var l v1.ScheduleList
	err := c.getJSON(ctx, "/v1/schedules", &l)
	return l.Schedules, err
}

// Schedule returns schedule name.
func (c *Client) Schedule(ctx context.Context, name string) (*v1.Schedule, error) {
	var sc v1.Schedule
	if err := c.getJSON(ctx, "/v1/schedules/"+url.PathEscape(name), &sc); err != nil {
		return nil, err
	}
	return &sc, nil
}

// RemoveSchedule deletes schedule name.
func (c *Client) RemoveSchedule(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, "/v1/schedules/"+url.PathEscape(name), nil, "")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
