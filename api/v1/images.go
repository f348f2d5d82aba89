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

// MediaTypeNDJSON is the type of streamed answers: one JSON value per
// line.
const MediaTypeNDJSON = "application/x-ndjson"

// ImagePullEvent is one line of the streamed answer of POST
// /v1/images/pull, which a request with "Accept: application/x-ndjson"
// gets once the pull is under way (status 200, Content-Type
// application/x-ndjson). Every line has Done and Total, the compressed
// layer bytes fetched (or found in the store) so far and in all; the last
// line also has Image, what was stored, or Error and Status, why the pull
// failed (the store is then unchanged). An error before the pull is under
// way (a bad ref, an unknown image, refused credentials) is an ordinary
// error answer. Without that Accept header the answer is the Image (201).
type ImagePullEvent struct {
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Image *Image `json:"image,omitempty"`
	Error *Error `json:"error,omitempty"`
	// Status is the HTTP status an ordinary answer would have had for
	// Error.
	Status int `json:"status,omitempty"`
}
