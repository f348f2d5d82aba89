package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/stratus-run/stratus"
	v1 "github.com/stratus-run/stratus/api/v1"
)

// DeployService deploys a new revision of service name and waits until it
// serves, or until the deploy fails.
func (c *Client) DeployService(ctx context.Context, name string, cfg stratus.ServiceConfig) (*v1.Service, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode service: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/services/"+url.PathEscape(name), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var svc v1.Service
	if err := c.send(req, "application/json", &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// SetTraffic sets how service name's requests are split between its
// revisions (see stratus.TrafficTarget) and returns the service; an empty
// split gives the latest ready revision all of them.
func (c *Client) SetTraffic(ctx context.Context, name string, t []stratus.TrafficTarget) (*v1.Service, error) {
	if t == nil {
		t = []stratus.TrafficTarget{}
	}
	b, err := json.Marshal(v1.TrafficRequest{Traffic: t})
	if err != nil {
		return nil, fmt.Errorf("encode traffic: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/services/"+url.PathEscape(name)+"/traffic", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var svc v1.Service
	if err := c.send(req, "application/json", &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// Services returns every service, ordered by name.
func (c *Client) Services(ctx context.Context) ([]v1.Service, error) {
	var l v1.ServiceList
	err := c.getJSON(ctx, "/v1/services", &l)
	return l.Services, err
}

// Service returns service name with its replicas.
func (c *Client) Service(ctx context.Context, name string) (*v1.Service, error) {
	var svc v1.Service
	if err := c.getJSON(ctx, "/v1/services/"+url.PathEscape(name), &svc); err != nil {
		return nil, err
	}
	return &svc, nil
}

// ServiceRevisions returns every stored revision of service name, newest
// first, with the share of requests each takes now.
func (c *Client) ServiceRevisions(ctx context.Context, name string) ([]v1.ServiceRevision, error) {
	var l v1.RevisionList
	err := c.getJSON(ctx, "/v1/services/"+url.PathEscape(name)+"/revisions", &l)
	return l.Revisions, err
}

// RemoveService deletes service name; its replicas drain and stop.
func (c *Client) RemoveService(ctx context.Context, name string) error {
	return c.deletePath(ctx, "/v1/services/"+url.PathEscape(name))
}

// ServiceLogs returns stored log lines of service name, oldest first.
func (c *Client) ServiceLogs(ctx context.Context, name string, q LogQuery) ([]stratus.LogLine, error) {
	return c.logs(ctx, "/v1/services/"+url.PathEscape(name)+"/logs", q)
}

// FollowServiceLogs is FollowLogs for service name.
func (c *Client) FollowServiceLogs(ctx context.Context, name string, q LogQuery, fn func(stratus.LogLine) error) error {
	return c.followLogs(ctx, "/v1/services/"+url.PathEscape(name)+"/logs", q, fn)
}
