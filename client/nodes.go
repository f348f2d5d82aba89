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

// NodeList is GET /v1/nodes whole: the servers of the cluster (Nodes)
// and, from a server with --sandbox kube, the Kubernetes cluster's nodes
// with the Stratus pods on each.
func (c *Client) NodeList(ctx context.Context) (v1.NodeList, error) {
	var l v1.NodeList
	err := c.getJSON(ctx, "/v1/nodes", &l)
	return l, err
}
