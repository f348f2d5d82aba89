package v1

import "time"

// Image is a stored container image as the API shows it.
type Image struct {
	Ref       string      `json:"ref"`    // fully qualified ("index.docker.io/library/alpine:latest")
	Digest    string      `json:"digest"` // manifest digest
	Layers    []string    `json:"layers"` // diff IDs, lowest first
	Config    ImageConfig `json:"config"`
	Size      int64       `json:"size"` // bytes of the uncompressed layers
	CreatedAt time.Time   `json:"createdAt"`
}

// ImageConfig is the part of an image's configuration that runs it.
type ImageConfig struct {
	Entrypoint   []string `json:"entrypoint,omitempty"`
	Cmd          []string `json:"cmd,omitempty"`
	Env          []string `json:"env,omitempty"`
	WorkingDir   string   `json:"workingDir,omitempty"`
	User         string   `json:"user,omitempty"`
	ExposedPorts []string `json:"exposedPorts,omitempty"`
}

// ImageList answers GET /v1/images.
type ImageList struct {
	Images []Image `json:"images"`
}

// ImagePull is the body of POST /v1/images/pull. Insecure pulls over
// plain http.
type ImagePull struct {
	Ref      string `json:"ref"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
}
