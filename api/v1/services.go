package v1

import (
	"time"

	"github.com/stratus-run/stratus"
)

// Service is a service as GET /v1/services/NAME shows it.
type Service struct {
	Name         string                `json:"name"`
	Revision     int                   `json:"revision"`
	RevisionName string                `json:"revisionName"`
	Config       stratus.ServiceConfig `json:"config"`
	ImageDigest  string                `json:"imageDigest"`
	CreatedAt    time.Time             `json:"createdAt"`
	UpdatedAt    time.Time             `json:"updatedAt"`
	// Status is Ready, Starting, ScaledToZero or CrashLoopBackOff; on a
	// server of a cluster that does not run the service, Remote.
	Status string `json:"status"`
	// Node is the server of a cluster that runs the service's replicas
	// (the owner of its scaling, see stratus nodes); empty on one machine.
	Node     string          `json:"node,omitempty"`
	Replicas ServiceReplicas `json:"replicas"`
	// Restarts counts the restarts of the serving revision's replicas.
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
	// URL is the service's path route on the server that answered;
	// HostURL its host route (NAME.<domain> on the same port).
	URL     string `json:"url"`
	HostURL string `json:"hostUrl"`
	// Traffic is how requests are routed now: the split PUT
	// /v1/services/NAME/traffic set, each target resolved to its
	// revision; with no split set, one target: the latest ready revision
	// (Latest) at 100 percent.
	Traffic []TrafficTarget `json:"traffic"`
	// Detail lists each replica (GET of one service only).
	Detail []Replica `json:"detail,omitempty"`
}

// TrafficTarget is one target of a service's traffic as the API shows it.
type TrafficTarget struct {
	// Revision is the number of the revision the target reaches now (the
	// latest ready one for a Latest target); RevisionName its name
	// (NAME-00002).
	Revision     int    `json:"revision"`
	RevisionName string `json:"revisionName"`
	// Latest: the target follows the latest ready revision.
	Latest  bool   `json:"latest,omitempty"`
	Percent int    `json:"percent"`
	Tag     string `json:"tag,omitempty"`
	// URL and HostURL are a tagged target's own routes (/svc/NAME@TAG and
	// TAG-NAME.<domain>).
	URL     string `json:"url,omitempty"`
	HostURL string `json:"hostUrl,omitempty"`
	// Ready counts the revision's ready replicas.
	Ready int `json:"ready"`
}

// TrafficRequest is the body of PUT /v1/services/NAME/traffic: the split
// to set; an empty one gives the latest ready revision all requests.
type TrafficRequest struct {
	Traffic []stratus.TrafficTarget `json:"traffic"`
}

// ServiceReplicas counts a service's replicas.
type ServiceReplicas struct {
	Ready    int `json:"ready"`
	Desired  int `json:"desired"`
	Draining int `json:"draining"`
	// Waiting counts the requests waiting for a replica.
	Waiting int `json:"waiting"`
}

// Replica is one replica of a service.
type Replica struct {
	ID       string `json:"id"`
	Revision int    `json:"revision"`
	Address  string `json:"address,omitempty"`
	// Node is the Kubernetes node of the replica's pod (its ID is the
	// pod's name); empty off Kubernetes.
	Node      string `json:"node,omitempty"`
	State     string `json:"state"`
	Inflight  int    `json:"inflight"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
}

// RevisionList is the answer of GET /v1/services/NAME/revisions: every
// stored revision of the service, newest first.
type RevisionList struct {
	Revisions []ServiceRevision `json:"revisions"`
}

// ServiceRevision is one stored revision of a service and the share of
// requests it takes now.
type ServiceRevision struct {
	Number int `json:"number"`
	// Name is the revision's name (NAME-00002).
	Name        string    `json:"name"`
	Image       string    `json:"image"`
	ImageDigest string    `json:"imageDigest"`
	CreatedAt   time.Time `json:"createdAt"`
	// Latest: the service's latest revision.
	Latest bool `json:"latest,omitempty"`
	// Percent is the share of requests the traffic routes to it now (0:
	// it serves none); Tags the traffic targets' tags that reach it.
	Percent int      `json:"percent"`
	Tags    []string `json:"tags,omitempty"`
	// Ready counts its ready replicas.
	Ready int `json:"ready"`
}

// ServiceList is the answer of GET /v1/services.
type ServiceList struct {
	Services []Service `json:"services"`
}
