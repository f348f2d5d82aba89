package stratus

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MaxRegions is the most regions a function or service may name.
const MaxRegions = 16

// regionNameRE is a region's name: what AWS's region names look like
// (eu-west-1) and what a Kubernetes label value holds, so that it can be
// matched against topology.kubernetes.io/region.
var regionNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidRegion checks that r can name a region: 1 to 63 lower-case
// letters, digits and '-', starting and ending with a letter or digit.
func ValidRegion(r string) error {
	if !regionNameRE.MatchString(r) {
		return fmt.Errorf("region %q: must be 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit (as eu-west-1): %w", r, ErrInvalid)
	}
	return nil
}

// validRegions checks the allowed regions of a function or service.
func validRegions(regions []string) error {
	if len(regions) > MaxRegions {
		return fmt.Errorf("regions: %d named, at most %d: %w", len(regions), MaxRegions, ErrInvalid)
	}
	for i, r := range regions {
		if err := ValidRegion(r); err != nil {
			return err
		}
		if slices.Contains(regions[:i], r) {
			return fmt.Errorf("regions: %q named twice: %w", r, ErrInvalid)
		}
	}
	return nil
}

// ParseRegions reads a comma-separated list of regions ("" is none),
// as the CLI's --regions and a manifest's annotation give it.
func ParseRegions(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []string
	for r := range strings.SplitSeq(s, ",") {
		out = append(out, strings.TrimSpace(r))
	}
	return out, validRegions(out)
}

// AllowedIn reports whether a workload that may run in regions (none:
// any) may run in region.
func AllowedIn(regions []string, region string) bool {
	return len(regions) == 0 || slices.Contains(regions, region)
}
