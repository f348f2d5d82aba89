package cloudevent

import "strings"

// Filter selects the events a subscription receives. The zero Filter matches
// every event. Filters are comparable and [Filter.String] gives back the text
// [ParseFilter] accepts, so they can be stored as text.
type Filter struct {
	key   string // "", "type" or "source-prefix"
	value string
}

// Filter keys.
const (
	filterType         = "type"
	filterSourcePrefix = "source-prefix"
)

// ParseFilter parses a subscription filter: "type=EXACT" matches events whose
// type is EXACT, "source-prefix=PREFIX" events whose source starts with
// PREFIX, and "" every event. Values are compared byte for byte and may not be
// empty. Errors wrap stratus.ErrInvalid.
func ParseFilter(s string) (Filter, error) {
	if s == "" {
		return Filter{}, nil
	}
	key, value, ok := strings.Cut(s, "=")
	if !ok || (key != filterType && key != filterSourcePrefix) {
		return Filter{}, invalidf("filter %q: want type=EXACT or source-prefix=PREFIX", s)
	}
	if value == "" {
		return Filter{}, invalidf("filter %q: empty value", s)
	}
	if err := checkString(value); err != nil {
		return Filter{}, invalidf("filter %q: %v", s, err)
	}
	return Filter{key: key, value: value}, nil
}

// Matches reports whether e passes f.
func (f Filter) Matches(e Event) bool {
	switch f.key {
	case filterType:
		return e.Type == f.value
	case filterSourcePrefix:
		return strings.HasPrefix(e.Source, f.value)
	}
	return true
}

// String returns f in the form ParseFilter accepts ("" for match-all).
func (f Filter) String() string {
	if f.key == "" {
		return ""
	}
	return f.key + "=" + f.value
}
