package kubetest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stratus-run/stratus/internal/clustertest"
)

// toolBuildTimeout bounds one build from cold: k8s.io/kubernetes's three
// programs take the longest (see the package comment).
const toolBuildTimeout = 40 * time.Minute

// binaries are the paths of the programs a cluster runs.
type binaries struct {
	etcd, apiserver, controllerManager, scheduler, kwok string
}

// buildBinaries builds (once per version and Go toolchain, cached outside
// the clone) the programs of a cluster from the nested modules under
// tools/, each of which pins one release.
func buildBinaries(t testing.TB) binaries {
	t.Helper()
	kube := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:   "kubernetes",
		ModDir: "internal/kubetest/tools/kubernetes",
		Module: "k8s.io/kubernetes",
		Binaries: map[string]string{
			"kube-apiserver":          "k8s.io/kubernetes/cmd/kube-apiserver",
			"kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
			"kube-scheduler":          "k8s.io/kubernetes/cmd/kube-scheduler",
		},
		LDFlags: kubernetesLDFlags,
		Timeout: toolBuildTimeout,
	})
	etcd := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:     "etcd",
		ModDir:   "internal/kubetest/tools/etcd",
		Module:   "go.etcd.io/etcd/server/v3",
		Binaries: map[string]string{"etcd": "go.etcd.io/etcd/server/v3"},
		LDFlags:  stripped,
		Timeout:  toolBuildTimeout,
	})
	kwok := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:     "kwok",
		ModDir:   "internal/kubetest/tools/kwok",
		Module:   "sigs.k8s.io/kwok",
		Binaries: map[string]string{"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
		LDFlags:  stripped,
		Timeout:  toolBuildTimeout,
	})
	return binaries{
		etcd:              filepath.Join(etcd, "etcd"),
		apiserver:         filepath.Join(kube, "kube-apiserver"),
		controllerManager: filepath.Join(kube, "kube-controller-manager"),
		scheduler:         filepath.Join(kube, "kube-scheduler"),
		kwok:              filepath.Join(kwok, "kwok"),
	}
}

// buildKubelet builds (once, like buildBinaries) the kubelet of the
// Kubernetes release tools/kubernetes pins, and returns its path. It is a
// tool of its own, so that adding it did not rebuild the control plane's
// programs; static like upstream's kubelet.
func buildKubelet(t testing.TB) string {
	t.Helper()
	dir := clustertest.BuildGoTool(t, clustertest.GoTool{
		Name:     "kubelet",
		ModDir:   "internal/kubetest/tools/kubernetes",
		Module:   "k8s.io/kubernetes",
		Binaries: map[string]string{"kubelet": "k8s.io/kubernetes/cmd/kubelet"},
		LDFlags:  kubernetesLDFlags,
		Static:   true,
		Timeout:  toolBuildTimeout,
	})
	return filepath.Join(dir, "kubelet")
}

// stripped leaves out the symbol table and DWARF: smaller binaries, a
// shorter link.
func stripped(string) string { return "-s -w" }

// kubernetesLDFlags are stripped's plus the version that the programs
// report (/version, kubectl version); without them they call themselves
// v0.0.0-master.
func kubernetesLDFlags(version string) string {
	flags := "-s -w -X k8s.io/component-base/version.gitVersion=" + version
	if major, rest, ok := strings.Cut(strings.TrimPrefix(version, "v"), "."); ok {
		minor, _, _ := strings.Cut(rest, ".")
		flags += " -X k8s.io/component-base/version.gitMajor=" + major +
			" -X k8s.io/component-base/version.gitMinor=" + minor
	}
	return flags
}
