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
	// Status is Ready, Starting, ScaledToZero or CrashLoopBackOff.
	Status   string          `json:"status"`
	Replicas ServiceReplicas `json:"replicas"`
	// Restarts counts the restarts of the serving revision's replicas.
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
	// URL is the service's path route on the server that answered;
	// HostURL its host route (NAME.<domain> on the same port).
	URL     string `json:"url"`
	HostURL string `json:"hostUrl"`
	// Detail lists each replica (GET of one service only).
	Detail []Replica `json:"detail,omitempty"`
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
	ID        string `json:"id"`
	Revision  int    `json:"revision"`
	Address   string `json:"address,omitempty"`
	State     string `json:"state"`
	Inflight  int    `json:"inflight"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"lastError,omitempty"`
}

// ServiceList is the answer of GET /v1/services.
type ServiceList struct {
	Services []Service `json:"services"`
}
