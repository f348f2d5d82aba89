package stratus

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestRegions(t *testing.T) {
	for _, r := range []string{"local", "eu-west-1", "a", "9", strings.Repeat("a", 63)} {
		if err := ValidRegion(r); err != nil {
			t.Errorf("ValidRegion(%q) = %v", r, err)
		}
	}
	for _, r := range []string{"", "EU", "eu west", "eu/west", "-eu", "eu-", "eu_west", "eu.west", strings.Repeat("a", 64)} {
		if err := ValidRegion(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidRegion(%q) = %v, want ErrInvalid", r, err)
		}
	}
	got, err := ParseRegions(" eu-west-1, us-east-1 ")
	if err != nil || !slices.Equal(got, []string{"eu-west-1", "us-east-1"}) {
		t.Errorf("ParseRegions = %q, %v", got, err)
	}
	if got, err := ParseRegions(""); err != nil || got != nil {
		t.Errorf("ParseRegions(\"\") = %q, %v; want none", got, err)
	}
	for _, s := range []string{"eu,eu", "eu,,us", "eu,", strings.Repeat("r,", MaxRegions) + "last"} {
		if _, err := ParseRegions(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRegions(%q) = %v, want ErrInvalid", s, err)
		}
	}
	if !AllowedIn(nil, "local") || !AllowedIn([]string{"eu", "us"}, "us") || AllowedIn([]string{"eu"}, "local") {
		t.Error("AllowedIn")
	}

	// Functions and services check theirs.
	fc := FunctionConfig{Runtime: RuntimeProvided, Regions: []string{"eu-west-1", "EU"}}
	fc.Defaults()
	if err := fc.Validate(Limits{MaxConcurrency: 1000}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"EU"`) {
		t.Errorf("a function with region EU: %v", err)
	}
	sc := ServiceConfig{Image: "app:1", Regions: []string{"eu", "eu"}}
	sc.Defaults()
	if err := sc.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a service with a region twice: %v", err)
	}
	sc.Regions = []string{"eu", "us"}
	if err := sc.Validate(); err != nil {
		t.Errorf("a service with regions eu and us: %v", err)
	}
}

// FuzzParseRegions: what ParseRegions accepts is a list of valid,
// distinct regions, which written back with commas reads the same.
func FuzzParseRegions(f *testing.F) {
	for _, s := range []string{"", "eu-west-1", "eu,us", " eu , us ", "eu,eu", "EU", ",", "a-,b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseRegions(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseRegions(%q): %v, not ErrInvalid", s, err)
			}
			return
		}
		if len(got) > MaxRegions {
			t.Fatalf("ParseRegions(%q): %d regions", s, len(got))
		}
		for i, r := range got {
			if ValidRegion(r) != nil || slices.Contains(got[:i], r) {
				t.Fatalf("ParseRegions(%q) = %q: %q invalid or twice", s, got, r)
			}
		}
		again, err := ParseRegions(strings.Join(got, ","))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("ParseRegions(%q) = %q, read back as %q, %v", s, got, again, err)
		}
	})
}
