package config

import (
	"errors"
	"testing"

	"github.com/stratus-run/stratus"
)

func TestSandbox(t *testing.T) {
	if d := Default().Sandbox; d != "auto" {
		t.Errorf("default sandbox %q, want auto", d)
	}
	for _, tc := range []struct {
		sandbox string
		ok      bool
	}{
		{"auto", true}, {"runc", true}, {"process", true}, {"", false}, {"docker", false}, {"RUNC", false},
	} {
		c := Default()
		c.Sandbox = tc.sandbox
		err := c.Validate()
		if tc.ok && err != nil {
			t.Errorf("sandbox %q: %v", tc.sandbox, err)
		}
		if !tc.ok && !errors.Is(err, stratus.ErrInvalid) {
			t.Errorf("sandbox %q: err = %v, want ErrInvalid", tc.sandbox, err)
		}
	}
	c, err := Load("", []string{"STRATUS_SANDBOX=process"})
	if err != nil || c.Sandbox != "process" {
		t.Errorf("Load with STRATUS_SANDBOX=process: %q, %v", c.Sandbox, err)
	}
}
