package v1

import (
	"time"

	"github.com/stratus-run/stratus"
)

// PublishSpec is the body of POST /v1/functions/NAME/publish, which makes
// a numbered version of the function's $LATEST (201), or answers the
// newest published version when nothing changed since it was published
// (200). The body may be empty.
type PublishSpec struct {
	Description string `json:"description,omitempty"`
}

// Version is a published version of a function, or its $LATEST, as the
// API shows it.
type Version struct {
	Function string `json:"function"`
	// Version is stratus.LatestVersion or the published number ("1",
	// "2", ...).
	Version string `json:"version"`
	// Snapshot is the deploy the version was made from: the function's
	// Version when it was deployed.
	Snapshot    int                    `json:"snapshot"`
	Description string                 `json:"description,omitempty"`
	Config      stratus.FunctionConfig `json:"config"`
	CodeSHA     string                 `json:"codeSha256"`
	CodeSize    int64                  `json:"codeSize"`
	CreatedAt   time.Time              `json:"createdAt"`
}

// VersionList answers GET /v1/functions/NAME/versions: $LATEST first,
// then the published versions, oldest first.
type VersionList struct {
	Versions []Version `json:"versions"`
}

// AliasSpec is the body of PUT /v1/functions/NAME/aliases/ALIAS, which
// creates the alias (201) or replaces it (200). Version is a published
// version's number or stratus.LatestVersion; Weights gives one other
// published version a share of the invocations (0 to 1), the rest going
// to Version. RevisionID, when set, must be the alias's current one
// (stratus.ErrConflict otherwise), so that two writers do not undo each
// other.
type AliasSpec struct {
	Version     string             `json:"version"`
	Weights     map[string]float64 `json:"weights,omitempty"`
	Description string             `json:"description,omitempty"`
	RevisionID  string             `json:"revisionId,omitempty"`
}

// AliasList answers GET /v1/functions/NAME/aliases, ordered by name.
type AliasList struct {
	Aliases []stratus.Alias `json:"aliases"`
}
