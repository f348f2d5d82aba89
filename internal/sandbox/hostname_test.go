package sandbox_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stratus-run/stratus"
	"github.com/stratus-run/stratus/internal/sandbox"
)

func TestCheckHostname(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web-3-0a1b2c3d", true},
		{"My_App-1-ff", true},
		{"10.88.0.5", true},
		{"a", true},
		{strings.Repeat("x", sandbox.MaxHostnameLen), true},
		{strings.Repeat("x", sandbox.MaxHostnameLen+1), false},
		{"", false},
		{"-web", false},
		{"_web", false},
		{".web", false},
		{"we b", false},
		{"web\n127.0.0.1 bank", false},
		{"wéb", false},
		{"web\x00", false},
	} {
		err := sandbox.CheckHostname(tc.name)
		if tc.ok && err != nil {
			t.Errorf("CheckHostname(%q) = %v, want nil", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("CheckHostname(%q) = %v, want ErrInvalid", tc.name, err)
		}
	}
}
