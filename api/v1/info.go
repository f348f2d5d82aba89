package v1

// Info answers GET /v1/info: which server this is and how it isolates
// what it runs.
type Info struct {
	// Version is the server's version ("dev" for a build without one).
	Version string `json:"version"`
	// Region is the region the server runs in (--region).
	Region  string  `json:"region"`
	Sandbox Sandbox `json:"sandbox"`
}

// Sandbox describes the sandbox driver that runs functions and services.
type Sandbox struct {
	// Driver is the driver's name: "runc" or "process".
	Driver string `json:"driver"`
	// Why says why the server chose this driver.
	Why string `json:"why"`
	// Isolated reports whether each sandbox has its own user, mount, pid
	// and network namespaces and a memory limit; false means what Why
	// says: rootless runc containers (no cgroup limits, the host's
	// network) or plain processes of the host.
	Isolated bool `json:"isolated"`
}
