package clustertest

import "testing"

func TestGoBinaryName(t *testing.T) {
	for pkg, want := range map[string]string{
		"github.com/nats-io/nats-server/v2":    "nats-server",
		"go.etcd.io/etcd/server/v3":            "server",
		"k8s.io/kubernetes/cmd/kube-apiserver": "kube-apiserver",
		"sigs.k8s.io/kwok/cmd/kwok":            "kwok",
		"v2":                                   "v2",
	} {
		if got := goBinaryName(pkg); got != want {
			t.Errorf("goBinaryName(%q) = %q; want %q", pkg, got, want)
		}
	}
}
