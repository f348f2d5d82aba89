package benchkit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ParseSections parses a comma-separated list of section names, each of
// which must be one of known.
func ParseSections(list string, known ...string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, s := range strings.Split(list, ",") {
		switch s = strings.TrimSpace(s); {
		case slices.Contains(known, s):
			out[s] = true
		case s == "":
		default:
			return nil, fmt.Errorf("unknown section %q (want %s)", s, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// ParseInts parses a comma-separated list of integers in [lo, hi],
// keeping their order and dropping repeats.
func ParseInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q: want numbers between %d and %d", s, lo, hi)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}
