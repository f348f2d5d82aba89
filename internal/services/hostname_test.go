package services

import (
	"slices"
	"strings"
	"testing"

	"github.com/stratus-run/stratus/internal/sandbox"
)

func TestReplicaHostname(t *testing.T) {
	long := strings.Repeat("s", 64)
	for _, tc := range []struct{ svc, id, want string }{
		{"web", "web-3-0a1b2c3d", "web-3-0a1b2c3d"},
		{"My_App", "My_App-12-ffffffff", "My_App-12-ffffffff"},
		{long, long + "-7-0a1b2c3d", strings.Repeat("s", 63-len("-7-0a1b2c3d")) + "-7-0a1b2c3d"},
		{"-dash", "-dash-1-0a1b2c3d", ""},
		{"_under", "_under-1-0a1b2c3d", ""},
	} {
		got := replicaHostname(tc.svc, tc.id)
		if got != tc.want {
			t.Errorf("replicaHostname(%q, %q) = %q, want %q", tc.svc, tc.id, got, tc.want)
		}
		if len(got) > 63 {
			t.Errorf("replicaHostname(%q, %q) is %d bytes long", tc.svc, tc.id, len(got))
		}
	}
}

func TestHostnameEnv(t *testing.T) {
	with := sandbox.Capabilities{Hostname: true}
	for _, tc := range []struct {
		env      []string
		hostname string
		caps     sandbox.Capabilities
		want     []string
	}{
		{[]string{"PORT=8080"}, "web-1-0a1b2c3d", with, []string{"PORT=8080", "HOSTNAME=web-1-0a1b2c3d"}},
		{[]string{"HOSTNAME=mine"}, "web-1-0a1b2c3d", with, []string{"HOSTNAME=mine"}},
		{[]string{"PORT=8080"}, "", with, []string{"PORT=8080"}},
		{[]string{"PORT=8080"}, "web-1-0a1b2c3d", sandbox.Capabilities{}, []string{"PORT=8080"}},
	} {
		if got := hostnameEnv(slices.Clone(tc.env), tc.hostname, tc.caps); !slices.Equal(got, tc.want) {
			t.Errorf("hostnameEnv(%q, %q, %+v) = %q, want %q", tc.env, tc.hostname, tc.caps, got, tc.want)
		}
	}
}
