// Package attackwire holds the JSON the e2e attack test and its attacker
// (testdata/attacker, a function and a service that try to break out of
// their sandbox) exchange: the targets the test names and the report the
// attacker returns.
package attackwire

// Targets is what the test tells the attacker to go after.
type Targets struct {
	Shadow   string   `json:"shadow"`   // the host's /etc/shadow
	Token    string   `json:"token"`    // the server's token file, at its host path
	Database []string `json:"database"` // stratus.db and its -wal (and -shm), at their host paths
	DataDir  string   `json:"dataDir"`  // the server's data dir, at its host path

	// Another function's code: its extracted folder and its kept zip at
	// their host paths, and a file in it whose content hashes to
	// CodeMarkerSHA256.
	VictimCode       string `json:"victimCode"`
	VictimZip        string `json:"victimZip"`
	CodeMarker       string `json:"codeMarker"`
	CodeMarkerSHA256 string `json:"codeMarkerSha256"`

	// Another function's secret environment variable: its name, and the
	// secret's shape (SecretPrefix then 32 hex digits) and hash, so that
	// the attacker recognises it without being told it.
	SecretName   string `json:"secretName"`
	SecretPrefix string `json:"secretPrefix"`
	SecretSHA256 string `json:"secretSha256"`

	// A file planted on the host with mode 0600, and its content's hash.
	Planted       string `json:"planted"`
	PlantedSHA256 string `json:"plantedSha256"`

	HostRun    []string `json:"hostRun"`    // the names in the host's /run
	Socket     string   `json:"socket"`     // a root-only unix socket on the host
	RuntimeAPI string   `json:"runtimeApi"` // another instance's AWS_LAMBDA_RUNTIME_API
	ControlAPI []string `json:"controlApi"` // host:port of the server's control API, as the sandbox may reach it
	// ControlPort is the control API's port, tried also at the sandbox's
	// default gateway.
	ControlPort int `json:"controlPort"`
	// HostPIDNS is the host's PID namespace ("pid:[INODE]"). The attacks
	// on PID 1 run only in another one: in the host's, PID 1 is the
	// host's init.
	HostPIDNS string `json:"hostPidNs"`
	// Search are more host dirs to search for the victim's secret,
	// besides DataDir (where the sandbox driver keeps its state).
	Search []string `json:"search"`
}

// Attack is one line of the report.
type Attack struct {
	Name      string `json:"name"`
	Succeeded bool   `json:"succeeded"`
	Detail    string `json:"detail"`
	Info      bool   `json:"info,omitempty"`
	// Unfinished: the attempt did not end in time; the report says
	// nothing of that hole.
	Unfinished bool `json:"unfinished,omitempty"`
}
