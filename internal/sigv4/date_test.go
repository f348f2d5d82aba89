package sigv4

import (
	"testing"
	"time"
)

// FuzzParseAmzDate: what parseAmzDate accepts, time.Parse accepts as the
// same instant; a 16-character string it refuses, time.Parse refuses too
// (requestTime leaves every other string to time.Parse).
func FuzzParseAmzDate(f *testing.F) {
	for _, s := range []string{
		"20261206T120000Z", "20240229T235959Z", "20230229T000000Z", "20261231T240000Z",
		"20261206T126000Z", "20261206T120060Z", "20261300T000000Z", "20261200T000000Z",
		"00000101T000000Z", "99991231T235959Z", "2026120 T120000Z", "20261206 120000Z",
		"20261206T120000z", "20261206T1200000", "+0261206T120000Z", "20261206T1-0000Z",
		"20261206T120000.5Z", "20261206T120000", "", "2026-12-06T12:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseAmzDate(s)
		want, err := time.Parse(amzDate, s)
		if ok {
			if err != nil || !got.Equal(want) || got.Location() != time.UTC {
				t.Fatalf("parseAmzDate(%q) = %v; time.Parse: %v, %v", s, got, want, err)
			}
			return
		}
		if len(s) == len(amzDate) && err == nil {
			t.Fatalf("parseAmzDate(%q) refused what time.Parse reads as %v", s, want)
		}
	})
}
