package stratus

import "runtime/debug"

// BuildVersion is the version of this build of Stratus, set by the
// linker: go build -ldflags "-X github.com/stratus-run/stratus.BuildVersion=v1.2.3".
// Read it through ServerVersion, which falls back when it is empty.
var BuildVersion string

// ServerVersion is the version this binary reports: BuildVersion when the
// build set it, else the main module's version that the Go toolchain
// recorded (a tag, or a pseudo-version from the VCS), else "dev".
func ServerVersion() string {
	if BuildVersion != "" {
		return BuildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
