package client

import (
	"context"

	v1 "github.com/stratus-run/stratus/api/v1"
)

// Nodes returns the servers of the cluster, alive or dead, by name
// (GET /v1/nodes); the one that answered has Self set. A server on
// SQLite answers with itself alone.
func (c *Client) Nodes(ctx context.Context) ([]v1.Node, error) {
	var l v1.NodeList
	if err := c.getJSON(ctx, "/v1/nodes", &l); err != nil {
		return nil, err
	}
	return l.Nodes, nil
}
