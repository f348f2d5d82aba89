package client

import (
	"context"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// Info returns what the server says of itself: its version, its region
// and the sandbox driver that runs functions and services (GET /v1/info).
func (c *Client) Info(ctx context.Context) (*v1.Info, error) {
	var info v1.Info
	if err := c.getJSON(ctx, "/v1/info", &info); err != nil {
		return nil, err
	}
	return &info, nil
}
