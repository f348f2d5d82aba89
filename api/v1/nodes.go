package v1

import "time"

// Node is one Stratus server of the cluster as GET /v1/nodes shows it:
// what it last said of itself in its heartbeat, and whether that was
// recent enough for it to count as alive. A server on SQLite is a
// cluster of one node.
type Node struct {
	// Name is the node's name (--node-name, default the host name),
	// unique in the cluster.
	Name string `json:"name"`
	// Address is the base URL the other servers reach this one at
	// (--advertise), e.g. "http://10.0.0.7:8080".
	Address string `json:"address"`
	// Region is the region the node runs in (--region).
	Region string `json:"region"`
	// Version is the node's Stratus version ("dev" for a build without
	// one).
	Version string `json:"version"`
	// State is what the node last reported of itself: "ready",
	// "unready: REASON" (a readiness check fails, as /readyz would say)
	// or "stopping". It is the node's own word: a node that stopped
	// heartbeating keeps its last State and has Alive false.
	State string `json:"state"`
	// Alive reports whether the node's last heartbeat is recent enough:
	// a node whose heartbeat is older than the cluster's dead timeout
	// (10 s) is dead, its leases expire and its work moves to the
	// others.
	Alive bool `json:"alive"`
	// StartedAt is when the node's server started.
	StartedAt time.Time `json:"startedAt"`
	// HeartbeatAt is when the node last heartbeated, by the store's
	// clock.
	HeartbeatAt time.Time `json:"heartbeatAt"`
	// HeartbeatAgeSec is how long before this answer HeartbeatAt was,
	// in seconds, as the answering server measured it (so that a
	// reader's own clock does not matter).
	HeartbeatAgeSec float64 `json:"heartbeatAgeSec"`
	// Instances is how many function instances the node was running at
	// its last heartbeat.
	Instances int `json:"instances"`
	// Replicas is how many service replicas the node was running at its
	// last heartbeat.
	Replicas int `json:"replicas"`
	// Self marks the node that answered this request.
	Self bool `json:"self"`
}

// NodeList answers GET /v1/nodes: every node the cluster knows, alive
// or dead, by name.
type NodeList struct {
	Nodes []Node `json:"nodes"`
	// Kube is the Kubernetes cluster a server with --sandbox kube places
	// its pods in, as the answering server reads it; absent on other
	// servers.
	Kube *KubeNodes `json:"kubeNodes,omitempty"`
}

// KubeNodes are the nodes of a Kubernetes cluster and the pods Stratus
// runs on each, in one namespace.
type KubeNodes struct {
	// Namespace is the namespace whose Stratus pods are counted.
	Namespace string `json:"namespace"`
	// Nodes are the cluster's nodes, by name; empty when they could not
	// be read (Note says why).
	Nodes []KubeNode `json:"nodes"`
	// Pending counts the Stratus pods not yet on a node.
	Pending int `json:"pending"`
	// Note says what could not be read, and what to do about it: e.g.
	// listing nodes is forbidden to the server's service account.
	Note string `json:"note,omitempty"`
}

// KubeNode is one node of a Kubernetes cluster.
type KubeNode struct {
	// Name is the node's name.
	Name string `json:"name"`
	// Region is its topology.kubernetes.io/region label, "" without one.
	Region string `json:"region,omitempty"`
	// Ready is its Ready condition.
	Ready bool `json:"ready"`
	// Instances counts the pods of function instances on it (labelled
	// stratus.run/function or stratus.run/sandbox), of every server of
	// the namespace, prepared ones included.
	Instances int `json:"instances"`
	// Replicas counts the pods of service replicas on it (labelled
	// stratus.run/service).
	Replicas int `json:"replicas"`
}
