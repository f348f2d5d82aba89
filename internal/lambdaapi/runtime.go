package lambdaapi

import (
	"regexp"

	"github.com/stratus-run/stratus"
)

var (
	pythonRE = regexp.MustCompile(`^python3\.[0-9]{1,2}$`)
	nodeRE   = regexp.MustCompile(`^nodejs[0-9]{1,2}\.x$`)
)

// acceptedRuntimes names the Lambda runtime identifiers Stratus runs, for
// errors.
const acceptedRuntimes = "python3.N (python3.9 ... python3.14), nodejsN.x (nodejs18.x, nodejs20.x, ...), provided, provided.al2, provided.al2023"

// runtimeOf is Stratus's runtime for Lambda's runtime identifier id.
func runtimeOf(id string) (string, error) {
	switch {
	case pythonRE.MatchString(id):
		return stratus.RuntimePython3, nil
	case nodeRE.MatchString(id):
		return stratus.RuntimeNodejs, nil
	case stratus.IsProvided(id):
		return id, nil
	case id == "":
		return "", invalidParameter("Runtime is required for a function of PackageType Zip: one of %s", acceptedRuntimes)
	}
	return "", invalidParameter("runtime %q is not supported by Stratus: use one of %s", id, acceptedRuntimes)
}

// setRuntime sets cfg's runtime from Lambda's identifier id.
func setRuntime(cfg *stratus.FunctionConfig, id string) error {
	rt, err := runtimeOf(id)
	if err != nil {
		return err
	}
	cfg.Runtime, cfg.LambdaRuntime = rt, id
	return nil
}
