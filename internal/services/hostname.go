package services

import (
	"slices"
	"strings"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// replicaHostname is the hostname of replica id ("SERVICE-REV-RANDOM") of
// service svc: its name, as a pod's hostname is its name, so that a
// replica that answers with os.Hostname() says which one it is. A name
// longer than a hostname may be keeps its "-REV-RANDOM" tail and loses
// the end of the service's name (as Kubernetes cuts a generated pod
// name's base); a name no hostname can be (one starting with '-' or '_')
// leaves the driver's default.
func replicaHostname(svc, id string) string {
	h := id
	if tail, ok := strings.CutPrefix(id, svc); ok && len(h) > sandbox.MaxHostnameLen {
		h = svc[:max(0, sandbox.MaxHostnameLen-len(tail))] + tail
	}
	if sandbox.CheckHostname(h) != nil {
		return ""
	}
	return h
}

// hostnameEnv adds HOSTNAME=hostname to a replica's environment env, as
// Docker and the kubelet set it, when its driver gives it that hostname
// and neither the image nor the service sets HOSTNAME.
func hostnameEnv(env []string, hostname string, caps sandbox.Capabilities) []string {
	if hostname == "" || !caps.Hostname || slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOSTNAME=") }) {
		return env
	}
	return append(env, "HOSTNAME="+hostname)
}
