package sandbox

// Placement says where a sandbox runs in a cluster.
type Placement struct {
	// Pod is the name of the sandbox's pod.
	Pod string
	// Node is the name of the node the pod runs on; "" until it is
	// scheduled.
	Node string
}

// Placer is implemented by drivers whose sandboxes run on the machines of
// a cluster (the kube driver), not on this server's host.
type Placer interface {
	// Placement reports where sandbox id runs, false for a sandbox the
	// driver does not see. It does not block: it reads what the driver
	// already knows.
	Placement(id string) (Placement, bool)
}
