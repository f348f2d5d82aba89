package sandboxtest

import (
	"time"

	"github.com/stratus-run/stratus/internal/sandbox"
)

// Option configures Run.
type Option func(*options)

type options struct {
	leftovers    func(d sandbox.Driver, id string) []string
	adjust       func(spec *sandbox.Spec)
	skip         map[string]string // subtest → why it cannot apply
	folderMounts bool
	timeout      time.Duration
}

// Leftovers gives Run a driver-specific check: f returns what is left on
// the host of sandbox id of d (network interfaces, mounts, files, cgroups),
// described for a failure message, or nothing. The suite calls it once
// Stop of id has returned.
func Leftovers(f func(d sandbox.Driver, id string) []string) Option {
	return func(o *options) { o.leftovers = f }
}

// AdjustSpec gives Run a driver-specific change of every spec the suite
// makes, applied before a case sets fields of its own (which add to
// Mounts, never replace them): for a driver whose sandboxes do not see
// the host's folders, a mount of Spec.Dir (a temporary folder of the
// host, where the network cases copy their helper) at its own path.
func AdjustSpec(f func(spec *sandbox.Spec)) Option {
	return func(o *options) { o.adjust = f }
}

// Skip skips the subtest name (as Run names it, e.g. "NetIsolation") with
// reason, for a driver to which it cannot apply for a reason that its
// Capabilities do not tell. Run fails when no subtest has that name.
func Skip(name, reason string) Option {
	return func(o *options) {
		if o.skip == nil {
			o.skip = make(map[string]string)
		}
		o.skip[name] = reason
	}
}

// FolderMounts says the driver binds folders only (Capabilities.Mounts
// with no files): the Mounts case then binds its folder and checks that
// a mount of a file is refused with ErrInvalid, instead of binding one.
func FolderMounts() Option {
	return func(o *options) { o.folderMounts = true }
}

// Timeout replaces the bound of one subtest's blocking calls (30 s), for
// a driver whose starts and stops take seconds (pods).
func Timeout(d time.Duration) Option {
	return func(o *options) { o.timeout = d }
}
