package cloudevent

import (
	"errors"
	"testing"

	stratus "github.com/stratus-run/stratus"
)

func TestFilter(t *testing.T) {
	e := minimalEvent() // type com.example.t, source /src
	tests := []struct {
		filter string
		want   bool
	}{
		{"", true},
		{"type=com.example.t", true},
		{"type=com.example", false},
		{"type=com.example.t.v2", false},
		{"source-prefix=/", true},
		{"source-prefix=/src", true},
		{"source-prefix=/src/", false},
		{"source-prefix=/other", false},
		{"type=a=b", false}, // the value is everything after the first '='
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.filter)
		if err != nil {
			t.Fatalf("ParseFilter(%q): %v", tt.filter, err)
		}
		if got := f.Matches(e); got != tt.want {
			t.Errorf("ParseFilter(%q).Matches = %v, want %v", tt.filter, got, tt.want)
		}
		if got := f.String(); got != tt.filter {
			t.Errorf("ParseFilter(%q).String() = %q", tt.filter, got)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, s := range []string{"type", "type=", "source-prefix=", "subject=x", "Type=x", " type=x", "=x", "type=a\nb"} {
		if _, err := ParseFilter(s); !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("ParseFilter(%q) = %v, want ErrInvalid", s, err)
		}
	}
}
